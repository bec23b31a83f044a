"""Logits processors and selectors on hand-made logits (eq. 2, eq. 3, §4.1) and vs transformers."""

from __future__ import annotations

import math

import pytest
import torch

from cm3leon.decoding.options import (
    CDKOptions,
    CFGOptions,
    DecodingOptionsError,
    DualCFGOptions,
    TemperatureOptions,
    TopKOptions,
    TopPOptions,
)
from cm3leon.decoding.processors import (
    ClassifierFreeGuidance,
    ContrastiveTopK,
    DecodeState,
    DualGuidance,
    Greedy,
    NoGuidance,
    Sample,
    Temperature,
    TopK,
    TopP,
    cdk_candidates,
)

STATE = DecodeState(step=0, generated=torch.zeros(1, 0, dtype=torch.long))
NEG = float("-inf")


def _logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------- CFG
def test_cfg_is_equation_2_on_hand_made_logits() -> None:
    cond = _logits([2.0, 0.0, -1.0], [0.5, 0.5, 3.0])
    uncond = _logits([1.0, 1.0, 1.0], [0.0, 2.0, 1.0])
    out = ClassifierFreeGuidance(CFGOptions(scale=3.0))(torch.stack([cond, uncond]), STATE)
    # u + 3 (c - u), written out by hand
    expected = _logits([1 + 3 * 1, 1 + 3 * -1, 1 + 3 * -2], [0 + 3 * 0.5, 2 + 3 * -1.5, 1 + 3 * 2])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_cfg_scale_one_and_zero_select_a_stream() -> None:
    logits = torch.randn(2, 4, 7, dtype=torch.float64)
    torch.testing.assert_close(ClassifierFreeGuidance(CFGOptions(1.0))(logits, STATE), logits[0])
    torch.testing.assert_close(ClassifierFreeGuidance(CFGOptions(0.0))(logits, STATE), logits[1])


def test_cfg_keeps_removed_tokens_removed() -> None:
    logits = torch.tensor([[[NEG, 1.0, 2.0]], [[NEG, 0.0, 0.5]]])
    out = ClassifierFreeGuidance(CFGOptions(3.0))(logits, STATE)
    assert out[0, 0] == NEG and torch.isfinite(out[0, 1:]).all()


@pytest.mark.parametrize("scale", [1.5, 3.0, 7.5])
def test_cfg_matches_transformers_after_log_softmax(scale: float) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.generation.logits_process import (
        ClassifierFreeGuidanceLogitsProcessor,
        UnbatchedClassifierFreeGuidanceLogitsProcessor,
    )

    g = torch.Generator().manual_seed(0)
    cond = torch.randn(3, 50, generator=g, dtype=torch.float64) * 3
    uncond = torch.randn(3, 50, generator=g, dtype=torch.float64) * 3
    ours = torch.log_softmax(ClassifierFreeGuidance(CFGOptions(scale))(torch.stack([cond, uncond]), STATE), -1)

    # Batched (MusicGen) processor: cond rows then uncond rows, raw logits mixed.
    batched = ClassifierFreeGuidanceLogitsProcessor(scale)(torch.zeros(3, 1, dtype=torch.long), torch.cat([cond, uncond]))
    torch.testing.assert_close(ours, torch.log_softmax(batched, -1), rtol=0, atol=1e-10)

    # Unbatched processor: log-softmaxes both and asks a model for the uncond logits.
    from transformers.modeling_outputs import CausalLMOutputWithPast

    class UncondModel(torch.nn.Module):
        def forward(self, input_ids, **kwargs):  # (B, t) -> logits (B, t, V)
            return CausalLMOutputWithPast(logits=uncond[:, None, :].expand(-1, input_ids.shape[1], -1))

    unbatched = UnbatchedClassifierFreeGuidanceLogitsProcessor(scale, UncondModel())
    theirs = unbatched(torch.zeros(3, 1, dtype=torch.long), cond.clone())
    torch.testing.assert_close(ours, torch.log_softmax(theirs, -1), rtol=0, atol=1e-10)
    assert transformers.__version__


