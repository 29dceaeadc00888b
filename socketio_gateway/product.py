"""The product over Socket.IO (namespace ``/``)."""

from __future__ import annotations

from socketio_gateway.sockets import NamespaceSocket, SocketIOSession


class ProductSession(SocketIOSession):
    def namespace_socket(self, namespace: str) -> NamespaceSocket | None:
        return None
