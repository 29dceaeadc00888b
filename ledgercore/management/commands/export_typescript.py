from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ledgercore.typescript import generate

DEFAULT_PATH = "clients/typescript/ledgercore-events.d.ts"


class Command(BaseCommand):
    help = (
        "Write the TypeScript declarations of every event payload, generated from the event registry "
        f"(default: {DEFAULT_PATH}; '-' for standard output). Example: manage.py export_typescript --check"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", default=DEFAULT_PATH)
        parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the registry's")

    def handle(self, *args: Any, **options: Any) -> None:
        text = generate()
        if options["path"] == "-":
            self.stdout.write(text, ending="")
            return
        path = Path(options["path"])
        if not path.is_absolute():
            path = Path(settings.BASE_DIR) / path
        if options["check"]:
            if not path.exists() or path.read_text() != text:
                self.stderr.write(f"{path} is out of date: run manage.py export_typescript")
                raise SystemExit(1)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.stdout.write(f"wrote {path}")
