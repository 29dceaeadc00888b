"""Loading the OFAC SDN digital-currency address lists as sanctions labels.

A list folder holds ``sanctioned_addresses_<ASSET>.txt`` (one address per
line; the ``.json`` twin is read when the ``.txt`` is absent). Each asset's
list becomes one entity, "OFAC SDN list (<ASSET>)", category sanctions, and
its addresses labels with source ``ofac:<ASSET>``, the list version and
confidence 100.

Assets map to chains (``OFAC_ASSET_CHAINS``): ETH, USDC, ARB and BSC EVM
addresses go to ``ethereum`` (the same key controls the address on every EVM
chain), XBT to ``bitcoin``; USDT mixes Ethereum, Tron and Omni (Bitcoin)
addresses and each goes to the chain whose format it has. An address filed
under an asset whose chain rejects it but that another verified format
accepts (the XBT list carries one Tron address) is kept on that chain, with a
note. Every other asset has a screening-only chain (see ``compliance.chains``);
an asset unknown to us gets a chain named after it, so that nothing on the
list is dropped. Only an address that no format accepts is skipped, and
counted.

Each version is kept as a dated snapshot and the labels' history is rebuilt
from all of them in date order (``compliance.label_history``), so versions
loaded in any order (``import_ofac --as-of``) give the same history: a label
is closed (``delisted_at``) at the first later version without its address,
including every label of an asset whose file is gone, and an address that
comes back gets a new label. Re-importing the same version changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance import label_history
from compliance.addresses import BITCOIN, ETHEREUM, InvalidAddress
from compliance.batching import chunked
from compliance.chains import CHAIN_SPECS, ChainSpec, unmapped_chain_spec
from compliance.models import Address, Chain, Entity, EntityCategory, LabelImport, ListSnapshot
from compliance.services import ensure_chain

SOURCE_PREFIX = "ofac:"
SOURCE_NAME = "ofac"
CONFIDENCE = 100
_FILE_RE = re.compile(r"^sanctioned_addresses_([A-Z0-9]{2,12})\.(txt|json)$")

# Chains tried in order for an asset's addresses.
OFAC_ASSET_CHAINS: dict[str, tuple[str, ...]] = {
    "ETH": (ETHEREUM,),
    "XBT": (BITCOIN,),
    "USDT": (ETHEREUM, "tron", BITCOIN),
    "USDC": (ETHEREUM,),
    "ARB": (ETHEREUM,),
    "BSC": (ETHEREUM,),
    "TRX": ("tron",),
    "ETC": ("ethereum_classic",),
    "LTC": ("litecoin",),
    "BCH": ("bitcoin_cash",),
    "BSV": ("bitcoin_sv",),
    "BTG": ("bitcoin_gold",),
    "DASH": ("dash",),
    "ZEC": ("zcash",),
    "XMR": ("monero",),
    "XVG": ("verge",),
    "BNB": ("bnb_beacon",),
    "SOL": ("solana",),
    "XRP": ("xrp_ledger",),
}
# Formats that identify a chain on their own, tried for misfiled addresses.
_SELF_IDENTIFYING = (ETHEREUM, BITCOIN, "tron")


@dataclass
class AssetResult:
    addresses: int = 0  # distinct addresses in the file
    listed: int = 0  # new labels
    delisted: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # addresses no format accepts
    chains: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class OfacImportResult:
    version: str
    as_of: datetime
    content_sha256: str
    assets: dict[str, AssetResult]
    removed_assets: dict[str, int]  # assets absent from this version (not the list before it) -> entries
    recorded: bool  # a LabelImport row was written (False: same list again, nothing changed)
    label_rows_changed: int = 0  # label rows added, changed or removed by the history rebuild
    later_lists: int = 0  # lists dated after this one already loaded (the history was rebuilt around it)
    lists_loaded: int = 0

    @property
    def listed(self) -> int:
        return sum(a.listed for a in self.assets.values())

    @property
    def delisted(self) -> int:
        return sum(a.delisted for a in self.assets.values()) + sum(self.removed_assets.values())

    @property
    def unchanged(self) -> int:
        return sum(a.unchanged for a in self.assets.values())


def default_ofac_directory() -> Path | None:
    """``settings.LEDGERCORE_OFAC_DIR`` when set, else the snapshot shipped in
    the repository (``data/ofac``, see its PROVENANCE.md)."""
    configured = getattr(settings, "LEDGERCORE_OFAC_DIR", None)
    if configured:
        return Path(configured)
    candidate = Path(settings.BASE_DIR) / "data" / "ofac"
    return candidate if candidate.is_dir() else None


def read_ofac_lists(directory: Path | str) -> dict[str, list[str]]:
    """asset -> distinct addresses in file order."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"no OFAC list folder at {folder}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE_RE.match(path.name)
        if match and (match.group(2) == "txt" or match.group(1) not in files):
            files[match.group(1)] = path
    if not files:
        raise FileNotFoundError(f"no sanctioned_addresses_<ASSET>.txt in {folder}")
    lists: dict[str, list[str]] = {}
    for asset, path in sorted(files.items()):
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else text.splitlines()
        addresses = [str(a).strip() for a in raw]
        lists[asset] = list(dict.fromkeys(a for a in addresses if a and not a.startswith("#")))
    return lists


