"""Frame decoding and encoding: the only place that knows the envelope.

Inbound: ``{"event": str, "data": object?, "id": str|int?}``.
Outbound: ``{"event": str, "data": object, "id"?}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from realtime.errors import ValidationFailed

RequestId = str | int
MAX_ID_LENGTH = 64


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Frame:
    event: str
    data: dict[str, Any]
    id: RequestId | None


def peek_id(obj: Any) -> RequestId | None:
    """The request id of a decoded object if it is well formed, else None;
    used to address errors about a frame that failed validation."""
    if not isinstance(obj, dict):
        return None
    value = obj.get("id")
    if _valid_id(value):
        return value  # type: ignore[no-any-return]
    return None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return 0 < len(value) <= MAX_ID_LENGTH
    if isinstance(value, int):
        return len(str(value)) <= MAX_ID_LENGTH
    return False


def decode(text: str | None, raw: bytes | None, max_bytes: int) -> tuple[Frame | None, Any, ValidationFailed | None]:
    """Decode one inbound WebSocket message.

    Returns (frame, parsed_object, error): exactly one of frame/error is set.
    Never raises: any input maps to a ValidationFailed.
    """
    if text is None:
        if raw is not None:
            return (
                None,
                None,
                ValidationFailed(
                    "binary frames are not supported; send JSON text frames",
                    {"frame": ["Binary frame."]},
                ),
            )
        return None, None, ValidationFailed("empty frame", {"frame": ["Empty frame."]})
    try:
        size = len(text.encode("utf-8", "surrogatepass"))
    except UnicodeError:
        size = len(text) * 4
    if size > max_bytes:
        return (
            None,
            None,
            ValidationFailed(
                f"frame of {size} bytes exceeds the {max_bytes}-byte limit",
                {"frame": [f"Larger than {max_bytes} bytes."]},
            ),
        )
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, None, ValidationFailed("frame is not valid JSON", {"frame": [f"Invalid JSON: {exc}"[:200]]})
    if not isinstance(obj, dict):
        return None, obj, ValidationFailed("frame must be a JSON object", {"frame": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        errors["event"] = ["This field is required and must be a non-empty string."]
    elif len(event) > 100:
        errors["event"] = ["Event names are at most 100 characters."]
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors["data"] = ["Expected a JSON object."]
    if "id" in obj and not _valid_id(obj["id"]):
        errors["id"] = [f"Expected a string or integer of at most {MAX_ID_LENGTH} characters."]
    unknown = set(obj) - {"event", "data", "id"}
    for key in sorted(unknown, key=str)[:10]:
        errors[str(key)[:100]] = ["Unknown field."]
    if errors:
        return None, obj, ValidationFailed("frame does not match {event, data, id}", errors)
    return Frame(event=str(event), data=data, id=obj.get("id")), obj, None


def encode(event: str, data: dict[str, Any], request_id: RequestId | None = None) -> str:
    frame: dict[str, Any] = {"event": event, "data": data}
    if request_id is not None:
        frame["id"] = request_id
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    # Decimal (exact on-chain amounts) travels as a string; anything else
    # unexpected is a programming error worth surfacing.
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
