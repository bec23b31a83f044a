"""The CM3 objective (§2.2): move masked spans to the end, behind numbered sentinels.

Pure span helpers plus one transform, in the spirit of metaseq's ``cm3_dataset.py``::

    <eos> Image of a chameleon <break> c_1 .. c_N <break>
 -> <eos> Image of <mask:0> <break> c_1 .. c_N <break> <infill:0> a chameleon

* :func:`maskable_runs` finds the runs a span may come from: maximal runs of text or of
  image tokens.  Specials (``<break>``, ``<eos>``, ``<pad>``, ``<unk>``) and sentinels end a
  run, so **no span ever contains or crosses a** ``<break>`` (CM3Leon's modification of
  CM3) and none contains ``<eos>``/``<pad>``/sentinels.
* :func:`sample_spans` draws the number of spans (CM3 default: Poisson(1) clamped to
  ``[1, num_sentinels]``) and their lengths (default: metaseq's two uniform end points,
  here within one run), rejecting overlaps; everything comes from one
  ``numpy.random.Generator``, so the transform is deterministic given a seed.
* :func:`mask_spans` / :func:`cm3_transform` replace span ``i`` (in order of position) by
  ``<mask:i>`` and append ``<infill:i> span_i`` blocks; :func:`cm3_inverse` undoes it.

**Task-aware spans (SFT).** §4 fine-tunes by "concatenating input and output and
training with the same objective" as pretraining.  With Table 5's text-first templates
(``Question: {question} The answer is {answer}. <break> {image}``) the output precedes
the image it is about, so a model can only learn to answer from the image by *infilling*
the output after it -- CM3's image-to-text prompt (§2.2: ``Image of <mask>: [image]
<infill>``), which is exactly how the evaluation prompts ask (``... The answer is
<mask:0>. <break> [image] <break> <infill:0>``).  CM3's random spans rarely mask just the
output field (0.2 % of the demo's VQA examples), so with ``CM3Config.target_prob = p`` an
example whose task declared its output (``Document.targets``, carried through the token
shards) has exactly those spans masked with probability ``p``
(:func:`infill_target_spans`); otherwise it gets the usual random spans.  A target that
ends the example (nothing but ``<break>`` after it: an edited or generated image) stays in
place -- it already is the continuation the decoder generates after its prompt.  Off by
default (``p = 0``), as in pretraining; the SFT configs turn it on.  The draw of ``p``
consumes the generator only when ``p > 0`` and the example has targets, so pretraining
spans are unchanged.

**Images.** CM3 masks image spans too, and the paper only forbids crossing ``<break>``;
an image span is part of an image (image infilling).  With uniform end points a span
covers a whole image only when both land on the run's ends (0 of 2,729 image spans,
measured at paper scale).  ``CM3Config.image_spans`` switches to ``"whole"`` (an image is
masked only as a whole) or ``"none"`` (text spans only).

**Whole segments (the streams guidance decodes).**  Every unconditional stream the decoder
builds masks a *whole* segment: ``<eos> <mask:0> <break>`` in place of the caption for
text-to-image CFG (§3.1, eq. 1), ``<break> <mask:k> <break>`` in place of an image for
editing and image-conditioned guidance.  The paper's CFG needs no extra fine-tuning
because CM3 training shows the model such inputs -- but uniform end points inside a run
mask a whole caption with probability ~5e-5 at paper scale (99 % of spans fall inside the
1,024-token images).  ``CM3Config.whole_text_prob`` / ``whole_image_prob`` give an example
one span that is a whole text run (a caption: its ``<mask:i>`` then sits between
``<eos>``/``<break>`` and ``<break>``) / a whole image run (``<break> <mask:i> <break>``),
chosen uniformly among the example's runs of that modality, with that probability; the
example's other spans are CM3's random ones (the whole segment counts towards the drawn
number of spans).  Off in :class:`CM3Config` (``0.0``: plain CM3, and the generator is not
consumed, so existing span draws are unchanged); the shipped pretraining, SFT and demo
configs set ``whole_text_prob: 0.25`` and ``whole_image_prob: 0.1`` -- a quarter of the
examples then train exactly the text-to-image unconditional stream (the caption comes back
as an infill after the image, i.e. captioning), about a tenth the image-masked stream (an
example that draws a single span and already masks a whole caption gets no whole image:
the demo's pretraining realised 25.3 % whole captions and 8.2 % whole images, logged as
``data/whole_text_masks`` / ``data/whole_image_masks``).

The loss is plain next-token prediction over the whole transformed sequence (§2.2); the
length grows by exactly two tokens per span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from cm3leon.core.vocab import Vocabulary

__all__ = [
    "CM3Config",
    "CM3Dataset",
    "CM3Result",
    "Run",
    "SpanCount",
    "SpanLength",
    "cm3_example",
    "cm3_inverse",
    "cm3_rng",
    "cm3_transform",
    "infill_target_spans",
    "mask_spans",
    "max_growth",
    "whole_segment_counts",
    "maskable_runs",
    "sample_num_spans",
    "sample_span_length",
    "sample_spans",
]

_COUNT_KINDS = ("poisson", "fixed", "uniform")
_LENGTH_KINDS = ("uniform", "poisson", "geometric", "fixed")
_IMAGE_MODES = ("any", "whole", "none")


@dataclass
class SpanCount:
    """Distribution of the number of spans per example.

    Attributes:
        kind: ``"poisson"`` (``lam``), ``"fixed"`` (``value``) or ``"uniform"`` over
            ``[min, max]``; the draw is clamped to ``[min, max]`` (CM3: Clamp(Poisson(1), 1, K)).
        lam: Poisson rate.
        value: the fixed count.
        min: smallest count (CM3: 1, every example gets at least one span).
        max: largest count; ``None`` = the number of sentinels of the vocabulary.
    """

    kind: str = "poisson"
    lam: float = 1.0
    value: int = 1
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _COUNT_KINDS:
            raise ValueError(f"SpanCount.kind must be one of {_COUNT_KINDS}, got {self.kind!r}")
        if self.lam < 0 or self.value < 0 or self.min < 0:
            raise ValueError(f"SpanCount values must be non-negative: {self}")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"SpanCount.max ({self.max}) < min ({self.min})")


@dataclass
class SpanLength:
    """Distribution of span lengths (in tokens), always clipped to ``[1, run length]``.

    Attributes:
        kind: ``"uniform"`` (metaseq: two uniform end points inside the run, mean ~ run/3),
            ``"poisson"`` (``1 + Poisson(lam - 1)``, mean ``lam``), ``"geometric"`` (``p``)
            or ``"fixed"`` (``value``).
    """

    kind: str = "uniform"
    lam: float = 5.0
    p: float = 0.2
    value: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _LENGTH_KINDS:
            raise ValueError(f"SpanLength.kind must be one of {_LENGTH_KINDS}, got {self.kind!r}")
        if self.lam < 1 or not 0 < self.p <= 1 or self.value < 1:
            raise ValueError(f"SpanLength needs lam >= 1, 0 < p <= 1, value >= 1: {self}")


@dataclass
class CM3Config:
    """CM3 transform settings (OmegaConf-friendly; defaults follow CM3 / CM3Leon).

    Attributes:
        num_spans: how many spans per example.
        span_length: how long each span is.
        image_spans: ``"any"`` (partial or whole images), ``"whole"`` or ``"none"``.
        apply_prob: probability that an example gets random spans at all (1.0 in CM3).
        target_prob: probability that an example with declared task targets has exactly
            those masked instead of random spans (0.0 = off, as in pretraining; see the
            module docstring).
        whole_text_prob: probability that one of the example's spans is a whole text run
            (a caption), chosen uniformly among its text runs (0.0 = off; see the module
            docstring: the text-to-image CFG stream).
        whole_image_prob: likewise for a whole image run (editing / image guidance
            streams); ignored with ``image_spans="none"``.
        max_attempts: candidate draws per wanted span before giving up on overlaps.
    """

    num_spans: SpanCount = field(default_factory=SpanCount)
    span_length: SpanLength = field(default_factory=SpanLength)
    image_spans: str = "any"
    apply_prob: float = 1.0
    target_prob: float = 0.0
    whole_text_prob: float = 0.0
    whole_image_prob: float = 0.0
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.num_spans, dict):
            self.num_spans = SpanCount(**self.num_spans)
        if isinstance(self.span_length, dict):
            self.span_length = SpanLength(**self.span_length)
        if self.image_spans not in _IMAGE_MODES:
            raise ValueError(f"CM3Config.image_spans must be one of {_IMAGE_MODES}, got {self.image_spans!r}")
        for name in ("apply_prob", "target_prob", "whole_text_prob", "whole_image_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"CM3Config.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_attempts < 1:
            raise ValueError(f"CM3Config.max_attempts must be >= 1, got {self.max_attempts}")


class Run(NamedTuple):
    """A maximal run ``[start, end)`` of one modality, a span may be drawn from it."""

    start: int
    end: int
    modality: str  # "text" or "image"


class CM3Result(NamedTuple):
    """Output of :func:`cm3_transform`."""

    tokens: np.ndarray  # (L + 2k,) int64
    spans: list[tuple[int, int]]  # [start, end) in the input, by position
    weights: np.ndarray | None  # (L + 2k,) float32, or None


# --------------------------------------------------------------------- helpers
def cm3_rng(seed: int, epoch: int = 0, index: int = 0) -> np.random.Generator:
    """The generator for one example: a pure function of ``(seed, epoch, index)``."""
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if int(value) < 0:
            raise ValueError(f"cm3_rng: {name} must be non-negative, got {value}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


def maskable_runs(tokens: np.ndarray, vocab: Vocabulary) -> list[Run]:
    """Maximal runs of text tokens and of image tokens (specials and sentinels split runs)."""
    tokens = np.asarray(tokens)
    kind = np.zeros(tokens.shape[0], dtype=np.int8)  # 0 special, 1 text, 2 image
    kind[np.asarray(vocab.is_text(tokens), dtype=bool)] = 1
    kind[np.asarray(vocab.is_image(tokens), dtype=bool)] = 2
    if kind.size == 0:
        return []
    change = np.flatnonzero(np.diff(kind)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [kind.size]])
    return [
        Run(int(s), int(e), "text" if kind[s] == 1 else "image")
        for s, e in zip(starts, ends, strict=True)
        if kind[s] != 0
    ]


def sample_num_spans(rng: np.random.Generator, dist: SpanCount, num_sentinels: int) -> int:
    """Draw the number of spans, clamped to ``[dist.min, min(dist.max, num_sentinels)]``."""
    hi = num_sentinels if dist.max is None else min(dist.max, num_sentinels)
    lo = min(dist.min, hi)
    if dist.kind == "poisson":
        n = int(rng.poisson(dist.lam))
    elif dist.kind == "fixed":
        n = dist.value
    else:
        n = int(rng.integers(lo, hi + 1))
    return int(np.clip(n, lo, hi))


def sample_span_length(rng: np.random.Generator, dist: SpanLength, run_length: int) -> int:
    """Draw a span length in ``[1, run_length]`` (``"uniform"``: see :func:`_draw_span`)."""
    if dist.kind == "poisson":
        n = 1 + int(rng.poisson(dist.lam - 1))
    elif dist.kind == "geometric":
        n = int(rng.geometric(dist.p))
    elif dist.kind == "fixed":
        n = dist.value
    else:
        n = int(rng.integers(1, run_length + 1))
    return int(np.clip(n, 1, run_length))


def _draw_span(rng: np.random.Generator, run: Run, cfg: CM3Config) -> tuple[int, int]:
    size = run.end - run.start
    if run.modality == "image" and cfg.image_spans == "whole":
        return run.start, run.end
    if cfg.span_length.kind == "uniform":
        # metaseq: two uniform end points, start rounded down, end rounded half up.
        a, b = sorted(rng.uniform(size=2).tolist())
        start = int(a * size)
        end = max(int(b * size + 0.5), start + 1)
        return run.start + start, run.start + min(end, size)
    length = sample_span_length(rng, cfg.span_length, size)
    start = int(rng.integers(0, size - length + 1))
    return run.start + start, run.start + start + length


def sample_spans(
    tokens: np.ndarray, vocab: Vocabulary, cfg: CM3Config, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Choose non-overlapping spans ``[start, end)`` inside maskable runs, sorted by start.

    A run is picked with probability proportional to its length, a span is drawn inside it,
    and candidates overlapping an accepted span are rejected (``cfg.max_attempts`` draws per
    wanted span), so fewer spans than drawn may come back.
    """
    runs = maskable_runs(tokens, vocab)
    if cfg.image_spans == "none":
        runs = [r for r in runs if r.modality != "image"]
    if not runs or (cfg.apply_prob < 1.0 and rng.uniform() >= cfg.apply_prob):
        return []
    wanted = sample_num_spans(rng, cfg.num_spans, vocab.num_sentinels)
    if wanted == 0:
        return []
    taken = np.zeros(len(tokens), dtype=bool)
    spans = _whole_segments(runs, cfg, rng, wanted)
    for start, end in spans:
        taken[start:end] = True
    lengths = np.array([r.end - r.start for r in runs], dtype=np.float64)
    probs = lengths / lengths.sum()
    for _ in range(wanted * cfg.max_attempts):
        if len(spans) == wanted:
            break
        run = runs[int(rng.choice(len(runs), p=probs))]
        start, end = _draw_span(rng, run, cfg)
        if taken[start:end].any():
            continue
        taken[start:end] = True
        spans.append((start, end))
    return sorted(spans)


