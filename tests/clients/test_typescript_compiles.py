"""clients/typescript/ledgercore-events.d.ts compiles with the real TypeScript
compiler (npm ``typescript``, pinned in package.json and installed into
node_modules/ by scripts/bootstrap.sh), in strict mode, together with a
front end's use of it (tests/clients/typescript/usage.ts), whose
``@ts-expect-error`` lines prove that the types constrain what is sent and
read."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DECLARATIONS = ROOT / "clients" / "typescript" / "ledgercore-events.d.ts"
USAGE = Path(__file__).resolve().parent / "typescript" / "usage.ts"
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def tsc(*files: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None or not TSC.exists():
        reason = "the TypeScript compiler is not installed (scripts/bootstrap.sh runs npm ci; Node.js needed)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    command = [str(TSC), "--noEmit", "--strict", "--pretty", "false", "--target", "es2022", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def test_the_declarations_and_their_use_compile_in_strict_mode():
    result = tsc(DECLARATIONS, USAGE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_declaration_or_a_misuse_fails_to_compile(tmp_path: Path):
    """The check is real: the compiler rejects a declaration file that does
    not parse or type, and a use that breaks a payload's type."""
    broken = tmp_path / "ledgercore-events.d.ts"
    broken.write_text(DECLARATIONS.read_text().replace("newBalance: number;", "newBalance: Numbr;", 1))
    result = tsc(broken)
    assert result.returncode != 0
    assert "Cannot find name 'Numbr'" in result.stdout

    (tmp_path / "usage.ts").write_text(
        'import type { ClientFrame } from "./ledgercore-events";\n'
        'export const q: ClientFrame<"query"> = { event: "query", data: { sql: 1 } };\n'
    )
    broken.write_text(DECLARATIONS.read_text())
    result = tsc(broken, tmp_path / "usage.ts")
    assert result.returncode != 0
    assert "error TS2322" in result.stdout
