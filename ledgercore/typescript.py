"""TypeScript declarations of every event payload, generated from the event
registry (the same JSON schemas as /api/asyncapi.json)."""

from __future__ import annotations

import json
import re
from typing import Any

from realtime.payloads import json_schema
from realtime.registry import registry

HEADER = """\
// LedgerCore Realtime: the payload of every event of the native protocol
// (/ws) and of Socket.IO (/socket.io/), by event name.
// Generated from the event registry by `manage.py export_typescript`; do not
// edit: CI fails when this file differs from what the registry generates.
// Protocol: docs/PROTOCOL.md; the same schemas: GET /api/asyncapi.json.
"""

FOOTER = """\
/** The position a room event (and the answer that joined a room) carries next to event and data. */
export interface RoomPosition {
  /** The room whose position this frame carries. */
  room?: string;
  /** Events: the event's offset in the room. Answers: the room's last offset at the answer. */
  offset?: number;
  /** Run of the room's offsets; a new one means the history was lost. */
  epoch?: string;
  /** Answers to a recovery: true when every missed event follows; false: refetch. */
  recovered?: boolean;
}

export type ClientEventName = keyof ClientEvents;
export type ServerEventName = keyof ServerEvents;

/** A frame you send: {event, data?, id?}. */
export type ClientFrame<E extends ClientEventName = ClientEventName> = {
  [K in E]: { event: K; data?: ClientEvents[K]; id?: string | number };
}[E];

/** A frame the server sends: {event, data, id?} and, for room events, the room's position. */
export type ServerFrame<E extends ServerEventName = ServerEventName> = {
  [K in E]: { event: K; data: ServerEvents[K]; id?: string | number } & RoomPosition;
}[E];
"""

IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)


def _comment(text: str, indent: str) -> str:
    text = " ".join(str(text).split()).replace("*/", "* /")
    return f"{indent}/** {text} */\n"


def _key(name: str) -> str:
    return name if IDENTIFIER.match(name) else json.dumps(name)


def ts_type(schema: dict[str, Any], indent: str = "") -> str:
    """The TypeScript type of a JSON schema (the subset realtime.payloads emits)."""
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"]) or "never"
    for union in ("oneOf", "anyOf"):
        if union in schema:
            return " | ".join(dict.fromkeys(ts_type(option, indent) for option in schema[union]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}, indent) for k in kind)
    if kind == "object" or "properties" in schema:
        return _object(schema, indent)
    if kind == "array":
        item = ts_type(schema.get("items") or {}, indent)
        return f"({item})[]" if "|" in item or "&" in item else f"{item}[]"
    return {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}.get(
        str(kind), "unknown"
    )


def _object(schema: dict[str, Any], indent: str) -> str:
    properties: dict[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    if not properties:
        if isinstance(extra, dict):
            return f"{{ [key: string]: {ts_type(extra, indent)} }}"
        return "Record<string, never>" if extra is False else "{ [key: string]: unknown }"
    required = set(schema.get("required") or ())
    inner = indent + "  "
    lines = ["{\n"]
    for name, prop in properties.items():
        if prop.get("description"):
            lines.append(_comment(prop["description"], inner))
        optional = "" if name in required else "?"
        lines.append(f"{inner}{_key(name)}{optional}: {ts_type(prop, inner)};\n")
    if isinstance(extra, dict):
        lines.append(f"{inner}[key: string]: unknown;\n")
    lines.append(f"{indent}}}")
    return "".join(lines)


def _declaration(type_name: str, summary: str, schema: dict[str, Any]) -> str:
    body = ts_type(schema)
    comment = _comment(summary, "") if summary else ""
    if body.startswith("{\n"):
        return f"{comment}export interface {type_name} {body}\n"
    return f"{comment}export type {type_name} = {body};\n"


def generate() -> str:
    """The whole .d.ts file: one type per event payload, then the name -> payload maps."""
    parts = [HEADER]
    client_map: list[str] = []
    server_map: list[str] = []
    for name, spec in sorted(registry.inbound_events.items()):
        type_name = f"{pascal(name)}Request"
        parts.append("\n" + _declaration(type_name, f"{name} (you -> server). {spec.summary}", _data(spec)))
        client_map.append(f"  {_key(name)}: {type_name};\n")
    for name, out in sorted(registry.outbound_events.items()):
        type_name = f"{pascal(name)}Event"
        direction = "server -> room" if out.pushed else "server -> you"
        parts.append("\n" + _declaration(type_name, f"{name} ({direction}). {out.summary}", _data(out)))
        server_map.append(f"  {_key(name)}: {type_name};\n")
    parts.append("\n/** Events you send, by name: their data. */\nexport interface ClientEvents {\n")
    parts.extend(client_map)
    parts.append("}\n\n/** Events the server sends, by name: their data. */\nexport interface ServerEvents {\n")
    parts.extend(server_map)
    parts.append("}\n\n" + FOOTER)
    return "".join(parts)


def _data(spec: Any) -> dict[str, Any]:
    return json_schema(spec.serializer())
