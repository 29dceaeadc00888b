"""Django's HTTP handler for this server: each request's middleware and view
run in one call on the request's thread.

Django's ASGIHandler runs a synchronous view behind asynchronous middleware:
every middleware (all of ours are Django's, whitenoise's and corsheaders',
written synchronously) hops to the request's thread for its request half and
again for its response half, and the view hops once more: about twenty
thread round trips per request, each a wake-up of the event loop (measured:
a POST to a broadcast endpoint spent half of the loop's time in
``run_in_executor`` and ``Condition.wait``). Here the middleware chain is
loaded in Django's synchronous mode and called once, on the request's
thread, as Django runs it under WSGI. The rest is Django's ASGIHandler
unchanged: the body read on the event loop, one thread per request
(``ThreadSensitiveContext``: its database connection, the thread that
``realtime.streaming`` reads a streamed body on), ``request_started`` and
``request_finished`` (with their connection checks) on that thread, and the
response sent on the loop, streamed ones included.
"""

from __future__ import annotations

from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self._respond = sync_to_async(self._get_response_sync, thread_sensitive=True)

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
