"""The copy of the official protocol suites in tests/conformance is the
official one (../shared/conformance beside the checkout, when present)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
OFFICIAL = ROOT.parent / "shared" / "conformance"
FILES = ("package.json", "package-lock.json", "test-suite.js", "node-imports.js")


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="no ../shared/conformance beside this checkout to compare with")
@pytest.mark.parametrize("suite", ["engine.io-protocol", "socket.io-protocol"])
def test_the_copied_suite_is_the_official_one(suite):
    for name in FILES:
        official = (OFFICIAL / suite / "test-suite" / name).read_bytes()
        assert (ROOT / "tests" / "conformance" / suite / name).read_bytes() == official, name
