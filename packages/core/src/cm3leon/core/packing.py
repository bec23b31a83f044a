"""Packing examples into fixed-length rows with document masks and position resets.

Every packed row carries, per token:

* ``input_ids``: the examples back to back (each begins with its own ``<eos>``), then
  ``<pad>`` up to ``seq_len``;
* ``labels``: the next token within the same example; the last token of an example predicts
  ``<eos>`` (end of example: exactly the target it would have in metaseq's eos-separated
  stream), unless the example was truncated, in which case it keeps its true next token;
  ``IGNORE_INDEX`` (-100) on padding;
* ``loss_weights``: weight of each label (1.0, or the RA-CM3 query weight; 0.0 on padding);
* ``doc_ids``: 0, 1, 2, ... per example in the row; the padding run gets the next id, so ids
  are non-decreasing along a row (what varlen / flex-attention kernels expect) and a pad
  query always has a key to attend to (no all-masked softmax row, no NaN);
* ``position_ids``: restart at 0 at every example (and for the padding run).

**Why both document masks and position resets.**  The model attends block-diagonally
(``doc_ids[q] == doc_ids[k] and k <= q``) and embeds ``position_ids``.  With both, a packed
example computes exactly what it would compute alone in a row of its own: no attention to
an unrelated previous example (whose retrieved documents would otherwise leak in as
spurious "retrieval"), and positions that match inference, where every prompt (zero-shot
``<eos> caption <break>``, or a retrieval-augmented one) starts alone at position 0.
CM3Leon's learned absolute position embeddings make the reset matter: without it, starts
of examples would be trained at positions the model never sees them at when decoding.
Packing then changes throughput only, never the function being learned.

Two packers share one row builder: :func:`pack` (a list at once; next-fit ``"greedy"`` or
first-fit-decreasing ``"ffd"``, optional fixed row count) and :class:`StreamingPacker`
(next-fit, one example at a time, for an ``IterableDataset``).  :class:`PackingCollator`
packs each DataLoader batch of examples, so a fixed number of examples is consumed per
batch on every rank, which keeps ``StreamingDataset`` resumption exact (see
:mod:`cm3leon.core.shard_datasets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from cm3leon.core.vocab import Vocabulary

__all__ = [
    "IGNORE_INDEX",
    "OVERFLOW_POLICIES",
    "PackStats",
    "PackedIterableDataset",
    "PackedRows",
    "PackingCollator",
    "StreamingPacker",
    "pack",
    "raw_samples_in_batch",
    "row_token_counts",
    "token_accounting",
]

IGNORE_INDEX = -100
OVERFLOW_POLICIES = ("truncate", "drop")
_ROW_KEYS = ("input_ids", "labels", "loss_weights", "doc_ids", "position_ids")


@dataclass
class PackStats:
    """Counters of one packing call (or of a packer's lifetime)."""

    examples: int = 0  # examples offered
    packed: int = 0  # examples placed in a row (truncated ones included)
    truncated: int = 0  # longer than seq_len, cut to seq_len
    dropped_long: int = 0  # longer than seq_len, dropped (overflow="drop")
    dropped_no_room: int = 0  # did not fit into the fixed number of rows
    tokens: int = 0  # real tokens placed
    pad_tokens: int = 0

    def merge(self, other: PackStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PackedRows:
    """Rows of :func:`pack`: arrays ``(R, T)`` plus per-row counts ``(R,)``."""

    input_ids: np.ndarray  # (R, T) int64
    labels: np.ndarray  # (R, T) int64, IGNORE_INDEX on padding
    loss_weights: np.ndarray  # (R, T) float32, 0 on padding
    doc_ids: np.ndarray  # (R, T) int64
    position_ids: np.ndarray  # (R, T) int64
    num_examples: np.ndarray  # (R,) int64
    num_truncated: np.ndarray  # (R,) int64
    stats: PackStats = field(default_factory=PackStats)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in (*_ROW_KEYS, "num_examples", "num_truncated")}


@dataclass
class _Example:
    tokens: np.ndarray  # (n,) int64, already cut to seq_len
    labels: np.ndarray  # (n,) int64
    weights: np.ndarray  # (n,) float32 (label weights)
    truncated: bool


def _prepare(
    index: int,
    tokens: Any,
    weights: Any,
    seq_len: int,
    overflow: str,
    eos_id: int,
    vocab: Vocabulary | None,
) -> _Example | None:
    where = f"pack: example {index}"
    arr = vocab.check_ids(tokens, where=where) if vocab is not None else np.asarray(tokens)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D integer sequence, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size == 0:
        raise ValueError(f"{where} is empty")
    w = np.ones(arr.size, np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != arr.shape:
        raise ValueError(f"{where}: loss_weights shape {w.shape} != tokens shape {arr.shape}")
    labels = np.concatenate([arr[1:], [eos_id]])
    label_w = np.concatenate([w[1:], w[-1:]])
    truncated = arr.size > seq_len
    if truncated:
        if overflow == "drop":
            return None
        arr, labels, label_w = arr[:seq_len], labels[:seq_len], label_w[:seq_len]
    return _Example(arr, labels, label_w, truncated)


def _build_row(examples: Sequence[_Example], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    input_ids = np.full(seq_len, pad_id, dtype=np.int64)
    labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
    weights = np.zeros(seq_len, dtype=np.float32)
    doc_ids = np.full(seq_len, len(examples), dtype=np.int64)
    positions = np.zeros(seq_len, dtype=np.int64)
    cursor = 0
    for d, ex in enumerate(examples):
        n = ex.tokens.size
        span = slice(cursor, cursor + n)
        input_ids[span], labels[span], weights[span] = ex.tokens, ex.labels, ex.weights
        doc_ids[span] = d
        positions[span] = np.arange(n)
        cursor += n
    positions[cursor:] = np.arange(seq_len - cursor)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "loss_weights": weights,
        "doc_ids": doc_ids,
        "position_ids": positions,
        "num_examples": np.int64(len(examples)),
        "num_truncated": np.int64(sum(ex.truncated for ex in examples)),
    }


def _split(item: Any) -> tuple[Any, Any]:
    if isinstance(item, Mapping):
        return item["tokens"], item.get("loss_weights")
    if isinstance(item, tuple) and len(item) == 2:
        return item
    return item, None


def _check_args(seq_len: int, overflow: str) -> None:
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")


def pack(
    sequences: Iterable[Any],
    seq_len: int,
    *,
    pad_id: int = Vocabulary.pad_id,
    eos_id: int = Vocabulary.eos_id,
    vocab: Vocabulary | None = None,
    overflow: str = "truncate",
    strategy: str = "greedy",
    num_rows: int | None = None,
) -> PackedRows:
    """Pack examples into rows of ``seq_len`` tokens.

    Args:
        sequences: token arrays, ``(tokens, loss_weights)`` pairs, or mappings with
            ``"tokens"`` and optional ``"loss_weights"`` (per input token).
        seq_len: row length ``T``.
        pad_id / eos_id: padding id and end-of-example label (default: the vocabulary's).
        vocab: when given, every id is range-checked first (error names the example).
        overflow: examples longer than ``seq_len``: ``"truncate"`` or ``"drop"`` (counted).
        strategy: ``"greedy"`` (next-fit, keeps order) or ``"ffd"`` (first-fit decreasing,
            fewer rows; order within the batch changes, deterministically).
        num_rows: fixed number of rows (padded with empty rows); examples that do not fit
            are dropped and counted in ``stats.dropped_no_room``.  ``None``: as many as needed.

    Returns:
        :class:`PackedRows`.
    """
    _check_args(seq_len, overflow)
    if strategy not in ("greedy", "ffd"):
        raise ValueError(f"strategy must be 'greedy' or 'ffd', got {strategy!r}")
    stats = PackStats()
    examples: list[_Example] = []
    for i, item in enumerate(sequences):
        tokens, weights = _split(item)
        stats.examples += 1
        ex = _prepare(i, tokens, weights, seq_len, overflow, eos_id, vocab)
        if ex is None:
            stats.dropped_long += 1
            continue
        stats.truncated += int(ex.truncated)
        examples.append(ex)
    bins: list[list[_Example]] = []
    used: list[int] = []
    order = (
        sorted(range(len(examples)), key=lambda i: -examples[i].tokens.size)
        if strategy == "ffd"
        else range(len(examples))
    )
    for i in order:
        ex = examples[i]
        candidates = range(len(bins)) if strategy == "ffd" else range(len(bins) - 1, len(bins))
        target = next((b for b in candidates if b >= 0 and used[b] + ex.tokens.size <= seq_len), None)
        if target is None:
            if num_rows is not None and len(bins) >= num_rows:
                stats.dropped_no_room += 1
                continue
            bins.append([])
            used.append(0)
            target = len(bins) - 1
        bins[target].append(ex)
        used[target] += ex.tokens.size
        stats.packed += 1
    if num_rows is not None:
        bins += [[] for _ in range(num_rows - len(bins))]
    rows = [_build_row(b, seq_len, pad_id) for b in bins]
    stats.tokens = int(sum(used))
    stats.pad_tokens = len(rows) * seq_len - stats.tokens
    if not rows:
        empty = np.zeros((0, seq_len), dtype=np.int64)
        return PackedRows(empty, empty.copy(), empty.astype(np.float32), empty.copy(), empty.copy(),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), stats)
    stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return PackedRows(**stacked, stats=stats)


class StreamingPacker:
    """Next-fit packer fed one example at a time (for ``IterableDataset`` pipelines).

    ``add`` returns the rows completed by that example (0 or 1; 2 when a too-long example
    is truncated into a fresh row right after a full one), ``flush`` the last partial row.
    Rows are dicts of ``(T,)`` arrays plus scalar ``num_examples``/``num_truncated``.
    """

    def __init__(
        self,
        seq_len: int,
        *,
        pad_id: int = Vocabulary.pad_id,
        eos_id: int = Vocabulary.eos_id,
        vocab: Vocabulary | None = None,
        overflow: str = "truncate",
    ) -> None:
        _check_args(seq_len, overflow)
        self.seq_len, self.pad_id, self.eos_id = seq_len, pad_id, eos_id
        self.vocab, self.overflow = vocab, overflow
        self.stats = PackStats()
        self._row: list[_Example] = []
        self._used = 0

    def add(self, item: Any) -> list[dict[str, np.ndarray]]:
        tokens, weights = _split(item)
        index = self.stats.examples
        self.stats.examples += 1
        ex = _prepare(index, tokens, weights, self.seq_len, self.overflow, self.eos_id, self.vocab)
        if ex is None:
            self.stats.dropped_long += 1
            return []
        self.stats.truncated += int(ex.truncated)
        self.stats.packed += 1
        out = []
        if self._used + ex.tokens.size > self.seq_len:
            out = self.flush()
        self._row.append(ex)
        self._used += ex.tokens.size
        return out

    def flush(self) -> list[dict[str, np.ndarray]]:
        if not self._row:
            return []
        row = _build_row(self._row, self.seq_len, self.pad_id)
        self.stats.tokens += self._used
        self.stats.pad_tokens += self.seq_len - self._used
        self._row, self._used = [], 0
        return [row]


class PackedIterableDataset(IterableDataset):
    """Stream packed rows (as torch tensors) from any iterable of examples.

    Args:
        examples: iterable of examples (token arrays or ``{"tokens", "loss_weights"}`` dicts),
            e.g. a :class:`cm3leon.core.shard_datasets.CM3StreamingDataset`.
        seq_len / overflow / vocab: as in :class:`StreamingPacker`.

    Order-preserving and deterministic; for exact mid-epoch resumption on top of
    ``StreamingDataset`` use :func:`cm3leon.core.shard_datasets.build_packed_dataloader`.
    """

    def __init__(self, examples: Iterable[Any], seq_len: int, *, vocab: Vocabulary | None = None,
                 overflow: str = "truncate") -> None:
        super().__init__()
        self.examples, self.seq_len, self.vocab, self.overflow = examples, seq_len, vocab, overflow

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        packer = StreamingPacker(self.seq_len, vocab=self.vocab, overflow=self.overflow)
        for item in self.examples:
            for row in packer.add(item):
                yield _to_torch(row)
        for row in packer.flush():
            yield _to_torch(row)


def _to_torch(arrays: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}


def row_token_counts(input_ids: Any, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Per-row counts ``(R,)`` of text, image, special (non-pad) and pad tokens."""
    ids = input_ids.detach().cpu().numpy() if hasattr(input_ids, "detach") else np.asarray(input_ids)
    text = np.asarray(vocab.is_text(ids), dtype=bool).sum(-1)
    image = np.asarray(vocab.is_image(ids), dtype=bool).sum(-1)
    pad = (ids == vocab.pad_id).sum(-1)
    special = np.asarray(vocab.is_special(ids), dtype=bool).sum(-1) - pad
    return {"text": text, "image": image, "special": special, "pad": pad}


def token_accounting(input_ids: Any, vocab: Vocabulary) -> dict[str, int]:
    """How many text / image / special / pad tokens a batch ``(B, T)`` holds."""
    return {k: int(v.sum()) for k, v in row_token_counts(input_ids, vocab).items()}


def raw_samples_in_batch(batch: Mapping[str, Any]) -> int:
    """Number of source examples a :class:`PackingCollator` batch consumed (packed + dropped).

    Pass it as Composer's ``DataSpec(get_num_samples_in_batch=...)`` so that
    ``timestamp.sample_in_epoch`` counts examples, the unit ``StreamingDataset`` resumes in.
    """
    return int(torch.as_tensor(batch["num_source_samples"]).sum())


class PackingCollator:
    """``collate_fn`` that packs one DataLoader batch of examples into rows.

    Args:
        seq_len: row length.
        vocab: range-checks ids and feeds the per-row modality counts.
        overflow: ``"truncate"`` or ``"drop"`` for examples longer than ``seq_len``.
        strategy: ``"ffd"`` (default; fewest rows) or ``"greedy"``.
        num_rows: fixed rows per batch (static shapes; overflow examples are dropped and
            counted) or ``None`` (as many rows as needed; nothing dropped for lack of room).

    The batch holds the row tensors ``(R, T)`` and per-row ``(R,)`` counters:
    ``num_examples``, ``num_truncated``, ``num_dropped``, ``num_source_samples``,
    ``num_shortened`` (examples that lost retrieved documents to fit, items'
    ``dropped_documents`` > 0), ``num_documents_dropped`` and ``num_whole_text_masks`` /
    ``num_whole_image_masks`` (CM3 spans that are a whole caption / image) (batch totals are
    attributed to the last row, so sums over rows are batch totals), and
    ``num_text_tokens`` / ``num_image_tokens`` / ``num_special_tokens`` / ``num_pad_tokens``.
    """

    def __init__(self, seq_len: int, vocab: Vocabulary, *, overflow: str = "truncate",
                 strategy: str = "ffd", num_rows: int | None = None) -> None:
        _check_args(seq_len, overflow)
        if num_rows is not None and num_rows < 1:
            raise ValueError(f"num_rows must be positive, got {num_rows}")
        self.seq_len, self.vocab, self.overflow = seq_len, vocab, overflow
        self.strategy, self.num_rows = strategy, num_rows

    def __call__(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        rows = pack(samples, self.seq_len, pad_id=self.vocab.pad_id, eos_id=self.vocab.eos_id,
                    vocab=self.vocab, overflow=self.overflow, strategy=self.strategy,
                    num_rows=self.num_rows)
        if rows.input_ids.shape[0] == 0:  # every example dropped: one padding row carries the counts
            empty = pack([], self.seq_len, pad_id=self.vocab.pad_id, num_rows=1)
            rows = PackedRows(**{**empty.as_dict(), "stats": rows.stats})
        out = _to_torch(rows.as_dict())
        r = rows.input_ids.shape[0]
        dropped = np.zeros(r, np.int64)
        source = rows.num_examples.copy()
        if r:
            dropped[-1] = rows.stats.dropped_long + rows.stats.dropped_no_room
            source[-1] += dropped[-1]
        out["num_dropped"] = torch.as_tensor(dropped)
        out["num_source_samples"] = torch.as_tensor(source)
        def count(key: str) -> list[int]:
            return [int(x.get(key, 0)) if isinstance(x, Mapping) else 0 for x in samples]

        docs = count("dropped_documents")
        totals = (("num_shortened", sum(d > 0 for d in docs)), ("num_documents_dropped", sum(docs)),
                  ("num_whole_text_masks", sum(count("whole_text_masks"))),
                  ("num_whole_image_masks", sum(count("whole_image_masks"))))
        for name, total in totals:
            counter = np.zeros(r, np.int64)
            if r:
                counter[-1] = total
            out[name] = torch.as_tensor(counter)
        for name, counts in row_token_counts(rows.input_ids, self.vocab).items():
            out[f"num_{name}_tokens"] = torch.as_tensor(counts.astype(np.int64))
        return out
