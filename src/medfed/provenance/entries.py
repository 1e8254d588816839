"""Ledger entries: what one party did in one round, chained by hash and signed.

An entry is a line of canonical JSON (sorted keys, no spaces). Its ``signature`` is its
signer's Ed25519 signature over everything else (``signed_bytes``), so changing a field breaks
the signature. Its ``previous`` field is the SHA-256 of the previous entry's signed bytes
(``GENESIS`` for the first), so removing, inserting or reordering an entry breaks the chain, and
renumbering and relinking the rest breaks their signatures. The chain covers the signed content,
not the signatures themselves: the entries of one round can be chained first and then signed by
their sites in parallel (a signature can only be valid or not, so leaving it out of the hash
hides nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from medfed.types import SCHEMA_VERSION

GENESIS = "0" * 64
"""The ``previous`` of a ledger's first entry."""

EntryKind = Literal["update", "aggregate"]
"""``update``: a party's contribution (what it sent); ``aggregate``: a new model from inputs."""

MAX_LINE_BYTES = 256 * 1024
"""Longest entry line accepted from a file or from another party."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_MAX_FIELDS, _MAX_INPUTS = 64, 10_000


@dataclass(frozen=True)
class Entry:
    """One ledger entry.

    Attributes:
        index: Position in the ledger, from 0.
        previous: ``entry_hash`` of the previous entry (``GENESIS`` for entry 0).
        kind: ``update`` or ``aggregate``.
        round: The federated round (or peer-to-peer step) the entry belongs to.
        signer: The party that signed it: a site, or ``server`` for the server's aggregates.
        digest: Hex SHA-256 of what the signer sent (``update``; for a secure or encrypted
            round, of its protocol messages) or of the model it produced (``aggregate``).
        num_samples: The sample count the signer declared (0 for an aggregate).
        metrics: Training metrics the signer reported.
        privacy: Privacy spent so far by the signer, e.g. ``{"epsilon": 1.9}``.
        inputs: ``aggregate`` only: the digests of the updates it combined.
        signature: Hex Ed25519 signature over ``signed_bytes(entry)``.
    """

    index: int
    previous: str
    kind: EntryKind
    round: int
    signer: str
    digest: str
    num_samples: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    privacy: Mapping[str, float] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    signature: str = ""
    schema_version: int = SCHEMA_VERSION


def signed_bytes(entry: Entry) -> bytes:
    """The bytes its signer signs: a context string and the entry without its signature."""
    return b"medfed/provenance/v1\n" + _canonical(replace(entry, signature=""))


def entry_line(entry: Entry) -> bytes:
    """The entry as one line of canonical JSON, without the newline."""
    return _canonical(entry)


def entry_hash(entry: Entry) -> str:
    """Hex SHA-256 of the entry's signed bytes: the next entry's ``previous``."""
    return hashlib.sha256(signed_bytes(entry)).hexdigest()


def parse_entry(line: bytes) -> Entry:
    """The entry in one line; every field's type and range is checked (lines come from files
    and other parties).

    Raises:
        ValueError: The line is not a well-formed entry (the message says why).
    """
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    data = json.loads(line)
    if not isinstance(data, dict) or set(data) != _FIELDS:
        raise ValueError(f"not an entry: fields must be {sorted(_FIELDS)}")
    return Entry(
        index=_count(data, "index"),
        previous=_digest(data["previous"], "previous"),
        kind=_kind(data["kind"]),
        round=_count(data, "round"),
        signer=_name(data["signer"]),
        digest=_digest(data["digest"], "digest"),
        num_samples=_count(data, "num_samples"),
        metrics=_numbers(data["metrics"], "metrics"),
        privacy=_numbers(data["privacy"], "privacy"),
        inputs=_inputs(data["inputs"]),
        signature=_hex(data["signature"], "signature"),
        schema_version=_schema(data["schema_version"]),
    )


def _canonical(entry: Entry) -> bytes:
    data = asdict(entry)
    data["inputs"] = list(entry.inputs)
    for key in ("metrics", "privacy"):
        data[key] = {name: float(value) for name, value in data[key].items()}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode()


_FIELDS = frozenset(Entry.__dataclass_fields__)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ValueError(f"'{key}' must be a whole number from 0 to 2**53")
    return value


def _digest(value: object, key: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"'{key}' must be 64 lower-case hex digits")
    return value


def _hex(value: object, key: str) -> str:
    if not isinstance(value, str) or len(value) > 256 or not re.fullmatch(r"[0-9a-f]*", value):
        raise ValueError(f"'{key}' must be lower-case hex")
    return value


def _kind(value: object) -> EntryKind:
    if value not in get_args(EntryKind):
        raise ValueError(f"'kind' must be one of {list(get_args(EntryKind))}")
    return value  # type: ignore[return-value]


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError("'signer' must be 1-100 letters, digits or _.-")
    return value


def _numbers(value: object, key: str) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > _MAX_FIELDS:
        raise ValueError(f"'{key}' must be an object of at most {_MAX_FIELDS} numbers")
    numbers = {}
    for name, number in value.items():
        if not _NAME.fullmatch(name) or isinstance(number, bool) or not isinstance(number, int | float):
            raise ValueError(f"'{key}' must map names to numbers")
        if not math.isfinite(number):
            raise ValueError(f"'{key}' holds a NaN or an infinity")
        numbers[name] = float(number)
    return numbers


def _inputs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_INPUTS:
        raise ValueError(f"'inputs' must be a list of at most {_MAX_INPUTS} digests")
    return tuple(_digest(item, "inputs") for item in value)


def _schema(value: object) -> int:
    if value != SCHEMA_VERSION:
        raise ValueError(f"schema version {value!r}, this medfed reads {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def draft(
    kind: EntryKind,
    round: int,
    signer: str,
    digest: str,
    *,
    num_samples: int = 0,
    metrics: Mapping[str, float] | None = None,
    privacy: Mapping[str, float] | None = None,
    inputs: tuple[str, ...] = (),
) -> Entry:
    """An entry not yet placed in a ledger (index 0, linked to ``GENESIS``) nor signed; NaN and
    infinities are left out of its numbers (strict JSON has neither)."""
    return Entry(
        index=0,
        previous=GENESIS,
        kind=kind,
        round=round,
        signer=signer,
        digest=digest,
        num_samples=num_samples,
        metrics=finite_numbers(metrics or {}),
        privacy=finite_numbers(privacy or {}),
        inputs=inputs,
    )


def finite_numbers(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` without NaN and infinities (strict JSON has neither)."""
    return {key: float(value) for key, value in values.items() if math.isfinite(value)}
