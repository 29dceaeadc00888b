"""Random ids for connections and sessions, from the operating system's
CSPRNG as ``uuid.uuid4`` and ``secrets`` take them, read a few KiB at a time:
one system call per connection costs the event loop more than the rest of
making the id (and a thread may take the GIL meanwhile). Each id has its
own bytes; none are reused."""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096

_lock = threading.Lock()
_pool = b""


def random_hex(nbytes: int = 16) -> str:
    """``nbytes`` random bytes as hex (``uuid4().hex`` is 16, with six bits
    fixed; these are all random)."""
    global _pool
    with _lock:
        if len(_pool) < nbytes:
            _pool = os.urandom(max(POOL_BYTES, nbytes))
        taken, _pool = _pool[:nbytes], _pool[nbytes:]
    return taken.hex()
