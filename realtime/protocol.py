"""Frame decoding and encoding: the only place that knows the envelope.

Inbound: ``{"event": str, "data": object?, "id": str|int?}``.
Outbound: ``{"event": str, "data": object, "id"?}``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from realtime.errors import ValidationFailed

RequestId = str | int
MAX_ID_LENGTH = 64
# A JSON escape that may decode to a lone surrogate (U+D800..U+DFFF): only
# frames containing one are searched for surrogates after parsing.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_REPORTED = 10


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
        return value
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
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            # Surrogates in the text itself: the frame was not valid UTF-8
            # (realtime.transport passes such a frame on with its bad bytes
            # as surrogate escapes) or the caller built an invalid string.
            return (
                None,
                None,
                ValidationFailed(
                    "frame is not valid UTF-8",
                    {"frame": [f"Invalid UTF-8 (or a lone surrogate) at character {exc.start}."]},
                ),
            )
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
    if _SURROGATE_ESCAPE.search(text):
        surrogates = _lone_surrogates(obj)
        if surrogates:
            return (
                None,
                _clean_envelope(obj),
                ValidationFailed("frame contains a lone surrogate, which is not valid Unicode", surrogates),
            )
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


def _lone_surrogates(obj: Any) -> dict[str, list[str]]:
    """Where a decoded frame holds a lone surrogate (a ``\\ud800`` escape
    not part of a pair): ``{path: [messages]}``, at most MAX_REPORTED paths,
    e.g. ``id``, ``data.room``, ``data.items.0``. Iterative: any nesting
    depth json.loads accepts is walked without recursion."""
    found: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack and len(found) < MAX_REPORTED:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                found[path or "frame"] = ["Contains a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode."]
        elif isinstance(value, dict):
            for key, item in value.items():
                name = _printable(key)
                if _SURROGATE.search(key):
                    found.setdefault(path or "frame", []).append(
                        f'The key "{name}" contains a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode.'
                    )
                stack.append((f"{path}.{name}" if path else name, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))
    return found


def _printable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\ud800``),
    so that it can be encoded in a reply."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean_envelope(obj: Any) -> dict[str, Any] | None:
    """The envelope fields of a rejected frame that can be echoed in the
    error (``id`` to address it, ``event`` to name it): those without a lone
    surrogate."""
    if not isinstance(obj, dict):
        return None
    return {
        name: obj[name]
        for name in ("id", "event")
        if name in obj and not (isinstance(obj[name], str) and _SURROGATE.search(obj[name]))
    }


def encode(event: str, data: dict[str, Any], request_id: RequestId | None = None, *, plain: bool = False) -> str:
    """The frame's text. ``plain``: the caller knows that ``data`` holds no
    float (nor anything ``_default`` would convert), only dicts with string
    keys, lists, strings, integers, booleans and null; such a frame (a
    query's rows) is written by orjson, several times faster, to the same
    text (compact, non-ASCII as is, the same escapes; orjson writes some
    floats differently, 1e-7 for 1e-07, hence the caller's word). What
    orjson refuses (an integer over 64 bits, a lone surrogate) goes the
    usual way."""
    frame: dict[str, Any] = {"event": event, "data": data}
    if request_id is not None:
        frame["id"] = request_id
    if plain:
        try:
            return orjson.dumps(frame).decode()
        except TypeError:
            pass
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    # Decimal (exact on-chain amounts) travels as a string; anything else
    # unexpected is a programming error worth surfacing.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
