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


def test_autobahn_debug_arguments_are_made_only_when_logged_and_read_the_same(monkeypatch):
    import autobahn.twisted.websocket as twisted_ws
    import autobahn.websocket.protocol as ws_protocol

    for module_name, names in daphne_frames.LOG_FORMATTERS.items():
        module = twisted_ws if module_name == twisted_ws.__name__ else ws_protocol
        for name in names:
            monkeypatch.setattr(module, name, getattr(module, name))
    original = {name: getattr(ws_protocol, name) for name in ("pformat", "hltype", "hlval")}
    made: list[object] = []

    def counting_pformat(obj: object) -> str:
        made.append(obj)
        return original["pformat"](obj)

    monkeypatch.setattr(ws_protocol, "pformat", counting_pformat)
    daphne_frames.lazy_debug_arguments()
    daphne_frames.lazy_debug_arguments()  # idempotent: wrapped once

    config = [("autoPingInterval", 20, "WebSocketServerFactory")] * 3
    lazy = ws_protocol.pformat(config)
    assert made == []  # nothing made until the text is asked for
    assert f"\n{lazy}" == "\n" + original["pformat"](config)
    assert "{attrs}".format_map({"attrs": lazy}) == original["pformat"](config)  # as loggers format
    assert made == [config, config]
    for name in ("hltype", "hlval"):
        for module in (ws_protocol, twisted_ws):
            value = getattr(module, name)(test_autobahn_debug_arguments_are_made_only_when_logged_and_read_the_same)
            assert f"{value}" == original[name](
                test_autobahn_debug_arguments_are_made_only_when_logged_and_read_the_same
            )
