"""Payload serializers: DRF serializers that reject unknown fields, and their
JSON Schema (for the AsyncAPI document)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from realtime.errors import WIRE_CODES


class Payload(serializers.Serializer):  # type: ignore[misc]  # DRF is untyped here
    """A wire payload. Unknown fields are errors, not silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {str(key)[:100]: ["Unknown field."] for key in sorted(unknown, key=str)[:10]}
                )
        return super().to_internal_value(data)


class EmptyPayload(Payload):
    pass


class RoomPayload(Payload):
    room = serializers.CharField(max_length=300, trim_whitespace=False)


class SincePayload(Payload):
    offset = serializers.IntegerField(
        min_value=0, max_value=2**53, help_text="Offset of the last event of the room you received."
    )
    epoch = serializers.CharField(min_length=1, max_length=64, help_text="Epoch that offset belongs to.")


class SubscribePayload(RoomPayload):
    since = SincePayload(
        required=False,
        help_text=(
            "Recover: the room's last position you saw (from an event's envelope or a previous subscribed). "
            "Events published since are sent after subscribed, which says recovered true or false."
        ),
    )


def json_schema(field: Any) -> dict[str, Any]:
    """JSON Schema of a serializer or field, enough to document the wire."""
    if isinstance(field, serializers.ListSerializer):
        return {"type": "array", "items": json_schema(field.child)}
    if isinstance(field, serializers.BaseSerializer):
        fields = field.fields if hasattr(field, "fields") else {}
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: json_schema(f) for name, f in fields.items()},
            "additionalProperties": False,
        }
        required = [name for name, f in fields.items() if f.required]
        if required:
            schema["required"] = required
        return _describe(schema, field)
    schema = _field_schema(field)
    if getattr(field, "allow_null", False):
        schema = {"oneOf": [schema, {"type": "null"}]}
    return _describe(schema, field)


def _describe(schema: dict[str, Any], field: Any) -> dict[str, Any]:
    text = getattr(field, "help_text", None)
    if text:
        schema["description"] = str(text)
    return schema


def _field_schema(field: Any) -> dict[str, Any]:
    s = serializers
    if isinstance(field, s.ChoiceField):
        return {"enum": list(field.choices)}
    if isinstance(field, s.BooleanField):
        return {"type": "boolean"}
    if isinstance(field, s.IntegerField):
        return _bounds({"type": "integer"}, field)
    if isinstance(field, (s.FloatField, s.DecimalField)):
        return _bounds({"type": "number"}, field)
    if isinstance(field, s.CharField):
        schema: dict[str, Any] = {"type": "string"}
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        if field.min_length is not None:
            schema["minLength"] = field.min_length
        return schema
    if isinstance(field, s.ListField):
        schema = {"type": "array", "items": json_schema(field.child)}
        if field.max_length is not None:
            schema["maxItems"] = field.max_length
        return schema
    if isinstance(field, s.DictField):
        return {"type": "object", "additionalProperties": json_schema(field.child)}
    schema_hint = getattr(field, "json_schema", None)
    if schema_hint is not None:
        return dict(schema_hint)
    return {}


def _bounds(schema: dict[str, Any], field: Any) -> dict[str, Any]:
    if getattr(field, "min_value", None) is not None:
        schema["minimum"] = field.min_value
    if getattr(field, "max_value", None) is not None:
        schema["maximum"] = field.max_value
    return schema


# --- system events (realtime.handlers) ---------------------------------------


class ConnectedPayload(Payload):
    userId = serializers.CharField(help_text="The authenticated user id (token subject).")
    sid = serializers.CharField(help_text="This connection's id.")
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")
    applicationId = serializers.CharField(help_text="The application this connection is bound to.")


class PongPayload(Payload):
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")


class SubscribedPayload(Payload):
    room = serializers.CharField()
    subscriberCount = serializers.IntegerField(
        min_value=1, help_text="Connections in the room across every server process, this one included."
    )


class UnsubscribedPayload(Payload):
    room = serializers.CharField()


class UserJoinedPayload(Payload):
    userId = serializers.CharField()
    room = serializers.CharField()
    joinedAt = serializers.IntegerField(help_text="Epoch milliseconds.")


class UserLeftPayload(Payload):
    userId = serializers.CharField()
    room = serializers.CharField()
    leftAt = serializers.IntegerField(help_text="Epoch milliseconds.")


class RoomResyncPayload(Payload):
    room = serializers.CharField()
    reason = serializers.ChoiceField(
        ["epoch_changed", "history_gap"],
        help_text=(
            "epoch_changed: the room's history was lost (new epoch); history_gap: events could not be delivered "
            "and are no longer in the history."
        ),
    )


class ErrorPayload(Payload):
    code = serializers.ChoiceField(list(WIRE_CODES))
    message = serializers.CharField()
    retryAfter = serializers.IntegerField(required=False, help_text="Seconds; set where retrying later helps.")


class ValidationErrorPayload(ErrorPayload):
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    event = serializers.CharField(allow_null=True, help_text="The event whose payload failed, if known.")
