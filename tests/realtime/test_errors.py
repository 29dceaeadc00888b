"""The one mapping of errors to the wire (realtime.errors)."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from rest_framework import serializers

from realtime import errors
from realtime.payloads import ErrorPayload


class _AppError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _MoreSpecificAppError(_AppError):
    pass


def test_a_protocol_error_is_sent_as_it_is():
    exc = errors.NotFound("no such room", room="market:X")
    assert errors.to_protocol_error(exc, "subscribe") is exc
    assert errors.envelope(exc, "error", "subscribe") == (
        "error",
        {"code": "NOT_FOUND", "message": "no such room", "room": "market:X"},
    )


def test_a_serializer_validation_error_is_validation_failed_with_flattened_fields():
    exc = serializers.ValidationError({"window": {"from": ["Required."]}, "non_field_errors": ["Bad."]})
    error = errors.to_protocol_error(exc, "request_market_data")
    assert isinstance(error, errors.ValidationFailed)
    event, data = errors.envelope(error, "market_data_error", "request_market_data")
    assert event == "validation_error"
    assert data["code"] == "VALIDATION_FAILED"
    assert data["event"] == "request_market_data"
    assert data["errors"] == {"window.from": ["Required."], "data": ["Bad."]}


def test_a_database_that_does_not_answer_is_unavailable_with_retry_after():
    error = errors.to_protocol_error(OperationalError("connection refused"), "query")
    assert error is not None and error.payload()["code"] == "UNAVAILABLE" and error.retry_after == 2


def test_an_unexpected_exception_maps_to_nothing_and_the_caller_answers_internal():
    assert errors.to_protocol_error(KeyError("x"), "query") is None
    assert errors.unexpected().payload()["code"] == "INTERNAL"


def test_an_app_error_type_maps_through_the_translation_its_app_registers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(errors, "_translations", {})
    errors.translate(_AppError, lambda e: errors.ProtocolError(e.message, code=e.code, queryId="q1"))
    error = errors.to_protocol_error(_MoreSpecificAppError("TIMEOUT", "too slow"), "query")
    assert error is not None
    assert error.payload() == {"code": "TIMEOUT", "message": "too slow", "queryId": "q1"}


def test_every_wire_code_is_in_the_error_envelope_schema():
    assert set(ErrorPayload().fields["code"].choices) == set(errors.WIRE_CODES)
    assert errors.CHARGED_FAILURES.isdisjoint(errors.SERVER_FAILURES)