# -------------------------------------------------------------------- CD-K
def test_cdk_candidate_set_follows_equation_3() -> None:
    p = torch.tensor([[0.40, 0.25, 0.20, 0.10, 0.05]], dtype=torch.float64)
    logp = p.log()
    # k=1, alpha=0.5: p >= 0.5 * 0.40 = 0.20 -> {0, 1, 2}
    assert cdk_candidates(logp, 1, 0.5).tolist() == [[True, True, True, False, False]]
    # k=2, alpha=0.5: p >= 0.5 * 0.25 = 0.125 -> {0, 1, 2}; alpha=0.4: >= 0.10 -> {0..3}
    assert cdk_candidates(logp, 2, 0.5).tolist() == [[True, True, True, False, False]]
    assert cdk_candidates(logp, 2, 0.4).tolist() == [[True, True, True, True, False]]
    # k=4, alpha=0.5: >= 0.05 -> everything
    assert cdk_candidates(logp, 4, 0.5).all()
    # k beyond the vocabulary is clamped to the smallest probability
    assert cdk_candidates(logp, 99, 1.0).all()


def test_plain_cd_collapses_to_greedy_and_cdk_does_not() -> None:
    # A peaked expert: plain CD (k=1) keeps the argmax alone -> its choice is greedy.
    expert = torch.tensor([[0.90, 0.04, 0.03, 0.02, 0.01]], dtype=torch.float64)
    amateur = torch.tensor([[0.97, 0.005, 0.005, 0.01, 0.01]], dtype=torch.float64)
    logits = torch.stack([expert.log(), amateur.log()])  # (2, 1, 5)
    cd = ContrastiveTopK(CDKOptions(k=1, alpha=0.1))(logits, STATE)
    assert torch.isfinite(cd).tolist() == [[True, False, False, False, False]]
    assert Greedy()(cd, None).item() == expert.argmax().item() == 0
    # CD-K with k=3: threshold 0.1 * 0.03 -> all five tokens; the score prefers what the
    # text-conditioned expert likes much more than the amateur (token 1: log 0.04/0.005).
    cdk = ContrastiveTopK(CDKOptions(k=3, alpha=0.1))(logits, STATE)
    assert torch.isfinite(cdk).all()
    expected = expert.log() - amateur.log()
    torch.testing.assert_close(cdk, expected, rtol=0, atol=1e-12)
    assert Greedy()(cdk, None).item() == 1


def test_cdk_score_is_log_ratio_of_normalised_streams() -> None:
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 4, 30, generator=g, dtype=torch.float64)
    out = ContrastiveTopK(CDKOptions(k=5, alpha=0.5))(torch.stack([cond, uncond]), STATE)
    le, la = torch.log_softmax(cond, -1), torch.log_softmax(uncond, -1)
    kth = le.topk(5, -1).values[:, -1:]
    keep = le.exp() >= 0.5 * kth.exp() - 1e-15
    assert keep.sum(-1).min() >= 5  # the top k always qualify (alpha <= 1)
    torch.testing.assert_close(out, torch.where(keep, le - la, NEG), rtol=0, atol=1e-12)


def test_cdk_ignores_removed_tokens() -> None:
    logits = torch.tensor([[[NEG, 5.0, 1.0, 0.0]], [[NEG, 1.0, 1.0, 1.0]]])
    out = ContrastiveTopK(CDKOptions(k=2, alpha=1.0))(logits, STATE)
    assert out[0, 0] == NEG and torch.isfinite(out[0, 1:3]).all() and out[0, 3] == NEG