_COMMIT_RE = re.compile(r"last data update commit\s+([0-9a-f]{40})")
_DATE_RE = re.compile(r"updated lists: \w{3} (\w{3} +\d{1,2} \d\d:\d\d:\d\d) UTC (\d{4})")


def provenance_version(directory: Path | str) -> tuple[str | None, datetime | None]:
    """(version, date of the list) from the folder's PROVENANCE.md: the
    upstream data commit and its "Automatically updated lists" time."""
    path = Path(directory) / "PROVENANCE.md"
    if not path.is_file():
        return None, None
    text = path.read_text(encoding="utf-8")
    commit = _COMMIT_RE.search(text)
    date = _DATE_RE.search(text)
    when = None
    if date:
        try:
            when = datetime.strptime(f"{date.group(1)} {date.group(2)}", "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        except ValueError:
            when = None
    version = None
    if commit:
        version = commit.group(1)[:12] + (f" ({when:%Y-%m-%d})" if when else "")
    return version, when


def _content_digest(lists: dict[str, list[str]]) -> str:
    digest = hashlib.sha256()
    for asset in sorted(lists):
        for address in sorted(lists[asset]):
            digest.update(f"{asset}:{address}\n".encode())
    return digest.hexdigest()


def _spec(code: str, asset: str) -> ChainSpec:
    return CHAIN_SPECS.get(code) or unmapped_chain_spec(asset)


def route_ofac_address(asset: str, address: str) -> tuple[ChainSpec, str, str] | None:
    """(chain, normal form, note) for one listed address, or None when no
    format accepts it."""
    candidates = [_spec(code, asset) for code in OFAC_ASSET_CHAINS.get(asset, ())] or [unmapped_chain_spec(asset)]
    for spec in candidates:
        try:
            return spec, spec.normalise(address), ""
        except InvalidAddress:
            continue
    for code in _SELF_IDENTIFYING:
        spec = CHAIN_SPECS[code]
        if spec in candidates:
            continue
        try:
            normal = spec.normalise(address)
        except InvalidAddress:
            continue
        return spec, normal, f"Listed under {asset}; the address has the {spec.name} format."
    return None


def _entity(asset: str) -> Entity:
    entity, _ = Entity.objects.get_or_create(
        name=f"OFAC SDN list ({asset})",
        defaults={
            "category": EntityCategory.SANCTIONS,
            "country": None,
            "description": (
                f"Addresses of the US Treasury OFAC Specially Designated Nationals list, feature "
                f'"Digital Currency Address - {asset}". The list does not say which designated person '
                "each address belongs to."
            ),
        },
    )
    return entity


def import_ofac_lists(
    directory: Path | str, version: str | None = None, *, as_of: datetime | None = None
) -> OfacImportResult:
    """Load one version of the OFAC lists, dated ``as_of``, in any order.

    ``version``: recorded on new labels; default from PROVENANCE.md, else a
    digest of the lists. ``as_of``: when the version was published; default
    the PROVENANCE date, else now. The lists are kept as a snapshot of that
    date (one loaded again for the same date replaces it) and the labels'
    history is rebuilt from every snapshot in date order
    (``compliance.label_history``): an address is listed from the first list
    that has it, delisted at the first later list that lacks it, listed again
    if it comes back. The counts compare this list with the one dated just
    before it.
    """
    lists = read_ofac_lists(directory)
    digest = _content_digest(lists)
    found_version, found_date = provenance_version(directory)
    version = version or found_version or f"sha256:{digest[:12]}"
    when = as_of or found_date or timezone.now()
    assets: dict[str, AssetResult] = {}
    entries: dict[label_history.Key, str] = {}
    with transaction.atomic():
        for asset, addresses in lists.items():
            assets[asset] = _route_asset(asset, addresses, entries)
        snapshot, stored = label_history.store_snapshot(SOURCE_NAME, when, version, digest, entries)
        previous = label_history.snapshot_keys(label_history.previous_snapshot(SOURCE_NAME, when))
        removed: dict[str, int] = {}
        for label_source, _ in previous:
            asset = label_source.removeprefix(SOURCE_PREFIX)
            if asset not in lists:
                removed[asset] = removed.get(asset, 0) + 1
        current = set(entries)
        for asset, outcome in assets.items():
            mine = {key for key in current if key[0] == f"{SOURCE_PREFIX}{asset}"}
            before = {key for key in previous if key[0] == f"{SOURCE_PREFIX}{asset}"}
            if stored:
                outcome.listed, outcome.delisted = len(mine - before), len(before - mine)
                outcome.unchanged = len(mine & before)
            else:
                outcome.unchanged = len(mine)
        if not stored:
            removed = {}
        changed = label_history.rebuild(SOURCE_NAME, _entity_of_source, CONFIDENCE)
        later = ListSnapshot.objects.filter(source=SOURCE_NAME, as_of__gt=when).count()
        result = OfacImportResult(
            version,
            when,
            digest,
            assets,
            removed,
            recorded=False,
            label_rows_changed=changed,
            later_lists=later,
            lists_loaded=ListSnapshot.objects.filter(source=SOURCE_NAME).count(),
        )
        if stored or changed:
            LabelImport.objects.create(
                source=SOURCE_NAME,
                version=version,
                content_sha256=digest,
                listed=result.listed,
                delisted=result.delisted,
                unchanged=result.unchanged,
                details={
                    "as_of": when.isoformat(),
                    "snapshot": snapshot.pk,
                    "later_lists": later,
                    "label_rows_changed": changed,
                    "assets": {
                        asset: {
                            "addresses": r.addresses,
                            "listed": r.listed,
                            "delisted": r.delisted,
                            "chains": r.chains,
                            "skipped": r.skipped,
                        }
                        for asset, r in assets.items()
                    },
                    "removed_assets": removed,
                },
            )
            result.recorded = True
    return result


def _entity_of_source(label_source: str) -> Entity:
    return _entity(label_source.removeprefix(SOURCE_PREFIX))


def _route_asset(asset: str, addresses: list[str], entries: dict[label_history.Key, str]) -> AssetResult:
    """Route one asset's addresses to their chains, create the Address rows,
    and add the asset's entries (label source, address id) -> note."""
    result = AssetResult(addresses=len(addresses))
    source = f"{SOURCE_PREFIX}{asset}"
    _entity(asset)
    by_chain: dict[str, dict[str, str]] = {}  # chain code -> normal form -> note
    chains: dict[str, Chain] = {}
    for raw in addresses:
        routed = route_ofac_address(asset, raw)
        if routed is None:
            result.skipped.append(raw)
            continue
        spec, normal, note = routed
        if spec.code not in chains:
            chains[spec.code] = ensure_chain(spec.code, spec)
        by_chain.setdefault(spec.code, {})[normal] = note
        if note:
            result.notes.append(f"{raw}: {note}")
    for code, normals in by_chain.items():
        chain = chains[code]
        result.chains[code] = len(normals)
        Address.objects.bulk_create(
            [Address(chain=chain, address=a) for a in normals], ignore_conflicts=True, batch_size=1000
        )
        keys = list(normals)
        for chunk in chunked(keys):
            for pk, address in Address.objects.filter(chain=chain, address__in=chunk).values_list("id", "address"):
                entries[(source, pk)] = normals[address]
    return result
