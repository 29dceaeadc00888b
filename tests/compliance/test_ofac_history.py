"""OFAC lists loaded in any order (``import_ofac --as-of``) leave the same
listing and delisting history as loaded in date order, and screening at a
past moment answers by that history.

Three dated versions of the lists are written in the real format
(``sanctioned_addresses_<ASSET>.txt``, one address a line) from addresses of
the real snapshot in ``data/ofac``."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command

from compliance import graph
from compliance.models import AddressLabel, ListSnapshot
from compliance.ofac import default_ofac_directory, import_ofac_lists, read_ofac_lists
from compliance.services import find_address

pytestmark = pytest.mark.django_db

D2023 = datetime(2023, 3, 1, tzinfo=UTC)
D2024 = datetime(2024, 6, 1, tzinfo=UTC)
D2025 = datetime(2025, 2, 1, tzinfo=UTC)


def real() -> dict[str, list[str]]:
    directory = default_ofac_directory()
    assert directory is not None, "the OFAC fixture (data/ofac) is required"
    return read_ofac_lists(directory)


def names() -> dict[str, tuple[str, str]]:
    """Tag -> (asset, real listed address)."""
    lists = real()
    eth, xbt, usdc, tron = lists["ETH"], lists["XBT"], lists["USDC"], [a for a in lists["USDT"] if a.startswith("T")]
    return {
        "a": ("ETH", eth[0]),
        "b": ("ETH", eth[1]),
        "c": ("ETH", eth[2]),
        "d": ("ETH", eth[3]),
        "e": ("ETH", eth[4]),
        "x1": ("XBT", xbt[0]),
        "x2": ("XBT", xbt[1]),
        "u1": ("USDC", usdc[0]),
        "t1": ("USDT", tron[0]),
    }


# Which entries each dated list has. USDC leaves the lists in 2024 (its
# file is gone) and comes back in 2025; USDT first appears in 2024.
LISTS = {
    D2023: {"a", "b", "c", "x1", "x2", "u1"},
    D2024: {"a", "c", "d", "x1", "t1"},
    D2025: {"a", "b", "d", "e", "x1", "x2", "u1"},
}
VERSIONS = {D2023: "2023-03", D2024: "2024-06", D2025: "2025-02"}
# The history the rules give: listed from the first list that has the entry,
# delisted at the first later list that lacks it, listed again if it comes back.
EXPECTED = {
    "a": [(D2023, None, "2023-03")],
    "b": [(D2023, D2024, "2023-03"), (D2025, None, "2025-02")],
    "c": [(D2023, D2025, "2023-03")],
    "d": [(D2024, None, "2024-06")],
    "e": [(D2025, None, "2025-02")],
    "x1": [(D2023, None, "2023-03")],
    "x2": [(D2023, D2024, "2023-03"), (D2025, None, "2025-02")],
    "u1": [(D2023, D2024, "2023-03"), (D2025, None, "2025-02")],
    "t1": [(D2024, D2025, "2024-06")],
}


def write_lists(root: Path) -> dict[datetime, Path]:
    tags = names()
    folders = {}
    for when, members in LISTS.items():
        folder = root / f"ofac-{when:%Y-%m-%d}"
        folder.mkdir()
        by_asset: dict[str, list[str]] = {}
        for tag in sorted(members):
            asset, address = tags[tag]
            by_asset.setdefault(asset, []).append(address)
        for asset, addresses in by_asset.items():
            (folder / f"sanctioned_addresses_{asset}.txt").write_text("\n".join(addresses) + "\n")
        folders[when] = folder
    return folders


def load(folder: Path, when: datetime) -> str:
    out = io.StringIO()
    call_command(
        "import_ofac", "--dir", str(folder), "--version", VERSIONS[when], "--as-of", when.isoformat(), stdout=out
    )
    return out.getvalue()


def history() -> dict[str, list[tuple[datetime, datetime | None, str]]]:
    by_address = {address.lower(): tag for tag, (_, address) in names().items()}
    by_address.update({address: tag for tag, (_, address) in names().items()})
    result: dict[str, list[tuple[datetime, datetime | None, str]]] = {}
    labels = AddressLabel.objects.filter(source__startswith="ofac:").order_by("listed_at")
    for label in labels.select_related("address"):
        tag = by_address[label.address.address]
        assert label.source == f"ofac:{names()[tag][0]}" and label.entity.category == "sanctions"
        result.setdefault(tag, []).append((label.listed_at, label.delisted_at, label.source_version))
    return result


def screened(tag: str, at: datetime) -> bool:
    asset, listed = names()[tag]
    chain = "tron" if asset == "USDT" else "bitcoin" if asset == "XBT" else "ethereum"
    address = find_address(chain, listed)
    assert address is not None
    facts = graph.active_labels([address.pk], at=at).get(address.pk, [])
    return any(f.category == "sanctions" and f.source.startswith("ofac:") for f in facts)


ORDERS = list(itertools.permutations(sorted(LISTS)))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(f"{d:%Y}" for d in o) for o in ORDERS])
def test_lists_loaded_in_any_order_leave_the_date_order_history(tmp_path, order):
    folders = write_lists(tmp_path)
    outputs = [load(folders[when], when) for when in order]
    assert history() == EXPECTED
    assert list(ListSnapshot.objects.filter(source="ofac").order_by("as_of").values_list("as_of", flat=True)) == [
        D2023,
        D2024,
        D2025,
    ]
    # A list older than one already loaded says that the history was rebuilt.
    for index, when in enumerate(order):
        older_than_loaded = any(earlier > when for earlier in order[:index])
        assert ("the history was rebuilt" in outputs[index]) == older_than_loaded, outputs[index]

    # Screening at a past moment answers by that history.
    moments = {
        datetime(2022, 12, 31, tzinfo=UTC): set(),
        datetime(2023, 9, 1, tzinfo=UTC): LISTS[D2023],
        datetime(2024, 9, 1, tzinfo=UTC): LISTS[D2024],
        datetime(2025, 9, 1, tzinfo=UTC): LISTS[D2025],
    }
    for moment, members in moments.items():
        for tag in EXPECTED:
            assert screened(tag, moment) == (tag in members), (tag, moment)
    # The lists' own dates: a list is in force from its date on.
    assert screened("d", D2024) and not screened("b", D2024) and screened("b", D2025)

    # Loading any of them again changes nothing.
    for when in order:
        assert "already loaded, nothing changed" in load(folders[when], when)
    assert history() == EXPECTED


def test_a_list_loaded_again_for_its_date_with_other_entries_replaces_it(tmp_path):
    folders = write_lists(tmp_path)
    for when in (D2023, D2024, D2025):
        load(folders[when], when)
    # The 2024 list is corrected: it did have b after all.
    _, b = names()["b"]
    eth = folders[D2024] / "sanctioned_addresses_ETH.txt"
    eth.write_text(eth.read_text() + b + "\n")
    result = import_ofac_lists(folders[D2024], "2024-06 corrected", as_of=D2024)
    assert result.recorded and result.later_lists == 1 and result.label_rows_changed > 0
    assert result.assets["ETH"].listed == 1  # d; b was on the 2023 list already
    assert history()["b"] == [(D2023, None, "2023-03")]
    assert screened("b", datetime(2024, 9, 1, tzinfo=UTC))
    assert ListSnapshot.objects.filter(source="ofac").count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_lists_loaded_before_snapshots_were_kept(tmp_path):
    """Loads recorded before snapshots existed become snapshots (the OFAC
    labels in force at each load's date), so an older list loaded afterwards
    is placed among them."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("compliance", "0002_analysis_jobs")], [("compliance", "0003_list_snapshots")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    chain = old.get_model("compliance", "Chain").objects.create(
        code="ethereum", name="Ethereum", kind="account", native_symbol="ETH", native_decimals=18, analysed=True
    )
    entity = old.get_model("compliance", "Entity").objects.create(name="OFAC SDN list (ETH)", category="sanctions")
    tags = names()
    ids = {}
    for tag in ("a", "b", "e"):
        ids[tag] = old.get_model("compliance", "Address").objects.create(chain=chain, address=tags[tag][1].lower()).pk
    label = old.get_model("compliance", "AddressLabel").objects
    label.create(address_id=ids["a"], entity=entity, source="ofac:ETH", source_version="2024-06", listed_at=D2024)
    label.create(
        address_id=ids["b"],
        entity=entity,
        source="ofac:ETH",
        source_version="2024-06",
        listed_at=D2024,
        delisted_at=D2025,
    )
    label.create(address_id=ids["e"], entity=entity, source="ofac:ETH", source_version="2025-02", listed_at=D2025)
    imports = old.get_model("compliance", "LabelImport").objects
    for when in (D2024, D2025):
        imports.create(
            source="ofac", version=VERSIONS[when], content_sha256="0" * 64, details={"as_of": when.isoformat()}
        )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    snapshots = {s.as_of: s for s in ListSnapshot.objects.filter(source="ofac")}
    assert set(snapshots) == {D2024, D2025}
    assert {a for _, a in snapshots[D2024].entries.values_list("source", "address_id")} == {ids["a"], ids["b"]}
    assert {a for _, a in snapshots[D2025].entries.values_list("source", "address_id")} == {ids["a"], ids["e"]}

    # A 2023 list with b only: b is listed from 2023 (still on the 2024 list),
    # a from 2024, e from 2025.
    folder = tmp_path / "ofac-2023"
    folder.mkdir()
    (folder / "sanctioned_addresses_ETH.txt").write_text(tags["b"][1] + "\n")
    import_ofac_lists(folder, "2023-03", as_of=D2023)
    history_rows = {
        (row.address_id, row.listed_at, row.delisted_at) for row in AddressLabel.objects.filter(source="ofac:ETH")
    }
    assert history_rows == {(ids["b"], D2023, D2025), (ids["a"], D2024, None), (ids["e"], D2025, None)}
