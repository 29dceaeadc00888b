"""ASGI entry point: HTTP (Django), WebSocket (/ws) and Socket.IO (/socket.io/) on one port."""

import gc
import os

from django.conf import settings

from ledgercore.http import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
django_asgi_app = get_asgi_application()

if settings.LEDGERCORE_GC_THRESHOLDS:
    # A server holding thousands of connections allocates many short-lived
    # objects; Python's default thresholds then run collections often enough
    # to stall a 1,000-subscriber broadcast by 200 ms. Objects that exist at
    # startup are moved out of the collector's way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.LEDGERCORE_GC_THRESHOLDS)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.sessionauth import SessionAuthStack  # noqa: E402
from realtime.transport import CaptureWriter  # noqa: E402
from socketio_gateway import routing as socketio_routing  # noqa: E402

websocket_urlpatterns = websocket_urlpatterns + socketio_routing.websocket_urlpatterns()

application = ProtocolTypeRouter(
    {
        # Socket.IO's long-polling requests go to its HTTP consumer, every
        # other request to Django.
        "http": URLRouter([*socketio_routing.http_urlpatterns(), re_path(r"", django_asgi_app)]),
        # Session auth is for staff browsers (no database hop without a
        # session cookie); token auth is read by the consumer.
        # CaptureWriter sees the server's own send before the session
        # middleware wraps it (realtime.transport).
        "websocket": CaptureWriter(SessionAuthStack(URLRouter(websocket_urlpatterns))),
    }
)

# Heartbeat this server process from the start (not only once a client
# connects), so that it settles what a previous, killed process left.
from realtime import processes  # noqa: E402

processes.start()
