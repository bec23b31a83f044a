"""Carry JSON records through torchmetrics' tensor-only cross-rank gather.

Corpus-level metrics (CIDEr-D's document frequencies) and metrics with open-ended
breakdowns (VQA accuracy per question type) cannot be reduced by summing tensors: every
rank's raw records must reach the computation.  torchmetrics gathers only tensors, so each
record is serialised as ASCII JSON followed by a NUL byte into a ``uint8`` tensor; a list
state with ``dist_reduce_fx="cat"`` then gathers them (ranks may hold different numbers of
bytes) and :func:`decode_records` splits them back.  JSON escapes control characters, so a
NUL byte never occurs inside a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["decode_records", "dedupe_records", "encode_records", "jsonable_id"]

_SEP = 0


def encode_records(records: Iterable[Mapping[str, Any]]) -> torch.Tensor:
    """Serialise ``records`` into a 1-D ``uint8`` tensor (NUL-terminated ASCII JSON)."""
    payload = b"".join(
        json.dumps(dict(r), ensure_ascii=True, sort_keys=True).encode("ascii") + b"\x00"
        for r in records
    )
    return torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).copy())


def decode_records(state: torch.Tensor | Sequence[torch.Tensor]) -> list[dict[str, Any]]:
    """Inverse of :func:`encode_records` for a tensor or a list of tensors (gathered state).

    After a gather the state may have been promoted to float (torchmetrics creates an empty
    float tensor for ranks without data); values are bytes, so the cast back is exact.
    """
    parts = [state] if isinstance(state, torch.Tensor) else list(state)
    records: list[dict[str, Any]] = []
    for part in parts:
        data = part.detach().to("cpu").reshape(-1).to(torch.uint8).numpy().tobytes()
        if data and data[-1] != _SEP:
            raise ValueError("corrupted record state: the last record is not NUL-terminated")
        records.extend(json.loads(chunk) for chunk in data.split(b"\x00")[:-1])
    return records


def dedupe_records(records: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Keep the first record per ``record[key]`` (records without the key are all kept).

    Distributed samplers pad the last batch by repeating samples; identifying samples lets
    the metric count each once.  Two records with the same key must be identical, otherwise
    the inputs are contradictory and a :class:`ValueError` names the key.
    """
    seen: dict[Any, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for record in records:
        ident = record.get(key)
        if ident is None:
            out.append(record)
            continue
        if ident in seen:
            if seen[ident] != record:
                raise ValueError(
                    f"two different records share {key}={ident!r}: {seen[ident]} vs {record}"
                )
            continue
        seen[ident] = record
        out.append(record)
    return out


def jsonable_id(value: Any) -> int | str:
    """A sample id as a JSON scalar: ints (also numpy/torch scalars) stay ints, others become str."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return str(value)
    return value
