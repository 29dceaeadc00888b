import json
from typing import Any

from django.core.management.base import BaseCommand

from realtime.asyncapi import build_document


class Command(BaseCommand):
    help = "Print the AsyncAPI 3.0 document of the WebSocket API (also served at /api/asyncapi.json)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(build_document(), indent=2))
