"""Reference rows every importer needs: chains, assets, entities, labels.

Chains and native assets are created on first use from ``compliance.chains``
rather than by a data migration, so that they also exist in a database that
tests flushed.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from compliance.addresses import InvalidAddress, UnknownChain
from compliance.chains import CHAIN_SPECS, KNOWN_TOKENS, ChainSpec
from compliance.models import Address, AddressLabel, Asset, Chain, Entity, EntityCategory


def ensure_chain(code: str, spec: ChainSpec | None = None) -> Chain:
    """The chain row for ``code`` (created from its spec on first use).
    ``UnknownChain`` for a code without a spec."""
    spec = spec or CHAIN_SPECS.get(code)
    if spec is None:
        raise UnknownChain(f"unknown chain {code[:40]!r}")
    chain, created = Chain.objects.get_or_create(
        code=spec.code,
        defaults={
            "name": spec.name,
            "kind": spec.kind,
            "native_symbol": spec.native_symbol,
            "native_decimals": spec.native_decimals,
            "analysed": spec.analysed,
        },
    )
    if created:
        Asset.objects.get_or_create(
            chain=chain,
            contract="",
            defaults={"symbol": spec.native_symbol, "name": spec.name, "decimals": spec.native_decimals},
        )
        for token in KNOWN_TOKENS.get(spec.code, ()):
            Asset.objects.get_or_create(
                chain=chain,
                contract=spec.normalise(token.contract),
                defaults={"symbol": token.symbol, "name": token.name, "decimals": token.decimals},
            )
    return chain


def normalise_on_chain(chain: Chain, address: str) -> str:
    """Normal form of ``address`` on ``chain``; ``InvalidAddress`` otherwise."""
    spec = CHAIN_SPECS.get(chain.code)
    if spec is None:
        text = address.strip()
        if not text or len(text) > 128 or any(ch.isspace() for ch in text):
            raise InvalidAddress("Expected at most 128 characters without spaces.")
        return text
    return spec.normalise(address.strip())


def find_address(chain_code: str, address: str) -> Address | None:
    """The stored address, given any accepted spelling of it (checksummed,
    upper-case bech32); None when never seen. Raises ``InvalidAddress`` or
    ``UnknownChain``."""
    chain = Chain.objects.filter(code=chain_code).first()
    if chain is None:
        if chain_code not in CHAIN_SPECS:
            raise UnknownChain(f"unknown chain {chain_code[:40]!r}")
        return None
    return Address.objects.filter(chain=chain, address=normalise_on_chain(chain, address)).first()


def get_or_create_address(chain: Chain, address: str) -> Address:
    normal = normalise_on_chain(chain, address)
    row = Address.objects.filter(chain=chain, address=normal).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return Address.objects.create(chain=chain, address=normal)
    except IntegrityError:  # created concurrently
        return Address.objects.get(chain=chain, address=normal)


def get_or_create_entity(name: str, category: str, *, country: str | None = None, description: str = "") -> Entity:
    if category not in EntityCategory.values:
        raise ValueError(f"unknown entity category {category!r}")
    if country is not None and (len(country) != 2 or not country.isascii() or not country.isupper()):
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {country!r}")
    entity, _ = Entity.objects.get_or_create(
        name=name, defaults={"category": category, "country": country, "description": description}
    )
    return entity


def label_address(
    address: Address,
    entity: Entity,
    *,
    source: str,
    source_version: str = "",
    confidence: int = 100,
    listed_at: datetime | None = None,
    note: str = "",
) -> AddressLabel:
    """The active label of (address, entity, source), created if missing."""
    if not 0 <= confidence <= 100:
        raise ValueError("confidence must be 0-100")
    active = AddressLabel.objects.filter(address=address, entity=entity, source=source, delisted_at=None).first()
    if active is not None:
        return active
    return AddressLabel.objects.create(
        address=address,
        entity=entity,
        source=source,
        source_version=source_version,
        confidence=confidence,
        listed_at=listed_at or timezone.now(),
        note=note,
    )


def delist_labels(labels: QuerySet[AddressLabel], *, at: datetime | None = None) -> int:
    """Close the active labels among ``labels`` at ``at`` (default now); the
    rows stay as history. Never before a label's own listing (a database
    constraint): an older-dated list version can be imported after a newer one."""
    when = at or timezone.now()
    return labels.filter(delisted_at=None).update(delisted_at=Greatest(F("listed_at"), Value(when)))
