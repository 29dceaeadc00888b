"""ledgercore.http: a request's middleware (both halves), its view and the
``request_started`` / ``request_finished`` receivers (Django's database
connection checks) all run on one thread, the request's, never on the event
loop; a streamed body is still sent piece by piece over ASGI; request
threads are reused one request at a time, and in a server process keep
their database connection between requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from ledgercore.http import OneHopASGIHandler, RequestThreads
from realtime import ormthread

seen: list[tuple[str, str, int]] = []


def probe(request: HttpRequest, n: int) -> HttpResponse:
    seen.append((request.path, "view", threading.get_ident()))
    return HttpResponse(b"ok")


async def pieces() -> AsyncIterator[bytes]:
    for n in range(3):
        yield f"piece {n};".encode()


def streamed(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(pieces(), content_type="text/plain")


barrier = threading.Barrier(2, timeout=10)
raw_connections: list[Any] = []


def meet(request: HttpRequest) -> HttpResponse:
    """Returns once another request has come here at the same time."""
    barrier.wait()
    seen.append((request.path, "view", threading.get_ident()))
    return HttpResponse(b"met")


def query(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raw_connections.append(connection.connection)
    return HttpResponse(b"queried")


urlpatterns = [
    path("probe/<int:n>", probe),
    path("streamed", streamed),
    path("meet", meet),
    path("query", query),
]


class Recorder:
    """A middleware written synchronously, as Django's own are."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        seen.append((request.path, "middleware in", threading.get_ident()))
        response = self.get_response(request)
        seen.append((request.path, "middleware out", threading.get_ident()))
        return response


def scope(path_: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def call(handler: OneHopASGIHandler, path_: str, **overrides: Any) -> list[dict[str, Any]]:
    """The handler's answer to a GET of ``path_`` (``overrides``: scope keys)."""
    sent: list[dict[str, Any]] = []
    requested = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays: no http.disconnect
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    await handler({**scope(path_), **overrides}, receive, send)
    return sent


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[*settings.MIDDLEWARE, f"{__name__}.Recorder"])
async def test_middleware_view_and_request_signals_run_on_the_request_thread() -> None:
    seen.clear()
    current: list[str] = []

    def started(sender: Any, **kwargs: Any) -> None:
        current.append(kwargs["scope"]["path"])
        seen.append((current[-1], "request_started", threading.get_ident()))

    def finished(sender: Any, **kwargs: Any) -> None:
        seen.append((current[-1], "request_finished", threading.get_ident()))

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        handler = OneHopASGIHandler()
        loop_thread = threading.get_ident()
        for n in range(3):
            sent = await call(handler, f"/probe/{n}")
            assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200, sent
            assert b"".join(m.get("body", b"") for m in sent[1:]) == b"ok"
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)

    steps = ["request_started", "middleware in", "view", "middleware out", "request_finished"]
    for n in range(3):
        mine = [(step, thread) for p, step, thread in seen if p == f"/probe/{n}"]
        assert [step for step, _ in mine] == steps, seen
        assert len({thread for _, thread in mine}) == 1, f"request {n} ran on several threads: {mine}"
        assert mine[0][1] != loop_thread, "Django's synchronous code ran on the event loop"


@override_settings(ROOT_URLCONF=__name__)
async def test_a_streamed_body_is_sent_piece_by_piece() -> None:
    sent = await call(OneHopASGIHandler(), "/streamed")
    assert sent[0]["status"] == 200
    bodies = [m["body"] for m in sent[1:] if m.get("body")]
    assert bodies == [b"piece 0;", b"piece 1;", b"piece 2;"], sent
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)


@override_settings(ROOT_URLCONF=__name__)
async def test_a_request_crosses_to_its_thread_twice(monkeypatch: Any) -> None:
    """request_started with the middleware chain and the view, then
    request_finished: Django's own ASGIHandler crosses for request_started,
    twice per middleware and once more for the view (about twenty hops with
    this project's middleware)."""
    crossings: list[str] = []
    original = SyncToAsync.__call__

    async def counted(self: SyncToAsync, *args: Any, **kwargs: Any) -> Any:
        crossings.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    handler = OneHopASGIHandler()
    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    sent = await call(handler, "/probe/7")
    assert sent[0]["status"] == 200, sent
    assert len(settings.MIDDLEWARE) >= 5
    assert len(crossings) <= 2, crossings


@override_settings(ROOT_URLCONF=__name__)
async def test_a_request_django_cannot_read_is_answered_400_and_finished() -> None:
    finished: list[int] = []

    def on_finished(sender: Any, **kwargs: Any) -> None:
        finished.append(threading.get_ident())

    request_finished.connect(on_finished)
    try:
        # A query string that is not UTF-8: Django cannot make the request.
        sent = await call(OneHopASGIHandler(), "/probe/1", query_string=b"q=\xff")
    finally:
        request_finished.disconnect(on_finished)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400, sent
    assert finished and finished[0] != threading.get_ident(), "request_finished did not run on the request's thread"


@override_settings(ROOT_URLCONF=__name__)
async def test_threads_are_reused_one_request_at_a_time() -> None:
    seen.clear()
    handler = OneHopASGIHandler(RequestThreads(idle=4))
    for n in range(4):
        assert (await call(handler, f"/probe/{n}"))[0]["status"] == 200
    assert len({thread for _, _, thread in seen}) == 1, "sequential requests did not reuse their thread"
    # Two requests at once meet in their views: each has a thread of its
    # own (on one shared thread the first would wait for the second forever).
    seen.clear()
    barrier.reset()
    first, second = await asyncio.gather(call(handler, "/meet"), call(handler, "/meet"))
    assert first[0]["status"] == second[0]["status"] == 200, (first, second)
    assert len({thread for _, _, thread in seen}) == 2
    handler.threads.close()


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.django_db(transaction=True)
async def test_a_server_process_keeps_a_request_threads_connection(monkeypatch: Any) -> None:
    raw_connections.clear()
    handler = OneHopASGIHandler(RequestThreads(idle=4))
    for _ in range(3):  # a test process: a connection per request, as Django's rule
        assert (await call(handler, "/query"))[0]["status"] == 200
    assert len({id(raw) for raw in raw_connections}) == 3
    handler.threads.close()

    raw_connections.clear()
    monkeypatch.setattr(ormthread, "_enabled", True)  # what ledgercore.serve does
    handler = OneHopASGIHandler(RequestThreads(idle=4))
    for _ in range(3):
        assert (await call(handler, "/query"))[0]["status"] == 200
    assert len({id(raw) for raw in raw_connections}) == 1, "the request thread opened a connection per request"
    handler.threads.close()  # closes it on its thread
