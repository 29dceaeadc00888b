"""The AsyncAPI 3.0 document, generated from the event registry."""

from __future__ import annotations

from typing import Any

from realtime.payloads import json_schema
from realtime.registry import registry
from realtime.rooms import namespaces

ENVELOPE_DESCRIPTION = (
    "Every frame is one JSON text object. Client to server: {event, data, id?}. "
    "Server to client: {event, data, id?}; id echoes the request's id on every event it caused "
    "and is absent on pushed events. Timestamps are epoch milliseconds (UTC). "
    "Events published to a room, and the subscribed (and connected, for the personal room) answers, also "
    "carry the room's position next to event and data: room, offset (increasing per room) and epoch; answers "
    "to a recovery add recovered. Resubscribe with since {offset, epoch} (the personal room: connect with "
    "?sinceOffset=&sinceEpoch=) to get the events missed since, in order and exactly once; recovered: false "
    "means refetch. market: rooms carry no position (resubscribe for their initial data)."
)

POSITION_FIELDS: dict[str, Any] = {
    "room": {"type": "string", "description": "The room whose position this frame carries."},
    "offset": {
        "type": "integer",
        "minimum": 0,
        "description": "Events: the event's offset in the room. Answers: the room's last offset at the answer.",
    },
    "epoch": {"type": "string", "description": "Run of the room's offsets; a new one means history was lost."},
    "recovered": {
        "type": "boolean",
        "description": "Answers to a recovery: true when every missed event follows; false: refetch.",
    },
}
# Outbound events that are not pushed to rooms but carry a room's position.
POSITIONED_ANSWERS = {"connected", "subscribed"}


def _message(
    name: str, summary: str, payload: dict[str, Any], category: str, with_id: bool, positioned: bool = False
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": payload,
            "id": {
                "oneOf": [{"type": "string", "maxLength": 64}, {"type": "integer"}],
                "description": "Client-chosen request id" + (" (echoed)." if with_id else "."),
            },
        },
        "additionalProperties": False,
    }
    if positioned:
        envelope["properties"].update(POSITION_FIELDS)
    return {"name": name, "title": name, "summary": summary, "tags": [{"name": category}], "payload": envelope}


def build_document() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    send_refs: list[dict[str, str]] = []
    for name, spec in sorted(registry.inbound_events.items()):
        messages[name] = _message(name, spec.summary, json_schema(spec.serializer()), spec.category, True)
        messages[name]["x-ledgercore"] = {
            "replies": list(spec.replies),
            "errorEvent": spec.error_event,
            "throttle": spec.throttle,
            "price": spec.price,
        }
    for name, out in sorted(registry.outbound_events.items()):
        positioned = out.pushed or name in POSITIONED_ANSWERS
        messages[name] = _message(
            name, out.summary, json_schema(out.serializer()), out.category, not out.pushed, positioned
        )
        if out.pushed:
            messages[name]["x-ledgercore"] = {"pushed": True}
        send_refs.append({"$ref": f"#/channels/ws/messages/{name}"})

    operations: dict[str, Any] = {}
    for name, spec in sorted(registry.inbound_events.items()):
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/ws"},
            "summary": spec.summary,
            "messages": [{"$ref": f"#/channels/ws/messages/{name}"}],
        }
        replies = [r for r in spec.replies if r in registry.outbound_events]
        if replies:
            operation["reply"] = {
                "channel": {"$ref": "#/channels/ws"},
                "messages": [{"$ref": f"#/channels/ws/messages/{r}"} for r in replies],
            }
        operations[f"receive_{name}"] = operation
    for name, out in sorted(registry.outbound_events.items()):
        operations[f"send_{name}"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/ws"},
            "summary": out.summary,
            "messages": [{"$ref": f"#/channels/ws/messages/{name}"}],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "LedgerCore Realtime",
            "version": "1.0.0",
            "description": ENVELOPE_DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "pathname": "/ws",
                "description": "Authenticate with ?token=<JWT> or 'Authorization: Bearer <JWT>'.",
                "security": [{"$ref": "#/components/securitySchemes/token"}],
            },
            "socketio": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "protocolVersion": "Socket.IO 5 / Engine.IO 4",
                "pathname": "/socket.io/",
                "description": (
                    "The same events, by the same names and payloads, for socket.io-client and other Socket.IO v5 "
                    "clients (HTTP long-polling and WebSocket, namespace /): authenticate with the CONNECT payload "
                    "{token}; socket.emit(event, data, ack) is one request, acknowledged with its first reply "
                    "{event, data}; every reply and pushed event arrives as an event of that name. See "
                    "docs/PROTOCOL.md, 'Socket.IO'."
                ),
                "security": [{"$ref": "#/components/securitySchemes/connectAuth"}],
            },
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "description": "One connection carries every event; rooms: "
                + "; ".join(f"{ns.name}: {ns.description}" for ns in namespaces.values()),
                "messages": messages,
            }
        },
        "operations": operations,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "Clerk session token (RS256) or development token (HS256).",
                },
                "connectAuth": {
                    "type": "apiKey",
                    "in": "user",
                    "description": "Socket.IO: the same token, in the CONNECT packet's auth payload {token}.",
                },
            }
        },
    }
