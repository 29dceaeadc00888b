"""ASGI entry point: HTTP (Django) and WebSocket (/ws) on one port."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledgercore.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session auth is for staff browsers; token auth is read by the consumer.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
