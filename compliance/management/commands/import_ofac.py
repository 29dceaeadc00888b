"""Load a version of the OFAC sanctioned-address lists as sanctions labels."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.ofac import default_ofac_directory, import_ofac_lists


def _as_of(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"not a date or an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Import sanctioned_addresses_<ASSET>.txt lists (default folder: LEDGERCORE_OFAC_DIR, else "
        "data/ofac in the repository), dated --as-of, in any order: the listing history is rebuilt from every "
        "list loaded, in date order. Idempotent; addresses missing from a later list are delisted."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # --version names the list version here, not Django's version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", type=Path, help="Folder holding the lists.")
        parser.add_argument("--version", help="Version recorded on new labels (default: from PROVENANCE.md).")
        parser.add_argument(
            "--as-of",
            type=_as_of,
            help=(
                "When this version of the lists was published (YYYY-MM-DD, or an ISO 8601 time; UTC): the listing "
                "time of the addresses it adds and the delisting time of those it drops, relative to the lists "
                "dated before and after it. Default: the date in PROVENANCE.md, else now."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory = options["dir"] or default_ofac_directory()
        if directory is None:
            raise CommandError("no OFAC folder: pass --dir or set LEDGERCORE_OFAC_DIR")
        try:
            result = import_ofac_lists(directory, options["version"], as_of=options["as_of"])
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        for asset, outcome in sorted(result.assets.items()):
            chains = ", ".join(f"{chain} {count}" for chain, count in sorted(outcome.chains.items()))
            line = (
                f"{asset}: {outcome.addresses} listed addresses ({chains}); "
                f"{outcome.listed} new, {outcome.delisted} delisted, {outcome.unchanged} unchanged"
            )
            if outcome.skipped:
                line += f"; {len(outcome.skipped)} skipped (no known format): {', '.join(outcome.skipped[:5])}"
            self.stdout.write(line)
            for note in outcome.notes:
                self.stdout.write(f"  note: {note}")
        for asset, closed in sorted(result.removed_assets.items()):
            self.stdout.write(f"{asset}: no longer in the lists, {closed} label(s) delisted")
        if result.later_lists:
            self.stdout.write(
                f"older than {result.later_lists} list(s) already loaded: the history was rebuilt from all "
                f"{result.lists_loaded} lists in date order ({result.label_rows_changed} label rows changed)"
            )
        state = "recorded" if result.recorded else "already loaded, nothing changed"
        self.stdout.write(
            f"OFAC version {result.version} as of {result.as_of:%Y-%m-%d %H:%M} UTC: "
            f"{result.listed} new, {result.delisted} delisted, {result.unchanged} unchanged ({state})"
        )
