"""A list source's label history, rebuilt from the dated snapshots loaded.

Each load of a list (``compliance.ofac``) stores a ``ListSnapshot``: its date
and the entries it had, one (label source, address) each. The labels of the
source follow from all its snapshots taken in date order, whatever the order
they were loaded in: an entry is listed from the first snapshot that has it,
delisted at the first later snapshot that lacks it, and listed again (a new
label row) if it comes back. ``rebuild`` brings the ``AddressLabel`` rows to
exactly that history, changing as few rows as it can: with lists loaded in
date order it only adds new labels and closes the ones that left.

Labels of the source follow the lists: a delisting made by hand (the admin's
"delist" action) on one of them is undone by the next load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from compliance.batching import chunked
from compliance.models import AddressLabel, Entity, ListSnapshot, ListSnapshotEntry

Key = tuple[str, int]  # (label source, address id)


@dataclass(frozen=True)
class Interval:
    listed_at: datetime
    delisted_at: datetime | None
    version: str
    note: str


def store_snapshot(
    source: str, as_of: datetime, version: str, digest: str, entries: dict[Key, str]
) -> tuple[ListSnapshot, bool]:
    """Record the lists of ``source`` as of ``as_of`` (entry -> note); a list
    of the same date loaded again replaces it. Returns the snapshot and whether
    anything changed."""
    snapshot = ListSnapshot.objects.filter(source=source, as_of=as_of).first()
    if snapshot is not None:
        if snapshot.content_sha256 == digest and snapshot.version == version:
            return snapshot, False
        snapshot.version, snapshot.content_sha256 = version, digest
        snapshot.save(update_fields=["version", "content_sha256", "loaded_at"])
        snapshot.entries.all().delete()
    else:
        snapshot = ListSnapshot.objects.create(source=source, as_of=as_of, version=version, content_sha256=digest)
    ListSnapshotEntry.objects.bulk_create(
        [
            ListSnapshotEntry(snapshot=snapshot, source=label_source, address_id=address_id, note=note)
            for (label_source, address_id), note in entries.items()
        ],
        batch_size=1000,
    )
    return snapshot, True


def snapshot_keys(snapshot: ListSnapshot | None) -> set[Key]:
    if snapshot is None:
        return set()
    return set(snapshot.entries.values_list("source", "address_id"))


def previous_snapshot(source: str, as_of: datetime) -> ListSnapshot | None:
    """The snapshot of ``source`` dated just before ``as_of``."""
    return ListSnapshot.objects.filter(source=source, as_of__lt=as_of).order_by("-as_of").first()


def history(source: str) -> dict[Key, list[Interval]]:
    """What the labels of ``source`` should be: per entry, its listing
    intervals in date order, from every snapshot loaded."""
    snapshots = list(ListSnapshot.objects.filter(source=source).order_by("as_of"))
    members: dict[int, dict[Key, str]] = {s.pk: {} for s in snapshots}
    rows = ListSnapshotEntry.objects.filter(snapshot__source=source).values_list(
        "snapshot_id", "source", "address_id", "note"
    )
    for snapshot_id, label_source, address_id, note in rows.iterator(chunk_size=5000):
        members[snapshot_id][(label_source, address_id)] = note
    result: dict[Key, list[Interval]] = {}
    open_: dict[Key, Interval] = {}
    for snapshot in snapshots:
        present = members[snapshot.pk]
        for key in [k for k in open_ if k not in present]:
            opened = open_.pop(key)
            result.setdefault(key, []).append(Interval(opened.listed_at, snapshot.as_of, opened.version, opened.note))
        for key, note in present.items():
            if key not in open_:
                open_[key] = Interval(snapshot.as_of, None, snapshot.version, note)
    for key, opened in open_.items():
        result.setdefault(key, []).append(opened)
    return result


def rebuild(source: str, entity_for: Callable[[str], Entity], confidence: int) -> int:
    """Bring the labels of ``source`` (label sources ``<source>:…``) to the
    history of its snapshots; ``entity_for(label source)`` owns new labels.
    Returns how many label rows were added, changed or removed."""
    wanted = history(source)
    existing: dict[Key, list[AddressLabel]] = {}
    labels = AddressLabel.objects.filter(source__startswith=f"{source}:").order_by("listed_at", "id")
    for label in labels.iterator(chunk_size=5000):
        existing.setdefault((label.source, label.address_id), []).append(label)
    removed: list[int] = []
    closing: list[AddressLabel] = []
    opening: list[AddressLabel] = []
    added: list[AddressLabel] = []
    entities: dict[str, Entity] = {}
    for key in existing.keys() | wanted.keys():
        rows, intervals = existing.get(key, []), wanted.get(key, [])
        for row, interval in zip(rows, intervals, strict=False):
            if (row.listed_at, row.delisted_at, row.source_version, row.note) != (
                interval.listed_at,
                interval.delisted_at,
                interval.version,
                interval.note,
            ):
                row.listed_at, row.delisted_at = interval.listed_at, interval.delisted_at
                row.source_version, row.note = interval.version, interval.note
                (closing if interval.delisted_at is not None else opening).append(row)
        removed.extend(row.pk for row in rows[len(intervals) :])
        for interval in intervals[len(rows) :]:
            label_source, address_id = key
            if label_source not in entities:
                entities[label_source] = entity_for(label_source)
            added.append(
                AddressLabel(
                    address_id=address_id,
                    entity=entities[label_source],
                    source=label_source,
                    source_version=interval.version,
                    confidence=confidence,
                    listed_at=interval.listed_at,
                    delisted_at=interval.delisted_at,
                    note=interval.note,
                )
            )
    for id_chunk in chunked(removed):
        AddressLabel.objects.filter(pk__in=id_chunk).delete()
    # Closed rows first, so that no entry ever has two open labels at once.
    fields = ["listed_at", "delisted_at", "source_version", "note"]
    AddressLabel.objects.bulk_update(closing, fields, batch_size=500)
    AddressLabel.objects.bulk_update(opening, fields, batch_size=500)
    AddressLabel.objects.bulk_create(added, batch_size=1000)
    return len(removed) + len(closing) + len(opening) + len(added)
