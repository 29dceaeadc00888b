"""What every benchmark script shares: percentiles and the options that
choose the stacks and the services of the scaled one."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

# Run directly (not through `make bench`): this checkout's development key,
# which the servers and an in-process Django need with DJANGO_DEBUG off.
if not os.environ.get("DJANGO_SECRET_KEY"):
    _script = Path(__file__).resolve().parent.parent / "scripts" / "dev-secret.sh"
    os.environ["DJANGO_SECRET_KEY"] = subprocess.run(
        [str(_script), "django"], check=True, capture_output=True, text=True
    ).stdout.strip()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def add_service_arguments(p: argparse.ArgumentParser, *, worker: bool = True) -> None:
    """--postgres and --redis (the scaled stack's services) and, for scripts
    that re-invoke themselves per stack, the hidden --worker."""
    p.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    if worker:
        p.add_argument("--worker", choices=["embedded", "scaled"], help=argparse.SUPPRESS)
