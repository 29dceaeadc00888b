"""Payload serializers of the query engine events."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from realtime.payloads import Payload

MAX_SQL_LENGTH = 20_000
MAX_PARAMS = 100


class QueryParamsField(serializers.JSONField):  # type: ignore[misc]  # DRF is untyped here
    """A list bound to ``?`` placeholders or an object bound to ``:name``
    placeholders; values are scalars (string, number, boolean, null)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if isinstance(value, list):
            values = value
        elif isinstance(value, dict):
            values = list(value.values())
            for name in value:
                if not isinstance(name, str) or not name or len(name) > 64:
                    raise serializers.ValidationError("Parameter names are strings of 1 to 64 characters.")
        else:
            raise serializers.ValidationError("Expected a list (for ?) or an object (for :name).")
        if len(values) > MAX_PARAMS:
            raise serializers.ValidationError(f"At most {MAX_PARAMS} parameters.")
        for item in values:
            if item is not None and not isinstance(item, (str, int, float, bool)):
                raise serializers.ValidationError("Parameter values must be strings, numbers, booleans or null.")
            if isinstance(item, str) and len(item) > 10_000:
                raise serializers.ValidationError("A parameter value is at most 10,000 characters.")
        return value


class QueryPayload(Payload):
    sql = serializers.CharField(max_length=MAX_SQL_LENGTH, trim_whitespace=False, help_text="One read-only SELECT.")
    params = QueryParamsField(required=False, allow_null=True, help_text="List for ? placeholders or object for :name.")
    applicationId = serializers.CharField(
        required=False, max_length=64, help_text="Application to run in and charge; default: the connection's."
    )


class QueryCancelPayload(Payload):
    queryId = serializers.CharField(max_length=64)


class QueryStartedPayload(Payload):
    queryId = serializers.CharField()
    estimatedMs = serializers.IntegerField()


class QueryProgressPayload(Payload):
    queryId = serializers.CharField()
    rowsProcessed = serializers.IntegerField()
    pct = serializers.FloatField(allow_null=True, help_text="0-100, never decreasing; null when unknown.")


class SchemaColumnPayload(Payload):
    name = serializers.CharField()
    type = serializers.CharField()


class QueryResponsePayload(Payload):
    queryId = serializers.CharField()
    rows = serializers.ListField(child=serializers.JSONField(), help_text="Rows as arrays aligned with schema.")
    schema = SchemaColumnPayload(many=True)


class QueryCompletedPayload(Payload):
    queryId = serializers.CharField()
    durationMs = serializers.IntegerField()
    totalRows = serializers.IntegerField()
    truncated = serializers.BooleanField(
        help_text=(
            "True exactly when the query had more rows than were sent: cut at the default limit (no LIMIT "
            "given) or at the application's row cap (a LIMIT over it); never for a LIMIT within the cap."
        )
    )


class QueryErrorPayload(Payload):
    queryId = serializers.CharField(required=False, allow_null=True)
    code = serializers.CharField()
    message = serializers.CharField()
    retryAfter = serializers.IntegerField(required=False)
    line = serializers.IntegerField(required=False)
    column = serializers.IntegerField(required=False)


class CatalogColumnPayload(Payload):
    name = serializers.CharField()
    type = serializers.CharField()
    description = serializers.CharField(required=False)


class CatalogTablePayload(Payload):
    name = serializers.CharField()
    description = serializers.CharField()
    scope = serializers.ChoiceField(choices=["public", "private"], help_text="private: only the caller's rows.")
    columns = CatalogColumnPayload(many=True)


class QueryCatalogResponsePayload(Payload):
    tables = CatalogTablePayload(many=True)
    functions = serializers.ListField(child=serializers.CharField())
