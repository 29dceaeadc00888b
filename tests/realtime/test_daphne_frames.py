"""The daphne frame writer's adapter (realtime.daphne_frames) relies on
internals of daphne, autobahn and Twisted: an upgrade that removes one
fails here, naming it, rather than in production."""

from __future__ import annotations

import daphne.server  # noqa: F401  (as in a daphne process: loads the classes the adapter checks)

from realtime import daphne_frames


def test_every_daphne_autobahn_and_twisted_internal_the_frame_writer_uses_is_still_there():
    missing = daphne_frames.missing_internals()
    assert not missing, (
        "realtime.daphne_frames uses internals this daphne/autobahn/Twisted no longer has: "
        + ", ".join(missing)
        + ". Adapt the adapter (or drop the direct writer and the shared frames, see docs/benchmarks.md)."
    )


def test_the_check_names_an_internal_that_is_gone(monkeypatch):
    internals = dict(daphne_frames.INTERNALS)
    internals["daphne.server:Server"] = (*internals["daphne.server:Server"], "no_such_internal")
    monkeypatch.setattr(daphne_frames, "INTERNALS", internals)
    assert daphne_frames.missing_internals() == ["daphne.server:Server.no_such_internal"]
