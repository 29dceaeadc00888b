"""Compliance data layer: address validation (EIP-55, base58check,
bech32/bech32m), the OFAC importer with delisting history, the BigQuery
importers, multi-input clustering, the demo graph, graph reads, admin pages,
and the address room over a real WebSocket."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from compliance import graph
from compliance.addresses import (
    InvalidAddress,
    UnknownChain,
    bitcoin_address,
    encode_bitcoin_address,
    ethereum_address,
    ethereum_checksum,
    is_valid_address,
    normalize_address,
    parse_bitcoin_address,
)
from compliance.bigquery import import_bigquery_export, parse_timestamp_ms
from compliance.clustering import cluster_addresses
from compliance.demo import seed_compliance_data
from compliance.demo_graph import DAY_MS, EXCHANGES, demo_tx_hash
from compliance.encodings import base58check_encode
from compliance.fields import MAX_AMOUNT, to_amount
from compliance.ingest import GraphWriter, PortRow, TransferRow, TxRow, apportion, utxo_edges
from compliance.keccak import keccak256
from compliance.models import (
    Address,
    AddressLabel,
    Asset,
    Cluster,
    Entity,
    LabelImport,
    Transaction,
    Transfer,
    TransferKind,
    TxInput,
    TxOutput,
    TxStatus,
)
from compliance.ofac import default_ofac_directory, import_ofac_lists, read_ofac_lists
from compliance.services import (
    delist_labels,
    ensure_chain,
    find_address,
    get_or_create_address,
    get_or_create_entity,
    label_address,
)
from realtime.errors import ValidationFailed
from tests.wsclient import connected, unique

# --- keccak-256 and EIP-55 ----------------------------------------------------------

EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


def test_keccak256_matches_the_known_digests():
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"


# Digests around the 136-byte block boundaries; computed by a sponge written
# out in Python whose permutation agreed with hashlib's SHA3-256 under SHA-3
# padding, and by pycryptodome.
KECCAK_AT_LENGTH = {
    0: "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    1: "f3d0adcb6a1c70832365e9da0a6b2f5199422f6a53c67cfad171114e3442aa0f",
    55: "1ae0b4bf1863a7cd176316c69c627a146ac10517b9c0a5632a0e12d72c3aa7be",
    135: "484b06bb88c5fd4b1ee5448740b54fde490e97e9d4efdae7a2ebc1810dc88716",
    136: "00cdd6f630e68b987537ead3da27854daf9c38a89987c334822140af34b056e7",
    137: "4c3ea76d1ae4fe4a3533a5e5654186b5cecd25f4e3988b27c2fa2b7f2bd4a469",
    271: "bd7173d32bb39acd63cdc90145d48d9da13a2355253f1feeb9e2d40dd065fcb8",
    272: "cc3d164d044ad38bec0c72bf62ec30812fee6c9877856fa7303fdb4dbe2812a9",
    1000: "d99540c9b259e683416e2a84354748bdfa0167b316c2ac84c2ed9acb718d4779",
}


@pytest.mark.parametrize("length", [0, 1, 55, 135, 136, 137, 271, 272, 1000])
def test_keccak256_matches_known_digests_across_block_boundaries_and_differs_from_sha3(length):
    data = hashlib.sha256(str(length).encode()).digest() * (length // 32 + 1)
    data = data[:length]
    assert keccak256(data).hex() == KECCAK_AT_LENGTH[length]
    assert keccak256(data) != hashlib.sha3_256(data).digest()


@pytest.mark.parametrize("vector", EIP55_VECTORS)
def test_eip55_vectors_are_accepted_normalised_to_lowercase_and_reproduced(vector):
    assert ethereum_address(vector) == vector.lower()
    assert ethereum_checksum(vector.lower()) == vector


def test_ethereum_all_lowercase_and_all_uppercase_are_accepted_without_checksum():
    digits = EIP55_VECTORS[0][2:]
    assert ethereum_address("0x" + digits.lower()) == "0x" + digits.lower()
    assert ethereum_address("0x" + digits.upper()) == "0x" + digits.lower()


@pytest.mark.parametrize("vector", EIP55_VECTORS)
def test_one_flipped_letter_case_fails_the_eip55_checksum(vector):
    position = next(i for i, ch in enumerate(vector) if i > 1 and ch.isalpha())
    flipped = vector[:position] + vector[position].swapcase() + vector[position + 1 :]
    with pytest.raises(InvalidAddress, match="EIP-55"):
        ethereum_address(flipped)


@pytest.mark.parametrize(
    "text", ["0x123", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0X" + "a" * 40, "0x" + "g" * 40]
)
def test_malformed_ethereum_addresses_are_rejected(text):
    with pytest.raises(InvalidAddress):
        ethereum_address(text)


def test_invalid_address_is_a_validation_failure_naming_the_field_and_unknown_chain_not_found():
    with pytest.raises(ValidationFailed) as failure:
        normalize_address("ethereum", EIP55_VECTORS[0].replace("a", "A", 1), field="address")
    assert list(failure.value.errors) == ["address"]
    with pytest.raises(UnknownChain) as unknown:
        normalize_address("dogechain", "abc")
    assert unknown.value.code == "NOT_FOUND"


# --- Bitcoin: BIP-173 / BIP-350 and base58check --------------------------------------

# BIP-350 "Test vectors for v0-v16 native segregated witness addresses", mainnet
# ones, with the scriptPubKey they translate to.
SEGWIT_VALID = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]

# Invalid segwit addresses of BIP-173 and BIP-350 (testnet ones are rejected
# anyway: only mainnet is accepted), plus BIP-173's v1+ vectors that BIP-350
# re-encoded with bech32m (their bech32 form is now invalid).
SEGWIT_INVALID = [
    "tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",
    "BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2",
    "bc1rw5uspcuh",
    "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
    "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",
    "bc1gmk9yu",
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
    "bc1pw5dgrnzv",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
    "BC1SW50QA3JX3S",
    "bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj",
    "Bc1Qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
]


def script_pubkey(version: int, program: bytes) -> str:
    return bytes([0 if version == 0 else 0x50 + version, len(program)]).hex() + program.hex()


@pytest.mark.parametrize(("address", "script"), SEGWIT_VALID)
def test_bip350_valid_segwit_addresses_decode_to_their_script_and_normalise_to_lowercase(address, script):
    parsed = parse_bitcoin_address(address)
    version = 0 if parsed.address[3] == "q" else "qpzry9x8gf2tvdw0s3jn54khce6mua7l".index(parsed.address[3])
    assert script_pubkey(version, parsed.program) == script
    assert parsed.address == address.lower()


@pytest.mark.parametrize("address", SEGWIT_INVALID)
def test_bip173_and_bip350_invalid_segwit_addresses_are_rejected(address):
    with pytest.raises(InvalidAddress):
        bitcoin_address(address)


@pytest.mark.parametrize(
    ("address", "kind", "program"),
    [
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "p2pkh", "62e907b15cbf27d5425399ebf6f0fb50ebb88f18"),
        ("3JvL6Ymt8MVWiCNHC7oWU6nLeHNJKLZGLN", "p2sh", "bcfeb728b584253d5f3f70bcb780e9ef218a68f4"),
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "p2wpkh", None),
    ],
)
def test_base58check_and_bech32_mainnet_addresses_are_accepted_as_written(address, kind, program):
    parsed = parse_bitcoin_address(address)
    assert (parsed.address, parsed.kind) == (address, kind)
    if program:
        assert parsed.program.hex() == program
        assert encode_bitcoin_address(kind, parsed.program) == address


def test_base58check_with_a_bad_checksum_or_a_testnet_version_is_rejected():
    genesis = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    with pytest.raises(InvalidAddress, match="checksum"):
        bitcoin_address(genesis[:-1] + "b")
    testnet = base58check_encode(bytes([0x6F]) + bytes.fromhex("62e907b15cbf27d5425399ebf6f0fb50ebb88f18"))
    with pytest.raises(InvalidAddress, match="mainnet"):
        bitcoin_address(testnet)
    with pytest.raises(InvalidAddress):
        bitcoin_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0")  # 0 is not base58


# --- arithmetic ---------------------------------------------------------------------


def test_apportion_splits_exactly_and_deterministically():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(7, [0, 5]) == [0, 7]
    for total in (0, 1, 99, 10**30 + 7):
        assert sum(apportion(total, [3, 7, 11, 13])) == total


def test_utxo_edges_share_outputs_by_input_value_and_coinbase_comes_from_no_one():
    edges = utxo_edges("t", 1, [("a", 300), ("b", 100), ("a", 100)], [("x", 400), ("y", 99), (None, 1)])
    assert edges is not None
    assert [(e.from_address, e.to_address, e.value) for e in edges] == [
        ("a", "x", 320),
        ("b", "x", 80),
        ("a", "y", 79),
        ("b", "y", 20),
    ]
    assert [e.position for e in edges] == [0, 1, 2, 3]
    mined = utxo_edges("c", 1, [], [("m", 625_000_000)])
    assert mined is not None and [(e.from_address, e.value) for e in mined] == [(None, 625_000_000)]
    assert utxo_edges("big", 1, [(str(i), 1) for i in range(200)], [(str(i), 1) for i in range(100)]) is None


def test_amounts_are_exact_whole_base_units():
    assert to_amount("1.5E+21") == 1_500_000_000_000_000_000_000
    assert to_amount("12.000") == 12
    for bad in ("1.5", "-1", "abc", str(MAX_AMOUNT + 1)):
        with pytest.raises(ValueError):
            to_amount(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 12:00:00 UTC", 1709294400000),
        ("2024-03-01T12:00:00Z", 1709294400000),
        ("2024-03-01 12:00:00.250+00:00", 1709294400250),
        ("1709294400", 1709294400000),
        (1709294400250, 1709294400250),
        ("1709294400250000", 1709294400250),
    ],
)
def test_bigquery_timestamps_in_every_export_form(text, expected):
    assert parse_timestamp_ms(text) == expected


# --- database ---------------------------------------------------------------------


def eth(tag: str) -> str:
    return "0x" + hashlib.sha256(tag.encode()).hexdigest()[:40]


def btc(tag: str) -> str:
    return encode_bitcoin_address("p2wpkh", hashlib.sha256(tag.encode()).digest()[:20])


def eth_hash(tag: str) -> str:
    return "0x" + hashlib.sha256(tag.encode()).hexdigest()


def ofac_dir() -> Path:
    directory = default_ofac_directory()
    assert directory is not None and directory.is_dir(), "the OFAC fixture (data/ofac) is required"
    return directory


def provenance_counts(directory: Path) -> dict[str, int]:
    """The per-asset counts stated in PROVENANCE.md ("XBT 517, ..., ARB/BNB 1 each")."""
    text = (directory / "PROVENANCE.md").read_text()
    line = re.search(r"Counts:(.*?)\(total", text, re.DOTALL)
    assert line, "PROVENANCE.md has no Counts line"
    counts: dict[str, int] = {}
    for part in line.group(1).replace("\n", " ").split(","):
        words = part.split()
        if len(words) >= 2 and words[-1] == "each":
            for asset in words[0].split("/"):
                counts[asset] = int(words[1])
        elif len(words) == 2:
            counts[words[0]] = int(words[1])
    return counts


@pytest.mark.django_db
class TestAmountColumn:
    def test_amounts_beyond_64_bits_round_trip_and_compare_as_numbers(self):
        chain = ensure_chain("ethereum")
        values = [0, 5, 2**63 - 1, 2**63, 10**19, 2**255, MAX_AMOUNT]
        with GraphWriter(chain) as writer:
            writer.add_transaction(TxRow(eth_hash("amounts"), 1, 1000, MAX_AMOUNT, TxStatus.SUCCESS))
            for i, value in enumerate(values):
                writer.add_transfer(
                    TransferRow(eth_hash("amounts"), i, TransferKind.TOKEN, eth("a"), eth("b"), value, 1000, eth("t"))
                )
        stored = Transfer.objects.filter(tx__hash=eth_hash("amounts"))
        assert sorted(stored.values_list("value", flat=True)) == values
        assert list(stored.order_by("value").values_list("value", flat=True)) == values
        assert set(stored.filter(value__gt=2**63 - 1).values_list("value", flat=True)) == {
            2**63,
            10**19,
            2**255,
            MAX_AMOUNT,
        }
        assert set(stored.filter(value__lt=10**19).values_list("value", flat=True)) == {0, 5, 2**63 - 1, 2**63}
        assert Transaction.objects.get(hash=eth_hash("amounts")).fee == MAX_AMOUNT


@pytest.mark.django_db
class TestOfacImport:
    def test_counts_per_asset_match_the_provenance_and_addresses_are_normalised(self):
        directory = ofac_dir()
        result = import_ofac_lists(directory)
        expected = provenance_counts(directory)
        assert {asset: r.addresses for asset, r in result.assets.items()} == expected
        for asset, count in expected.items():
            labels = AddressLabel.objects.filter(source=f"ofac:{asset}", delisted_at=None)
            assert labels.count() == count, asset
            assert (
                labels.filter(entity__category="sanctions", confidence=100, source_version=result.version).count()
                == count
            )
        assert result.assets["ETH"].chains == {"ethereum": 77}
        # One XBT entry is a Tron address: kept, on Tron, with a note.
        assert result.assets["XBT"].chains == {"bitcoin": 516, "tron": 1}
        misfiled = AddressLabel.objects.get(source="ofac:XBT", address__chain__code="tron")
        assert "Tron" in misfiled.note
        assert result.assets["USDT"].chains == {"ethereum": 8, "tron": 78, "bitcoin": 7}
        assert all(not r.skipped for r in result.assets.values())
        for listed in read_ofac_lists(directory)["ETH"]:
            stored = find_address("ethereum", listed)
            assert stored is not None and stored.address == listed.lower()
        assert result.version.startswith("3ed669068884")
        assert Entity.objects.get(name="OFAC SDN list (ETH)").country is None

    def test_reimporting_the_same_version_changes_nothing(self):
        first = import_ofac_lists(ofac_dir())
        labels = AddressLabel.objects.count()
        again = import_ofac_lists(ofac_dir())
        assert (again.listed, again.delisted, again.unchanged) == (0, 0, first.listed)
        assert not again.recorded
        assert AddressLabel.objects.count() == labels
        assert LabelImport.objects.count() == 1

    def test_a_later_version_delists_what_disappeared_and_keeps_history(self, tmp_path):
        import_ofac_lists(ofac_dir())
        lists = read_ofac_lists(ofac_dir())
        removed = lists["ETH"][0]
        v2 = tmp_path / "v2"
        v2.mkdir()
        for asset, addresses in lists.items():
            if asset == "USDC":
                continue  # the whole asset leaves the list
            kept = [a for a in addresses if a != removed]
            (v2 / f"sanctioned_addresses_{asset}.txt").write_text("\n".join(kept) + "\n")
        when = timezone.now()
        result = import_ofac_lists(v2, "v2", as_of=when)
        assert result.assets["ETH"].delisted == 1
        assert result.removed_assets == {"USDC": 2}
        closed = AddressLabel.objects.get(source="ofac:ETH", address__address=removed.lower())
        assert closed.delisted_at == when and closed.listed_at < when
        assert not AddressLabel.objects.filter(source="ofac:USDC", delisted_at=None).exists()
        assert AddressLabel.objects.filter(source="ofac:ETH", delisted_at=None).count() == 76

        v3 = tmp_path / "v3"
        shutil.copytree(ofac_dir(), v3)
        (v3 / "PROVENANCE.md").unlink()
        relisted = import_ofac_lists(v3, "v3", as_of=when + timedelta(days=1))
        assert relisted.assets["ETH"].listed == 1
        history = AddressLabel.objects.filter(source="ofac:ETH", address__address=removed.lower()).order_by("id")
        assert [(h.source_version, h.delisted_at is None) for h in history] == [
            (closed.source_version, False),
            ("v3", True),
        ]
        assert LabelImport.objects.count() == 3

    def test_management_command_reports_per_asset(self):
        out = io.StringIO()
        call_command("import_ofac", "--dir", str(ofac_dir()), "--version", "cmd-1", stdout=out)
        text = out.getvalue()
        assert "ETH: 77 listed addresses (ethereum 77); 77 new" in text
        assert "OFAC version cmd-1" in text

    def test_management_command_takes_the_lists_date(self):
        out = io.StringIO()
        call_command("import_ofac", "--dir", str(ofac_dir()), "--version", "dated", "--as-of", "2023-05-02", stdout=out)
        assert "as of 2023-05-02 00:00 UTC" in out.getvalue()
        listed = set(AddressLabel.objects.filter(source_version="dated").values_list("listed_at", flat=True))
        assert listed == {datetime(2023, 5, 2, tzinfo=UTC)}
        with pytest.raises(CommandError):
            call_command("import_ofac", "--dir", str(ofac_dir()), "--as-of", "last tuesday")


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join("" if r.get(h) is None else str(r[h]) for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict[str, object]], *, gz: bool = False) -> Path:
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.django_db
class TestBigQueryImport:
    def eth_transactions(self) -> list[dict[str, object]]:
        sender = ethereum_checksum(eth("alice"))  # checksummed in the export, stored lowercase
        return [
            {
                "hash": eth_hash("t1"),
                "block_number": 100,
                "block_timestamp": "2024-03-01 12:00:00 UTC",
                "from_address": sender,
                "to_address": eth("bob"),
                "value": "15000000000000000000",
                "receipt_status": 1,
                "receipt_gas_used": 21000,
                "receipt_effective_gas_price": 30_000_000_000,
                "receipt_contract_address": None,
            },
            {  # reverted: a fee, no value moved
                "hash": eth_hash("t2"),
                "block_number": 101,
                "block_timestamp": "2024-03-01 12:00:12 UTC",
                "from_address": eth("bob"),
                "to_address": eth("carol"),
                "value": "1000",
                "receipt_status": 0,
                "receipt_gas_used": 50000,
                "receipt_effective_gas_price": 10,
                "receipt_contract_address": None,
            },
            {  # contract creation: the value goes to the new contract
                "hash": eth_hash("t3"),
                "block_number": 102,
                "block_timestamp": "2024-03-01 12:00:24 UTC",
                "from_address": eth("carol"),
                "to_address": None,
                "value": "7",
                "receipt_status": 1,
                "receipt_gas_used": 100,
                "receipt_effective_gas_price": 2,
                "receipt_contract_address": eth("contract"),
            },
            {  # malformed address: skipped and counted
                "hash": eth_hash("t4"),
                "block_number": 103,
                "block_timestamp": "2024-03-01 12:00:36 UTC",
                "from_address": "0x1234",
                "to_address": eth("bob"),
                "value": "1",
                "receipt_status": 1,
                "receipt_gas_used": 1,
                "receipt_effective_gas_price": 1,
                "receipt_contract_address": None,
            },
        ]

    def token_transfers(self) -> list[dict[str, object]]:
        token = eth("token")
        return [
            {
                "token_address": token,
                "from_address": eth("bob"),
                "to_address": eth("dave"),
                "value": "123456789012345678901234567890",
                "transaction_hash": eth_hash("t5"),
                "log_index": 3,
                "block_timestamp": "2024-03-01T12:01:00Z",
                "block_number": 105,
            },
            {
                "token_address": token,
                "from_address": eth("dave"),
                "to_address": eth("erin"),
                "value": "5",
                "transaction_hash": eth_hash("t5"),
                "log_index": 4,
                "block_timestamp": "2024-03-01T12:01:00Z",
                "block_number": 105,
            },
        ]

    def test_ethereum_transactions_csv_is_imported_once(self, tmp_path):
        path = write_csv(tmp_path / "transactions.csv", self.eth_transactions())
        result = import_bigquery_export("ethereum", "transactions", [path])
        assert (result.rows, result.imported, dict(result.skipped)) == (4, 3, {"bad from_address": 1})
        assert result.created == {"transactions": 3, "transfers": 2, "inputs": 0, "outputs": 0}
        t1 = Transaction.objects.get(hash=eth_hash("t1"))
        assert (t1.fee, t1.status, t1.timestamp, t1.block_number) == (
            21000 * 30_000_000_000,
            "success",
            1709294400000,
            100,
        )
        edge = Transfer.objects.get(tx=t1)
        assert (edge.from_address.address, edge.value, edge.index, edge.kind) == (
            eth("alice"),
            15 * 10**18,
            -1,
            "native",
        )
        assert not Transfer.objects.filter(tx__hash=eth_hash("t2")).exists()
        assert Transaction.objects.get(hash=eth_hash("t2")).status == "failed"
        assert Transfer.objects.get(tx__hash=eth_hash("t3")).to_address.address == eth("contract")
        alice = Address.objects.get(address=eth("alice"))
        assert (alice.first_seen, alice.last_seen) == (1709294400000, 1709294400000)

        again = import_bigquery_export("ethereum", "transactions", [path])
        assert again.created == {"transactions": 0, "transfers": 0, "inputs": 0, "outputs": 0}

    def test_token_transfers_then_transactions_fill_in_the_fee_in_either_order(self, tmp_path):
        tokens = write_jsonl(tmp_path / "token_transfers.json", self.token_transfers())
        result = import_bigquery_export("ethereum", "token_transfers", [tokens])
        assert result.created["transfers"] == 2 and result.created["transactions"] == 1
        edges = Transfer.objects.filter(tx__hash=eth_hash("t5")).order_by("index")
        assert [(e.index, e.kind, e.value) for e in edges] == [
            (3, "token", 123456789012345678901234567890),
            (4, "token", 5),
        ]
        asset = Asset.objects.get(contract=eth("token"))
        assert (asset.symbol, asset.decimals) == ("", None)
        tx = Transaction.objects.get(hash=eth_hash("t5"))
        assert (tx.status, tx.fee) == ("success", None)

        row = dict(self.eth_transactions()[0], hash=eth_hash("t5"), block_timestamp="2024-03-01 12:01:00 UTC")
        import_bigquery_export("ethereum", "transactions", [write_csv(tmp_path / "t5.csv", [row])])
        tx.refresh_from_db()
        assert tx.fee == 21000 * 30_000_000_000
        assert Transfer.objects.filter(tx=tx).count() == 3  # two logs and the value
        assert import_bigquery_export("ethereum", "token_transfers", [tokens]).created["transfers"] == 0

    def bitcoin_rows(self) -> list[dict[str, object]]:
        a, b, c = btc("a"), btc("b"), btc("c")
        return [
            {  # coinbase
                "hash": hashlib.sha256(b"cb").hexdigest(),
                "block_number": 800000,
                "block_timestamp": "2024-03-01 12:00:00 UTC",
                "fee": 0,
                "is_coinbase": True,
                "inputs": [],
                "outputs": [{"index": 0, "addresses": [a], "value": "625000000", "type": "witness_v0_keyhash"}],
            },
            {  # a and b spend together (same owner); c is paid, change back to a; an OP_RETURN output
                "hash": hashlib.sha256(b"spend").hexdigest(),
                "block_number": 800001,
                "block_timestamp": "2024-03-01 12:10:00 UTC",
                "fee": 1000,
                "inputs": [
                    {
                        "index": 0,
                        "spent_transaction_hash": hashlib.sha256(b"cb").hexdigest(),
                        "spent_output_index": 0,
                        "addresses": [a],
                        "value": 300000,
                    },
                    {
                        "index": 1,
                        "spent_transaction_hash": "00" * 32,
                        "spent_output_index": 5,
                        "addresses": [b],
                        "value": 100000,
                    },
                ],
                "outputs": [
                    {"index": 0, "addresses": [c], "value": 250000},
                    {"index": 1, "addresses": [a], "value": 149000},
                    {"index": 2, "addresses": ["nonstandard9f2b"], "value": 0},
                ],
            },
        ]

    def test_bitcoin_json_lines_keep_inputs_outputs_and_derive_edges(self, tmp_path):
        path = write_jsonl(tmp_path / "btc.jsonl.gz", self.bitcoin_rows(), gz=True)
        result = import_bigquery_export("bitcoin", "transactions", [path])
        assert result.created == {"transactions": 2, "transfers": 5, "inputs": 2, "outputs": 4}
        spend = Transaction.objects.get(hash=hashlib.sha256(b"spend").hexdigest())
        assert spend.fee == 1000
        inputs = list(
            TxInput.objects.filter(tx=spend)
            .order_by("index")
            .values_list("address__address", "value", "spent_output_index")
        )
        assert inputs == [(btc("a"), 300000, 0), (btc("b"), 100000, 5)]
        assert TxOutput.objects.get(tx=spend, index=2).address is None
        edges = {(e.from_address.address, e.to_address.address): e.value for e in Transfer.objects.filter(tx=spend)}
        assert edges == {
            (btc("a"), btc("c")): 187500,
            (btc("b"), btc("c")): 62500,
            (btc("a"), btc("a")): 111750,
            (btc("b"), btc("a")): 37250,
        }
        coinbase = Transfer.objects.get(tx__hash=hashlib.sha256(b"cb").hexdigest())
        assert coinbase.from_address is None and coinbase.value == 625000000
        assert import_bigquery_export("bitcoin", "transactions", [path]).created["transfers"] == 0

    def test_management_command_imports_files(self, tmp_path):
        path = write_csv(tmp_path / "transactions.csv", self.eth_transactions())
        out = io.StringIO()
        call_command("import_bigquery", "--chain", "ethereum", "--table", "transactions", str(path), stdout=out)
        assert "4 rows read, 3 imported, 1 skipped" in out.getvalue()


def write_utxo_tx(writer: GraphWriter, tag: str, ts: int, inputs: list[str], outputs: list[tuple[str, int]]) -> None:
    tx = hashlib.sha256(tag.encode()).hexdigest()
    writer.add_transaction(TxRow(tx, 1, ts, 0, TxStatus.SUCCESS))
    for i, address in enumerate(inputs):
        writer.add_input(PortRow(tx, i, address, 1000, ts))
    for i, (address, value) in enumerate(outputs):
        writer.add_output(PortRow(tx, i, address, value, ts))


@pytest.mark.django_db
class TestClustering:
    def build(self) -> dict[str, str]:
        names = {n: btc(f"cluster-{n}") for n in "ABCDEFGHXY"}
        chain = ensure_chain("bitcoin")
        with GraphWriter(chain) as w:
            write_utxo_tx(w, "t1", 1000, [names["A"], names["B"]], [(names["X"], 1500)])
            write_utxo_tx(w, "t2", 2000, [names["B"], names["C"]], [(names["X"], 1500)])
            write_utxo_tx(w, "t3", 3000, [names["D"], names["E"]], [(names["Y"], 1500)])
            write_utxo_tx(w, "t4", 4000, [names["X"]], [(names["Y"], 900)])  # one input: no evidence
            # CoinJoin-like: three equal outputs; its inputs are different people
            write_utxo_tx(
                w,
                "t5",
                5000,
                [names["F"], names["G"], names["H"]],
                [(names["X"], 700), (names["Y"], 700), (names["D"], 700)],
            )
        return names

    def members(self) -> set[frozenset[str]]:
        groups: dict[int, set[str]] = {}
        for address, cluster in Address.objects.filter(cluster__isnull=False).values_list("address", "cluster_id"):
            groups.setdefault(cluster, set()).add(address)
        return {frozenset(g) for g in groups.values()}

    def test_addresses_spent_together_share_a_cluster_and_coinjoins_are_skipped(self):
        n = self.build()
        result = cluster_addresses("bitcoin")
        assert self.members() == {frozenset({n["A"], n["B"], n["C"]}), frozenset({n["D"], n["E"]})}
        assert (result.clusters, result.coinjoins_skipped, result.created) == (2, 1, 2)
        keys = set(Cluster.objects.values_list("key", flat=True))
        assert keys == {min(n["A"], n["B"], n["C"]), min(n["D"], n["E"])}
        sizes = sorted(Cluster.objects.values_list("size", flat=True))
        assert sizes == [2, 3]

        ids = set(Cluster.objects.values_list("id", flat=True))
        again = cluster_addresses("bitcoin")
        assert (again.created, again.removed, again.reassigned) == (0, 0, 0)
        assert set(Cluster.objects.values_list("id", flat=True)) == ids

    def test_the_size_guard_refuses_a_merge_that_would_grow_a_cluster_too_far(self):
        n = self.build()
        result = cluster_addresses("bitcoin", max_cluster_size=2)
        assert result.oversized_skipped == 1
        assert self.members() == {frozenset({n["A"], n["B"]}), frozenset({n["D"], n["E"]})}

    def test_account_chains_are_refused(self):
        ensure_chain("ethereum")
        with pytest.raises(ValueError, match="UTXO"):
            cluster_addresses("ethereum")
        with pytest.raises(UnknownChain):
            cluster_addresses("dogecoin")


@pytest.mark.django_db
class TestLabelServices:
    def test_an_analyst_label_is_created_once_and_delisting_keeps_it(self):
        chain = ensure_chain("bitcoin")
        address = get_or_create_address(chain, "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4")
        assert address.address == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        entity = get_or_create_entity("Example OTC desk", "p2p_exchange", country="GB")
        first = label_address(address, entity, source="analyst:jane", confidence=60)
        assert label_address(address, entity, source="analyst:jane", confidence=60).pk == first.pk
        assert delist_labels(AddressLabel.objects.filter(pk=first.pk)) == 1
        second = label_address(address, entity, source="analyst:jane", confidence=70)
        assert second.pk != first.pk and AddressLabel.objects.filter(address=address).count() == 2

    def test_entities_and_labels_refuse_bad_values(self):
        with pytest.raises(ValueError, match="ISO 3166"):
            get_or_create_entity("Somewhere", "exchange", country="usa")
        with pytest.raises(ValueError, match="category"):
            get_or_create_entity("Something", "casino")
        address = get_or_create_address(ensure_chain("ethereum"), eth("label"))
        with pytest.raises(ValueError, match="0-100"):
            label_address(address, get_or_create_entity("X", "other"), source="s", confidence=101)
        assert is_valid_address("ethereum", EIP55_VECTORS[1]) and not is_valid_address("ethereum", "0x12")
        assert not is_valid_address("dogecoin", "D...")


@pytest.mark.django_db
class TestGraphReads:
    def test_transfers_touching_a_set_of_addresses_within_a_window(self):
        chain = ensure_chain("ethereum")
        a, b, c = eth("ga"), eth("gb"), eth("gc")
        with GraphWriter(chain) as w:
            for i, (sender, receiver, value, ts) in enumerate(
                [(a, b, 10, 1000), (b, c, 5, 2000), (c, a, 0, 3000), (c, b, 7, 4000), (b, a, 1, 9000)]
            ):
                w.add_transaction(TxRow(eth_hash(f"g{i}"), i, ts, 1, TxStatus.SUCCESS))
                w.add_transfer(TransferRow(eth_hash(f"g{i}"), -1, TransferKind.NATIVE, sender, receiver, value, ts))
        ids = graph.address_ids("ethereum", [ethereum_checksum(a), b.upper().replace("0X", "0x"), "0xnot-an-address"])
        assert set(ids) == {ethereum_checksum(a), b.upper().replace("0X", "0x")}
        a_id, b_id = ids[ethereum_checksum(a)], ids[b.upper().replace("0X", "0x")]

        touching = graph.transfers_touching([a_id], since=1000, until=9000)
        assert [e.value for e in touching.edges] == [10]  # the zero-value call is left out, 9000 is outside
        both = graph.transfers_touching([a_id, b_id])
        assert [e.timestamp for e in both.edges] == [1000, 2000, 4000, 9000]  # a->b once, though it touches both
        assert [e.value for e in graph.transfers_touching([b_id], direction="in").edges] == [10, 7]
        limited = graph.transfers_touching([a_id, b_id], limit=2)
        assert limited.truncated and [e.timestamp for e in limited.edges] == [4000, 9000]
        hashes = graph.transaction_hashes([e.tx_id for e in both.edges])
        assert hashes[both.edges[0].tx_id] == eth_hash("g0")

    def test_labels_in_force_at_a_moment(self):
        import_ofac_lists(ofac_dir(), "v1", as_of=datetime(2025, 1, 1, tzinfo=UTC))
        listed = read_ofac_lists(ofac_dir())["ETH"][0]
        address = find_address("ethereum", listed)
        assert address is not None
        facts = graph.active_labels([address.pk])[address.pk]
        assert [(f.category, f.source, f.confidence) for f in facts] == [("sanctions", "ofac:ETH", 100)]
        assert graph.active_labels([address.pk], at=datetime(2024, 12, 31, tzinfo=UTC)) == {}
        AddressLabel.objects.filter(address=address).update(delisted_at=datetime(2025, 6, 1, tzinfo=UTC))
        assert graph.active_labels([address.pk]) == {}
        assert address.pk in graph.active_labels([address.pk], at=datetime(2025, 3, 1, tzinfo=UTC))


SMALL = 3_000


@pytest.mark.django_db
class TestDemoGraph:
    def test_demo_graph_has_every_kind_of_actor_and_plants_real_ofac_addresses(self):
        import_ofac_lists(ofac_dir())
        before = timezone.now()
        summary = seed_compliance_data(transfers=SMALL, seed=11)
        assert summary.written and summary.total_transfers >= SMALL
        assert Transfer.objects.count() == summary.total_transfers
        assert summary.transfers["ethereum"] > 0 and summary.transfers["bitcoin"] > 0
        assert Transaction.objects.filter(hash=demo_tx_hash("ethereum", 11, SMALL, 1)).exists()

        categories = set(Entity.objects.filter(labels__source="demo").values_list("category", flat=True))
        assert {"exchange", "mixer", "darknet_market", "scam", "ransomware", "gambling", "bridge"} <= categories
        countries = set(Entity.objects.filter(category="exchange").values_list("country", flat=True))
        assert countries == {country for _, country in EXCHANGES}

        for chain, planted in summary.ofac_planted.items():
            assert planted, chain
            for address in planted:
                row = Address.objects.get(chain__code=chain, address=address)
                assert row.labels.filter(source__startswith="ofac:", delisted_at=None).exists()
                assert (
                    Transfer.objects.filter(from_address=row).exists()
                    or Transfer.objects.filter(to_address=row).exists()
                )

        now_ms = int(before.timestamp() * 1000) + 60_000
        oldest, newest = (
            Transfer.objects.order_by("timestamp").first(),
            Transfer.objects.order_by("-timestamp").first(),
        )
        assert oldest is not None and newest is not None
        assert now_ms - 90 * DAY_MS - 3_600_000 <= oldest.timestamp and newest.timestamp <= now_ms
        # UTXO consistency: every input spends an output that exists, with
        # its value, created no later than the spending transaction.
        outputs = {
            (tx_hash, index): (value, ts)
            for tx_hash, index, value, ts in TxOutput.objects.values_list("tx__hash", "index", "value", "tx__timestamp")
        }
        inputs = list(TxInput.objects.values_list("spent_tx_hash", "spent_output_index", "value", "tx__timestamp"))
        assert inputs
        for spent_hash, spent_index, value, ts in inputs:
            created_value, created_at = outputs[(spent_hash, spent_index)]
            assert created_value == value and created_at <= ts

        counts = (
            Transaction.objects.count(),
            Transfer.objects.count(),
            Address.objects.count(),
            AddressLabel.objects.count(),
        )
        again = seed_compliance_data(transfers=SMALL, seed=11)
        assert not again.written
        assert (
            Transaction.objects.count(),
            Transfer.objects.count(),
            Address.objects.count(),
            AddressLabel.objects.count(),
        ) == counts

    def test_demo_generation_is_deterministic(self):
        from compliance.demo import _Builder

        one, two = _Builder(3, 1000, 10**12), _Builder(3, 1000, 10**12)
        for builder in (one, two):
            builder.build_ethereum(600, [])
            builder.build_bitcoin(400, [])
        assert one.eth_transfers == two.eth_transfers and one.btc_transfers == two.btc_transfers
        assert one.btc_ports == two.btc_ports

    def test_bitcoin_demo_wallets_form_clusters(self):
        seed_compliance_data(transfers=SMALL, seed=5)
        result = cluster_addresses("bitcoin")
        assert result.clusters > 10 and result.coinjoins_skipped >= 1


@pytest.mark.django_db
def test_admin_pages_load_for_chain_data_entities_labels_and_clusters(staff_client):
    import_ofac_lists(ofac_dir())
    seed_compliance_data(transfers=1_000, seed=3)
    cluster_addresses("bitcoin")
    for model in ("chain", "asset", "address", "transaction", "entity", "addresslabel", "cluster", "labelimport"):
        response = staff_client.get(reverse(f"admin:compliance_{model}_changelist"))
        assert response.status_code == 200, model
    objects = {
        "address": Address.objects.filter(labels__isnull=False).first(),
        "transaction": Transaction.objects.filter(chain__code="bitcoin").first(),
        "entity": Entity.objects.first(),
        "addresslabel": AddressLabel.objects.first(),
        "cluster": Cluster.objects.first(),
    }
    for model, obj in objects.items():
        assert obj is not None, model
        response = staff_client.get(reverse(f"admin:compliance_{model}_change", args=[obj.pk]))
        assert response.status_code == 200, model
    listed = read_ofac_lists(ofac_dir())["ETH"][0]
    found = staff_client.get(reverse("admin:compliance_address_changelist"), {"q": listed})
    assert listed.lower() in found.content.decode()
    cluster = Cluster.objects.first()
    assert cluster is not None
    members = staff_client.get(reverse("admin:compliance_address_changelist"), {"cluster": cluster.pk})
    assert members.status_code == 200


@pytest.mark.django_db
def test_staff_delist_a_label_and_history_stays(staff_client):
    import_ofac_lists(ofac_dir())
    label = AddressLabel.objects.filter(source="ofac:ETH").first()
    assert label is not None
    response = staff_client.post(
        reverse("admin:compliance_addresslabel_changelist"),
        {"action": "delist_selected", "_selected_action": [label.pk]},
    )
    assert response.status_code == 302
    label.refresh_from_db()
    assert label.delisted_at is not None
    assert AddressLabel.objects.filter(pk=label.pk).exists()


@pytest.mark.django_db
def test_staff_add_a_label_in_admin(staff_client):
    address = get_or_create_address(ensure_chain("ethereum"), eth("admin-label"))
    entity = get_or_create_entity("Example Exchange", "exchange", country="DE")
    response = staff_client.post(
        reverse("admin:compliance_addresslabel_add"),
        {
            "address": address.pk,
            "entity": entity.pk,
            "source": "analyst:test",
            "source_version": "",
            "confidence": 80,
            "listed_at_0": "2025-01-02",
            "listed_at_1": "03:04:05",
            "note": "seen in a support ticket",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    label = AddressLabel.objects.get(address=address)
    assert (label.entity, label.source, label.confidence, label.delisted_at) == (entity, "analyst:test", 80, None)


# --- the address room over a real WebSocket ------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ethereum:" + EIP55_VECTORS[0], "subscribed"),
        ("ethereum:" + EIP55_VECTORS[0].lower(), "subscribed"),
        ("ethereum:" + EIP55_VECTORS[0].replace("aA", "Aa", 1), "validation_error"),  # checksum broken
        ("bitcoin:bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "subscribed"),
        ("bitcoin:1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "subscribed"),
        ("bitcoin:1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "validation_error"),
        ("bitcoin:bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "validation_error"),
        ("litecoin:LNf2JDiuunBz7GMDKFYHN4rq5meXWxiwfb", "error"),
    ],
)
async def test_address_room_validates_checksums(live_server_url, address, expected):
    client = await connected(live_server_url, unique("watcher"))
    frame = await client.request("subscribe", {"room": f"address:{address}"})
    assert frame["event"] == expected, frame
    if expected == "validation_error":
        assert frame["data"]["code"] == "VALIDATION_FAILED" and "room" in frame["data"]["errors"]
    if expected == "error":
        assert frame["data"]["code"] == "NOT_FOUND"
    await client.close()