# -------------------------------------------------------------------- dual
def test_dual_guidance_formula_and_reductions() -> None:
    full, image_only, uncond = _logits([3.0, 0.0]), _logits([1.0, 1.0]), _logits([0.0, 2.0])
    out = DualGuidance(DualCFGOptions(image_scale=1.5, text_scale=7.5))(torch.stack([full, image_only, uncond]), STATE)
    # u + 1.5 (i - u) + 7.5 (c - i)
    expected = _logits([0 + 1.5 * 1 + 7.5 * 2, 2 + 1.5 * -1 + 7.5 * -1])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # equal scales: CFG on (full, uncond); no image conditions (i == u): CFG with the text scale
    g = torch.Generator().manual_seed(2)
    c, i, u = torch.randn(3, 2, 9, generator=g, dtype=torch.float64)
    same = DualGuidance(DualCFGOptions(4.0, 4.0))(torch.stack([c, i, u]), STATE)
    torch.testing.assert_close(same, ClassifierFreeGuidance(CFGOptions(4.0))(torch.stack([c, u]), STATE))
    no_image = DualGuidance(DualCFGOptions(1.5, 7.5))(torch.stack([c, u, u]), STATE)
    torch.testing.assert_close(no_image, ClassifierFreeGuidance(CFGOptions(7.5))(torch.stack([c, u]), STATE))


def test_no_guidance_takes_the_conditional_stream() -> None:
    logits = torch.randn(2, 3, 5)
    assert torch.equal(NoGuidance()(logits, STATE), logits[0])


# -------------------------------------------------------------- processors
def test_temperature_top_k_top_p_on_hand_made_rows() -> None:
    row = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(Temperature(TemperatureOptions(0.5))(row, STATE), row * 2)
    assert torch.isfinite(TopK(TopKOptions(2))(row, STATE)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(TopK(TopKOptions(10))(row, STATE)).all()
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    keep = lambda p: torch.isfinite(TopP(TopPOptions(p))(probs, STATE)).tolist()[0]  # noqa: E731
    assert keep(0.5) == [True, False, False, False]  # 0.5 reaches p with the first token
    assert keep(0.6) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]
    assert torch.isfinite(TopP(TopPOptions(0.1, min_keep=2))(probs, STATE)).sum() == 2


def test_top_p_unsorted_rows() -> None:
    logits = torch.tensor([[0.1, 0.3, 0.6], [0.6, 0.1, 0.3]]).log()
    kept = torch.isfinite(TopP(TopPOptions(0.7))(logits, STATE))
    assert kept.tolist() == [[False, True, True], [True, False, True]]


def test_top_p_keeps_ties_with_the_last_kept_score() -> None:
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0], [3.0, 1.0, 1.0, 1.0]])
    kept = torch.isfinite(TopP(TopPOptions(0.4))(logits, STATE))
    assert kept.tolist() == [[True, True, True, False], [True, False, False, False]]
    wide = torch.randn(3, 5000, dtype=torch.float64)  # the numpy sort path agrees with torch's
    from cm3leon.decoding.processors import sort_descending

    assert torch.equal(sort_descending(wide), wide.sort(dim=-1, descending=True).values)


def test_sampling_is_deterministic_for_a_seed_and_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]])).expand(20000, -1)
    a = Sample()(logits, torch.Generator().manual_seed(3))
    b = Sample()(logits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    freq = torch.bincount(a, minlength=4).double() / a.numel()
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64), atol=0.02, rtol=0)


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CFGOptions(scale="3"), r"cfg\.scale must be a real number, got '3' \(str\)"),
        (lambda: CFGOptions(scale=True), r"cfg\.scale must be a real number"),
        (lambda: CFGOptions(scale=-1.0), r"cfg\.scale must be >= 0"),
        (lambda: CFGOptions(scale=math.nan), r"cfg\.scale must be finite"),
        (lambda: CDKOptions(k=2.5), r"cdk\.k must be an integer"),
        (lambda: CDKOptions(alpha=0.0), r"cdk\.alpha must be > 0"),
        (lambda: CDKOptions(alpha=1.5), r"cdk\.alpha must be <= 1"),
        (lambda: TopPOptions(p=0), r"top_p\.p must be > 0"),
        (lambda: TemperatureOptions(0), r"temperature\.temperature must be > 0"),
        (lambda: DualCFGOptions(text_scale=None), r"dual_cfg\.text_scale must be a real number"),
    ],
)
def test_bad_option_values_are_clear_errors(build, message: str) -> None:
    with pytest.raises(DecodingOptionsError, match=message):
        build()
