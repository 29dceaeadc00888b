"""Where the CLI finds the server and the token: options, then the environment
(LEDGERCORE_URL, LEDGERCORE_TOKEN), then the file ``ledgercore login`` wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ledgercore" / "config.json"


def load() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def save(url: str, token: str) -> Path:
    """Write url and token to the config file, readable by its owner only (0600)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    return path


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    stored = load()
    return (
        url or os.environ.get("LEDGERCORE_URL") or stored.get("url") or DEFAULT_URL,
        token or os.environ.get("LEDGERCORE_TOKEN") or stored.get("token"),
    )