def _whole_segments(runs: Sequence[Run], cfg: CM3Config, rng: np.random.Generator,
                    wanted: int) -> list[tuple[int, int]]:
    """Whole-run spans (at most one text, one image, ``wanted`` in all); see the module docstring.

    The generator is consumed only for a probability above zero, so configs without
    whole-segment masking draw exactly the spans they always did.
    """
    out: list[tuple[int, int]] = []
    for modality, prob in (("text", cfg.whole_text_prob), ("image", cfg.whole_image_prob)):
        if prob <= 0.0 or len(out) == wanted:
            continue
        candidates = [r for r in runs if r.modality == modality]
        if candidates and rng.uniform() < prob:
            run = candidates[int(rng.integers(len(candidates)))]
            out.append((run.start, run.end))
    return out


def infill_target_spans(tokens: np.ndarray, targets: Any, vocab: Vocabulary, *,
                        where: str = "targets") -> list[tuple[int, int]]:
    """The task target spans to mask: every target except one that ends the example.

    Args:
        tokens: the untransformed example ``(L,)``.
        targets: token ranges ``(k, 2)`` (``[start, end)``, as serialisation and the token
            shards give them).
        vocab: the unified vocabulary.
        where: prefix of error messages (the sample).

    Returns:
        Sorted spans; a target followed only by ``<break>`` tokens is left out (it already
        is the continuation a decoder generates after the prompt before it).

    Raises:
        ValueError: a range that is empty, outside the example, overlapping another, or
            holding a special token (a target never crosses ``<break>``).
    """
    arr = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    spans = sorted((int(s), int(e)) for s, e in arr)
    try:
        _check_spans(tokens, spans, vocab, limit=False)
    except ValueError as err:
        raise ValueError(f"{where}: task target {err}") from None
    if spans and (tokens[spans[-1][1] :] == vocab.break_id).all():
        spans = spans[:-1]
    if len(spans) > vocab.num_sentinels:
        raise ValueError(f"{where}: {len(spans)} task targets but only {vocab.num_sentinels} sentinels")
    return spans


