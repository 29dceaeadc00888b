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

The rest is Django's ASGIHandler unchanged: the body read on the event loop,
``request_started`` and ``request_finished`` (with their connection checks)
on the request's thread (the thread ``realtime.streaming`` reads a streamed
body on), and the response sent on the loop, streamed ones included.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase

from realtime import ormthread

IDLE_THREADS = 8


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
        self._respond = sync_to_async(self._get_response_sync, thread_sensitive=True)

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

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self._respond(request)
        return response

    def _get_response_sync(self, request: HttpRequest) -> HttpResponseBase:
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
