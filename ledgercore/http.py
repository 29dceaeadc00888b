"""Django's HTTP handler for this server: each request's middleware and view
run in one call on the request's thread, and request threads are reused.

Django's ASGIHandler runs a synchronous view behind asynchronous middleware:
every middleware (all of ours are Django's, whitenoise's and corsheaders',
written synchronously) hops to the request's thread for its request half and
again for its response half, and the view hops once more: about twenty
thread round trips per request, each a wake-up of the event loop (measured:
a POST to a broadcast endpoint spent half of the loop's time in
``run_in_executor`` and ``Condition.wait``). Here the middleware chain is
loaded in Django's synchronous mode and called once, on the request's
thread, as Django runs it under WSGI.

Django also starts a new thread for every request (a new
``ThreadSensitiveContext``), and with it a new database connection. Here a
request borrows an idle one-thread executor (``RequestThreads``) and gives it
back when it is done: one request at a time per thread, as before, so a slow
request holds up no other; a new thread when none is idle. In a server
process (``realtime.ormthread.enable``) those long-lived threads keep their
database connections between requests, as the ORM thread does, with the
same checks before reuse.

``request_started`` (its receivers check the thread's database connections),
the making of the request and its response are one call on that thread;
``request_finished`` (the same checks) a second one, after the response is
sent. Django's handler sends the signal with a hop of its own before the
request is made: a POST to the broadcast endpoint took 10 % less CPU without
it. The rest is Django's ASGIHandler unchanged: the body read on the event
loop, a client's disconnect watched while the view runs, and the response
sent on the loop, streamed ones included (``realtime.streaming`` reads a
streamed body on the request's thread).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

from realtime import ormthread

IDLE_THREADS = 8


class _RequestProcessed(Exception):
    """The response was sent: ends the wait for a disconnect."""


class RequestThreads:
    """Idle one-thread executors for requests, at most ``idle`` of them kept."""

    def __init__(self, idle: int = IDLE_THREADS) -> None:
        self.idle = idle
        self._free: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def borrow(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._free:
                return self._free.pop()
        return ThreadPoolExecutor(1, thread_name_prefix="http-request", initializer=ormthread.keep_this_thread)

    def give_back(self, executor: ThreadPoolExecutor, *, clean: bool) -> None:
        """``clean``: the request ended normally, nothing of it runs there any
        more. Otherwise (the client went away while its view ran) the thread
        finishes that work, closes its connections and ends."""
        if clean:
            with self._lock:
                if len(self._free) < self.idle:
                    self._free.append(executor)
                    return
        self.retire(executor)

    def retire(self, executor: ThreadPoolExecutor) -> None:
        executor.submit(ormthread.close_this_thread)
        executor.shutdown(wait=False)

    def close(self) -> None:
        """Retire every idle thread (the server's last step)."""
        with self._lock:
            free, self._free = self._free, []
        for executor in free:
            self.retire(executor)


# The process's request threads (``close_request_threads`` at exit).
request_threads = RequestThreads()


class OneHopASGIHandler(ASGIHandler):
    def __init__(self, threads: RequestThreads = request_threads) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = threads
        self._start = sync_to_async(self._started_response_sync, thread_sensitive=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.borrow()
        clean = False
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
            clean = True
        finally:
            self.threads.give_back(executor, clean=clean)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``handle`` (6.1, the version requirements.txt pins) with
        ``request_started``, the request and its response made in one call
        on the request's thread."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            response: HttpResponseBase | None = None
            try:
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self.listen_for_disconnect(receive))
                        response = await self._start(scope, body_file)
                        await self.send_response(response, send)
                        raise _RequestProcessed
                except* (_RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                await sync_to_async(response.close)()

    def _started_response_sync(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """On the request's thread: ``request_started``, then the request
        (or Django's answer to one it cannot make) and its response."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            assert error_response is not None
            return error_response
        return self._get_response_sync(request)

    def _get_response_sync(self, request: HttpRequest) -> HttpResponseBase:
        # As ASGIHandler.run_get_response, with the synchronous middleware chain.
        response = self.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # as ASGIHandler.run_get_response
        # ASGI servers chunk file bodies themselves.
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response


def get_asgi_application() -> Any:
    """``django.core.asgi.get_asgi_application`` with this handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()


def close_request_threads() -> None:
    """Retire the process's idle request threads: their database sessions
    end before the process does."""
    request_threads.close()
