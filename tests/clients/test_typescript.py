"""clients/typescript/ledgercore-events.d.ts is what the event registry generates now."""

from __future__ import annotations

from pathlib import Path

from django.core.management import call_command

from ledgercore.typescript import generate, ts_type
from realtime.registry import registry

COMMITTED = Path(__file__).resolve().parents[2] / "clients" / "typescript" / "ledgercore-events.d.ts"


def test_the_committed_declarations_match_the_registry():
    assert COMMITTED.read_text() == generate(), (
        "clients/typescript/ledgercore-events.d.ts drifted from the event registry: "
        "run `manage.py export_typescript` and commit the file"
    )


def test_every_registered_event_has_its_payload_type():
    text = generate()
    for name in registry.inbound_events:
        assert f"\n  {name}: " in text.split("export interface ClientEvents {", 1)[1].split("}", 1)[0], name
    for name in registry.outbound_events:
        assert f"\n  {name}: " in text.split("export interface ServerEvents {", 1)[1].split("}", 1)[0], name


def test_json_schemas_become_typescript_types():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "An *int*."},
            "b": {"oneOf": [{"type": "string"}, {"type": "null"}]},
            "c": {"type": "array", "items": {"enum": ["x", "y"]}},
            "odd-key": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    assert ts_type(schema) == (
        "{\n"
        "  /** An *int*. */\n"
        "  a: number;\n"
        "  b?: string | null;\n"
        '  c?: ("x" | "y")[];\n'
        '  "odd-key"?: { [key: string]: boolean };\n'
        "}"
    )


def test_the_check_option_passes_on_the_committed_file(capsys):
    call_command("export_typescript", "--check")
    call_command("export_typescript", "-")
    assert capsys.readouterr().out == generate()
