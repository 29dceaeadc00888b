"""What the other apps may use of compliance (import-linter enforces it):
address validation, running an analysis, and writing chains, transfers and
labels (the chat evaluation's fixture builds its graph with them)."""

from __future__ import annotations

from compliance.addresses import BITCOIN, ETHEREUM, InvalidAddress, encode_bitcoin_address, normalize_chain_address
from compliance.ingest import GraphWriter, TransferRow, TxRow
from compliance.jobs import analyse_address
from compliance.models import Address, Asset, Chain, Entity, TransferKind
from compliance.services import delist_labels, ensure_chain, get_or_create_address, get_or_create_entity, label_address

__all__ = [
    "BITCOIN",
    "ETHEREUM",
    "Address",
    "Asset",
    "Chain",
    "Entity",
    "GraphWriter",
    "InvalidAddress",
    "TransferKind",
    "TransferRow",
    "TxRow",
    "analyse_address",
    "delist_labels",
    "encode_bitcoin_address",
    "ensure_chain",
    "get_or_create_address",
    "get_or_create_entity",
    "label_address",
    "normalize_chain_address",
]
