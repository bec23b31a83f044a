"""The unconditional streams guidance decodes with occur in training (issue: whole-segment masks).

CFG (§3.1, eq. 1) replaces the caption by ``<mask:0>``; editing and image-conditioned
guidance replace an image by ``<break> <mask:k> <break>``.  The paper needs no extra
fine-tuning for CFG because CM3 training shows the model such inputs.  These tests take the
decoder's real streams (:class:`PromptEncoder`), read which whole-segment masks they use,
and measure on the real CM3 transform output, under every shipped pretraining / SFT config
and the demo's, how often exactly those masks occur.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.config import load_config
from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.objective import CM3Config, SpanCount, cm3_example
from cm3leon.core.train.config import CM3Section, TrainConfig
from cm3leon.core.train.data import build_cm3_config
from cm3leon.decoding.prompts import Prompt, PromptEncoder
from cm3leon.eval.demo.config import DemoConfig
from tests.decoding._helpers import colour_image, setup

ROOT = Path(__file__).resolve().parents[2]
VOCAB, DT = setup()
N = 1500  # examples per config: the binomial standard error of a rate 0.25 is 0.011


def _is_whole(ids: np.ndarray, p: int) -> bool:
    """A mask with specials on both sides (``<eos>``/``<break>`` before, ``<break>`` after)."""
    after = int(ids[p + 1]) if p + 1 < ids.size else -1
    return int(ids[p - 1]) in (VOCAB.eos_id, VOCAB.break_id) and after == VOCAB.break_id


def whole_masks(ids: np.ndarray) -> Counter[str]:
    """Masks of a *training* example that replaced a whole run: ``"text"`` / ``"image"`` -> count.

    The modality is read from the mask's ``<infill:i>`` block; a whole image is exactly one
    image's worth of codes.
    """
    ids = np.asarray(ids)
    out: Counter[str] = Counter()
    infill = np.flatnonzero(np.isin(ids, VOCAB.infill_ids)).tolist()
    bodies = {
        int(ids[s]) - VOCAB.infill_id(0): ids[s + 1 : e]
        for s, e in zip(infill, [*infill[1:], ids.size], strict=True)
    }
    for p in np.flatnonzero(np.isin(ids, VOCAB.mask_ids)):
        body = bodies[int(ids[p]) - VOCAB.mask_id(0)]
        if not _is_whole(ids, p):
            continue
        if np.asarray(VOCAB.is_text(body), dtype=bool).all():
            out["text"] += 1
        elif (
            np.asarray(VOCAB.is_image(body), dtype=bool).all() and body.size == DT.tokens_per_image
        ):
            out["image"] += 1
    return out


def test_the_decoders_unconditional_streams_are_whole_segment_masks() -> None:
    """The streams the training-side measure below looks for are the ones decoding builds."""
    enc = PromptEncoder(DT)
    t2i = enc.encode(Prompt.text_to_image("a red cube"), ["uncond"]).streams["uncond"]
    assert t2i.tolist() == [VOCAB.eos_id, VOCAB.mask_id(0), VOCAB.break_id]  # the caption, masked
    red = colour_image((255, 0, 0))
    cond, no_image = (
        enc.encode(Prompt.edit(red, "make it blue"), [s]).streams[s] for s in ("cond", "no_image")
    )
    masks = np.flatnonzero(np.isin(no_image, VOCAB.mask_ids))
    assert masks.size == 1 and _is_whole(no_image, int(masks[0]))
    # ... and it stands where the whole image was: <break> c_1..c_N <break> -> <break> <mask:0> <break>
    assert cond.size - no_image.size == DT.tokens_per_image - 1


def _examples(rng: np.random.Generator) -> list[np.ndarray]:
    """Captioned images, retrieval-augmented ones (Figure 9) and two-image edit examples."""
    words = ["red", "blue", "cube", "ball", "on", "the", "left", "of", "a", "green", "small", "big"]
    n_img = DT.tokens_per_image

    def doc(i: int, images: int = 1) -> Document:
        caption = " ".join(rng.choice(words, size=int(rng.integers(3, 9))))
        segs: list[object] = [caption]
        for k in range(images):  # an edit: image, instruction, edited image
            if k:
                segs.append(" ".join(rng.choice(words, size=3)))
            segs.append(ImageSegment(codes=tuple(int(c) for c in rng.integers(0, 16, n_img))))
        return Document.of(*segs, id=str(i))

    out = []
    for i in range(N):
        kind = i % 3
        if kind == 0:
            out.append(DT.encode_example(doc(i)))
        elif kind == 1:
            out.append(DT.encode_example(doc(i), [doc(-1), doc(-2)]))
        else:
            out.append(DT.encode_example(doc(i, images=2)))
    return out


def _shipped() -> list[tuple[str, CM3Config]]:
    cfgs = []
    for path in sorted((ROOT / "configs").glob("pretrain/*.yaml")) + sorted(
        (ROOT / "configs").glob("sft/*.yaml")
    ):
        train = load_config(TrainConfig, path)
        cfg = build_cm3_config(train.data.cm3)
        assert cfg is not None, f"{path}: the CM3 objective is off"
        cfgs.append((str(path.relative_to(ROOT)), cfg))
    demo = DemoConfig()
    for stage in ("pretrain", "sft"):
        section = CM3Section(
            **getattr(demo, stage)["data"].get("cm3", {})
        )  # the demo adds streams at run time
        cfgs.append((f"demo.{stage}", build_cm3_config(section)))
    return cfgs


SHIPPED = _shipped()


@pytest.mark.parametrize(("name", "cfg"), SHIPPED, ids=[n for n, _ in SHIPPED])
def test_shipped_configs_train_the_unconditional_streams(name: str, cfg: CM3Config) -> None:
    examples = _examples(np.random.default_rng(0))
    with_text = with_image = t2i_uncond = 0
    for index, ids in enumerate(examples):
        out = cm3_example(ids, VOCAB, cfg, seed=5, epoch=0, index=index).tokens
        found = whole_masks(out)
        with_text += found["text"] > 0
        with_image += found["image"] > 0
        # Exactly the text-to-image CFG stream: <eos> <mask:i> <break> then the whole image.
        head = out[: 3 + DT.tokens_per_image]
        t2i_uncond += (
            index % 3 == 0
            and head[0] == VOCAB.eos_id
            and head[1] in VOCAB.mask_ids
            and head[2] == VOCAB.break_id
            and bool(np.asarray(VOCAB.is_image(head[3:]), bool).all())
        )
    rate_text, rate_image = with_text / N, with_image / N
    for rate, p, what in (
        (rate_text, cfg.whole_text_prob, "caption"),
        (rate_image, cfg.whole_image_prob, "image"),
    ):
        se = (p * (1 - p) / N) ** 0.5
        assert p >= 0.05, (
            f"{name}: whole-{what} masking is off (p = {p}); the decoder's streams never occur"
        )
        # Random spans add a few whole segments of these short runs; never fewer than p.
        assert rate >= p - 4 * se, (
            f"{name}: whole {what} masked in {rate:.3f} of examples, configured {p}"
        )
        assert rate <= p + 0.1, (
            f"{name}: whole {what} masked in {rate:.3f} of examples, configured {p}"
        )
    # The exact CFG prefix of a caption-image pair: at least the whole-caption rate times the
    # chance that it is the only span (Poisson(1) clamped to >= 1: 2/e) -- minus 4 se.
    pairs = N // 3
    expected = cfg.whole_text_prob * 0.5 * 2 / np.e
    assert t2i_uncond / pairs >= expected - 4 * (expected / pairs) ** 0.5, (
        name,
        t2i_uncond / pairs,
    )


#: SHA-256 of ``repr`` of the spans of the 600 examples below (seed 3), drawn by
#: ``cm3leon.core.objective`` as it was before the whole-segment option (commit 3166ff8).
PRE_OPTION_SPANS_SHA256 = "a7c749c323e6b6cc569ef11c89d72d16622ae677cc45cea2d8507efcdbeaa90c"


def test_with_the_option_off_cm3_draws_the_spans_it_always_drew() -> None:
    """Off (the default) consumes no randomness: every existing span draw is unchanged."""
    examples = _examples(np.random.default_rng(1))[:600]
    for cfg in (CM3Config(), CM3Config(whole_text_prob=0.0, whole_image_prob=0.0)):
        spans = [
            cm3_example(ids, VOCAB, cfg, seed=3, epoch=0, index=i).spans
            for i, ids in enumerate(examples)
        ]
        assert hashlib.sha256(repr(spans).encode()).hexdigest() == PRE_OPTION_SPANS_SHA256


def test_whole_segment_spans_are_whole_runs_and_count_towards_the_spans() -> None:
    ids = DT.encode_example(
        Document.of("a red cube", ImageSegment(codes=tuple(range(DT.tokens_per_image))))
    )
    two = CM3Config(
        num_spans=SpanCount(kind="fixed", value=2), whole_text_prob=1.0, whole_image_prob=1.0
    )
    one = CM3Config(
        num_spans=SpanCount(kind="fixed", value=1), whole_text_prob=1.0, whole_image_prob=1.0
    )
    for index in range(50):
        res = cm3_example(ids, VOCAB, two, seed=0, epoch=0, index=index)
        assert whole_masks(res.tokens) == Counter({"text": 1, "image": 1}), res.tokens.tolist()
        assert res.spans == [(1, 11), (12, 12 + DT.tokens_per_image)]  # "a red cube", the image
        res = cm3_example(ids, VOCAB, one, seed=0, epoch=0, index=index)
        assert whole_masks(res.tokens) == Counter({"text": 1}) and len(res.spans) == 1


def test_whole_segment_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="whole_text_prob"):
        CM3Config(whole_text_prob=1.5)
    with pytest.raises(ValueError, match="whole_image_prob"):
        CM3Config(whole_image_prob=-0.1)
