"""CIDEr-D (Vedantam et al., 2015) as computed by the COCO caption evaluation.

For every image, the candidate and each reference become TF-IDF vectors of their
1..4-grams, where the IDF is ``log(#images) − log(max(1, df(g)))`` and ``df(g)`` counts the
images whose *references* contain ``g`` — so the score is a property of the whole corpus,
and distributed evaluation must gather all (candidate, references) pairs before scoring.
Per n-gram order, the similarity to one reference is the "clipped" cosine
``Σ_g min(c_g, r_g)·r_g / (|c|·|r|)`` times the length penalty
``exp(−δ² / 2σ²)`` (σ = 6); it is averaged over references and orders and multiplied by 10.

Matching coco-caption exactly includes one detail: the length ``δ`` is measured in bigram
counts (``words − 1``), because its reference code counts the terms of order index 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from cm3leon.eval.metrics.ptb import ptb_tokenize, whitespace_tokenize
from cm3leon.eval.metrics.records import decode_records, dedupe_records, encode_records, jsonable_id

__all__ = ["CiderD", "CiderResult", "TOKENIZERS", "cider_d", "score_captions"]

TOKENIZERS: dict[str, Callable[[Sequence[str]], list[str]]] = {
    "ptb": ptb_tokenize,
    "whitespace": whitespace_tokenize,
}


@dataclass(frozen=True)
class CiderResult:
    """Corpus CIDEr-D and the per-image scores (same order as the inputs)."""

    score: float
    per_item: np.ndarray


def _ngrams(sentence: str, n: int) -> Counter[tuple[str, ...]]:
    words = sentence.split()
    return Counter(
        tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
    )


def _tfidf(counts: Counter, idf: Callable[[tuple[str, ...]], float], n: int):
    """Per-order TF-IDF dicts, their norms, and coco-caption's length (bigram count)."""
    vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
    for gram, tf in counts.items():
        vec[len(gram) - 1][gram] = tf * idf(gram)
    norms = [math.sqrt(sum(v * v for v in order.values())) for order in vec]
    length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
    return vec, norms, length


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    n: int = 4,
    sigma: float = 6.0,
) -> CiderResult:
    """CIDEr-D of tokenised ``candidates[i]`` against tokenised ``references[i]``.

    Args:
        candidates: one space-tokenised candidate per image.
        references: the space-tokenised references of each image (at least one each).
        n: maximum n-gram order.
        sigma: length-penalty width.

    Raises:
        ValueError: lengths differ, the corpus is empty, or an image has no reference.
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if not candidates:
        raise ValueError("CIDEr-D of an empty corpus")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"image {i}: references must be a non-empty list of strings")
    ref_counts = [[_ngrams(r, n) for r in refs] for refs in references]
    df: Counter[tuple[str, ...]] = Counter()
    for counts in ref_counts:
        df.update(set().union(*counts))
    log_images = math.log(float(len(candidates)))

    def idf(gram: tuple[str, ...]) -> float:
        return log_images - math.log(max(1.0, float(df.get(gram, 0))))

    scores = np.zeros(len(candidates), dtype=np.float64)
    for i, (cand, refs) in enumerate(zip(candidates, ref_counts, strict=True)):
        c_vec, c_norm, c_len = _tfidf(_ngrams(cand, n), idf, n)
        per_order = np.zeros(n, dtype=np.float64)
        for ref in refs:
            r_vec, r_norm, r_len = _tfidf(ref, idf, n)
            penalty = math.exp(-((c_len - r_len) ** 2) / (2.0 * sigma**2))
            for k in range(n):
                dot = sum(
                    min(v, r_vec[k].get(g, 0.0)) * r_vec[k].get(g, 0.0) for g, v in c_vec[k].items()
                )
                if c_norm[k] != 0 and r_norm[k] != 0:
                    dot /= c_norm[k] * r_norm[k]
                per_order[k] += dot * penalty
        scores[i] = per_order.mean() / len(refs) * 10.0
    return CiderResult(float(scores.mean()), scores)


def score_captions(
    candidates: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "ptb"
) -> CiderResult:
    """Tokenise (one batched call) and score raw captions with CIDEr-D.

    ``tokenizer`` is ``"ptb"`` (coco-caption's; needs Java) or ``"whitespace"``.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(
            f"unknown caption tokenizer {tokenizer!r}; choose from {sorted(TOKENIZERS)}"
        )
    flat = list(candidates) + [r for refs in references for r in refs]
    tokens = TOKENIZERS[tokenizer](flat)
    cand_tok, pos = tokens[: len(candidates)], len(candidates)
    ref_tok = []
    for refs in references:
        ref_tok.append(tokens[pos : pos + len(refs)])
        pos += len(refs)
    return cider_d(cand_tok, ref_tok)


class CiderD(Metric):
    """Corpus CIDEr-D over all ranks: records are gathered first, then scored once.

    Args:
        tokenizer: ``"ptb"`` (coco-caption's PTB tokenizer; needs Java) or ``"whitespace"``.
        **kwargs: torchmetrics ``Metric`` options.

    ``update(candidates, references, ids=None)``: with ``ids``, a sample seen twice (e.g.
    padding of a distributed sampler) is counted once.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tokenizer: str = "ptb", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tokenizer not in TOKENIZERS:
            raise ValueError(
                f"unknown caption tokenizer {tokenizer!r}; choose from {sorted(TOKENIZERS)}"
            )
        self.tokenizer = tokenizer
        self.add_state("records", default=[], dist_reduce_fx="cat")

    def update(
        self,
        candidates: Sequence[str],
        references: Sequence[Sequence[str]],
        ids: Sequence[Any] | None = None,
    ) -> None:
        if len(candidates) != len(references) or (ids is not None and len(ids) != len(candidates)):
            raise ValueError("candidates, references (and ids) must have the same length")
        rows = []
        for i, (cand, refs) in enumerate(zip(candidates, references, strict=True)):
            if isinstance(refs, str) or not refs:
                raise ValueError(f"sample {i}: references must be a non-empty list of strings")
            row: dict[str, Any] = {"c": str(cand), "r": [str(r) for r in refs]}
            if ids is not None:
                row["id"] = jsonable_id(ids[i])
            rows.append(row)
        self.records.append(encode_records(rows))

    def gathered(self) -> list[dict[str, Any]]:
        """The (deduplicated) records this metric would score."""
        return dedupe_records(decode_records(self.records), "id")

    def compute(self) -> torch.Tensor:
        rows = self.gathered()
        if not rows:
            raise ValueError("CiderD.compute() called before any update()")
        result = score_captions(
            [r["c"] for r in rows], [r["r"] for r in rows], tokenizer=self.tokenizer
        )
        return torch.tensor(result.score, dtype=torch.float64)