def _check_spans(tokens: np.ndarray, spans: Sequence[tuple[int, int]], vocab: Vocabulary, *,
                 limit: bool = True) -> None:
    if limit and len(spans) > vocab.num_sentinels:
        raise ValueError(f"{len(spans)} spans but only {vocab.num_sentinels} sentinels")
    allowed = np.asarray(vocab.is_text(tokens), dtype=bool) | np.asarray(vocab.is_image(tokens), dtype=bool)
    previous_end = 0
    for i, (start, end) in enumerate(spans):
        if not 0 <= start < end <= len(tokens):
            raise ValueError(f"span {i} [{start}, {end}) is empty or outside [0, {len(tokens)})")
        if start < previous_end:
            raise ValueError(f"span {i} [{start}, {end}) overlaps or precedes the previous span")
        if not allowed[start:end].all():
            bad = start + int(np.argmin(allowed[start:end]))
            name = vocab.token_name(int(tokens[bad]))
            raise ValueError(f"span {i} [{start}, {end}) contains {name} at position {bad}")
        previous_end = end


def mask_spans(
    tokens: np.ndarray,
    spans: Sequence[tuple[int, int]],
    vocab: Vocabulary,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Replace span ``i`` by ``<mask:i>`` and append ``<infill:i> span_i`` blocks.

    ``weights`` (per input token) travel with their tokens; each sentinel takes the weight of
    its span's first token.

    Raises:
        ValueError: spans out of order, overlapping, or containing a special token.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    _check_spans(tokens, spans, vocab)
    if not spans:
        return tokens.copy(), None if weights is None else np.asarray(weights, np.float32).copy()
    head: list[np.ndarray] = []
    tail: list[np.ndarray] = []
    w_head: list[np.ndarray] = []
    w_tail: list[np.ndarray] = []
    w = None if weights is None else np.asarray(weights, dtype=np.float32)
    cursor = 0
    for i, (start, end) in enumerate(spans):
        head += [tokens[cursor:start], np.array([vocab.mask_id(i)], dtype=np.int64)]
        tail += [np.array([vocab.infill_id(i)], dtype=np.int64), tokens[start:end]]
        if w is not None:
            w_head += [w[cursor:start], w[start : start + 1]]
            w_tail += [w[start : start + 1], w[start:end]]
        cursor = end
    head.append(tokens[cursor:])
    out = np.concatenate(head + tail)
    if w is None:
        return out, None
    w_head.append(w[cursor:])
    return out, np.concatenate(w_head + w_tail).astype(np.float32)


def cm3_transform(
    tokens: Sequence[int] | np.ndarray,
    vocab: Vocabulary,
    cfg: CM3Config,
    rng: np.random.Generator,
    *,
    weights: np.ndarray | None = None,
    targets: Any = None,
    where: str = "cm3_transform",
) -> CM3Result:
    """Apply the CM3 objective to one example (ids checked first; input must have no sentinels).

    Args:
        tokens: the untransformed example.
        vocab: the unified vocabulary.
        cfg: transform settings.
        rng: the example's generator (:func:`cm3_rng`).
        weights: per-token loss weights travelling with their tokens.
        targets: the task output's token ranges ``(k, 2)``; with probability
            ``cfg.target_prob`` exactly they are masked (:func:`infill_target_spans`).
        where: prefix of error messages.

    Raises:
        ValueError: an id out of range, an input that already holds a sentinel, weights of
            the wrong length or malformed targets; the message starts with ``where``.
    """
    arr = vocab.check_ids(tokens, where=where)
    if arr.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D token sequence, got shape {arr.shape}")
    sentinel = np.flatnonzero(np.asarray(vocab.is_sentinel(arr), dtype=bool))
    if sentinel.size:
        pos = int(sentinel[0])
        raise ValueError(
            f"{where}: input already contains the CM3 sentinel {vocab.token_name(int(arr[pos]))} "
            f"at position {pos}; the transform must run on untransformed examples"
        )
    if weights is not None and np.shape(weights) != arr.shape:
        raise ValueError(f"{where}: weights shape {np.shape(weights)} != tokens shape {arr.shape}")
    has_targets = targets is not None and np.size(targets) > 0
    if has_targets and cfg.target_prob > 0.0 and rng.uniform() < cfg.target_prob:
        spans = infill_target_spans(arr, targets, vocab, where=where)
    else:
        spans = sample_spans(arr, vocab, cfg, rng)
    out, out_w = mask_spans(arr, spans, vocab, weights)
    return CM3Result(out, spans, out_w)


def max_growth(cfg: CM3Config, vocab: Vocabulary) -> int:
    """The most tokens :func:`cm3_transform` can add to an example: two per span.

    Random spans number at most ``min(num_spans.max, num_sentinels)``; task targets (with
    ``target_prob > 0``) at most ``num_sentinels``.
    """
    k = vocab.num_sentinels
    spans = k if cfg.target_prob > 0 else min(cfg.num_spans.max if cfg.num_spans.max is not None else k, k)
    return 2 * spans


def whole_segment_counts(tokens: np.ndarray, spans: Sequence[tuple[int, int]], vocab: Vocabulary) -> tuple[int, int]:
    """How many ``spans`` of an untransformed example are whole text runs / whole images.

    A span is whole when the tokens on both sides are specials (or the example's ends);
    the trainer logs these counts, so a run reports its realised whole-segment rate.
    """
    arr = np.asarray(tokens)
    special = ~(np.asarray(vocab.is_text(arr), dtype=bool) | np.asarray(vocab.is_image(arr), dtype=bool))
    text = image = 0
    for start, end in spans:
        if (start == 0 or special[start - 1]) and (end == arr.size or special[end]):
            if bool(vocab.is_image(int(arr[start]))):
                image += 1
            else:
                text += 1
    return text, image


def cm3_inverse(tokens: Sequence[int] | np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Undo :func:`cm3_transform`: put every ``<infill:i>`` block back at ``<mask:i>``.

    Raises:
        ValueError: a mask without its infill block (or the reverse), duplicated or
            out-of-order sentinels, or a sentinel inside an infill block.
    """
    arr = vocab.check_ids(tokens, where="cm3_inverse")
    is_infill = np.isin(arr, vocab.infill_ids)
    first = int(np.argmax(is_infill)) if is_infill.any() else arr.size
    head, tail = arr[:first], arr[first:]
    blocks: dict[int, np.ndarray] = {}
    starts = np.flatnonzero(np.isin(tail, vocab.infill_ids))
    for n, s in enumerate(starts):
        index = int(tail[s]) - vocab.infill_id(0)
        end = int(starts[n + 1]) if n + 1 < starts.size else tail.size
        if index != n:
            raise ValueError(f"cm3_inverse: infill block {n} is <infill:{index}>, expected <infill:{n}>")
        body = tail[s + 1 : end]
        if np.asarray(vocab.is_sentinel(body), dtype=bool).any():
            raise ValueError(f"cm3_inverse: <infill:{index}> block contains a sentinel")
        blocks[index] = body
    mask_pos = np.flatnonzero(np.isin(head, vocab.mask_ids))
    found = [int(head[p]) - vocab.mask_id(0) for p in mask_pos]
    if found != list(range(len(blocks))):
        raise ValueError(
            f"cm3_inverse: masks {[f'<mask:{i}>' for i in found]} do not match "
            f"{len(blocks)} infill block(s)"
        )
    out: list[np.ndarray] = []
    cursor = 0
    for p, i in zip(mask_pos.tolist(), found, strict=True):
        out += [head[cursor:p], blocks[i]]
        cursor = p + 1
    out.append(head[cursor:])
    return np.concatenate(out) if out else head.copy()


def cm3_example(
    tokens: np.ndarray,
    vocab: Vocabulary,
    cfg: CM3Config,
    *,
    seed: int,
    epoch: int,
    index: int,
    weights: np.ndarray | None = None,
    targets: Any = None,
    where: str | None = None,
) -> CM3Result:
    """The transform of sample ``index`` in ``epoch``: deterministic in ``(seed, epoch, index)``."""
    rng = cm3_rng(seed, epoch, index)
    return cm3_transform(tokens, vocab, cfg, rng, weights=weights, targets=targets,
                         where=where or f"sample {index}")  # fmt: skip


class CM3Dataset:
    """Map-style wrapper applying the CM3 transform on the fly (metaseq's dataset wrapper).

    Args:
        base: indexable of examples: token arrays, or mappings with ``"tokens"`` (and
            optionally ``"loss_weights"``, ``"targets"``, ``"id"``).
        vocab: the unified vocabulary.
        cfg: transform settings.
        seed: base seed; sample ``i`` of epoch ``e`` uses :func:`cm3_rng` ``(seed, e, i)``.

    Items are dicts ``{"tokens", "loss_weights", "id", "index"}``; call :meth:`set_epoch`
    between epochs to draw new spans.
    """

    def __init__(self, base: Sequence[Any], vocab: Vocabulary, cfg: CM3Config | None = None, *, seed: int = 0) -> None:
        self.base = base
        self.vocab = vocab
        self.cfg = cfg or CM3Config()
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        if isinstance(item, dict):
            tokens, weights, ident = item["tokens"], item.get("loss_weights"), str(item.get("id", ""))
            targets = item.get("targets")
        else:
            tokens, weights, ident, targets = item, None, "", None
        where = f"sample {index}" + (f" (id {ident!r})" if ident else "")
        result = cm3_example(
            np.asarray(tokens), self.vocab, self.cfg, seed=self.seed, epoch=self.epoch,
            index=index, weights=weights, targets=targets, where=where,
        )
        return {"tokens": result.tokens, "loss_weights": result.weights, "id": ident, "index": index}
