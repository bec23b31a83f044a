"""The engine: cached == uncached, image spans exact, stops, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cm3leon.core.model import KVCache
from cm3leon.decoding.engine import SpanSpec, decode
from cm3leon.decoding.pipeline import build_pipelines
from tests.decoding._helpers import random_model, setup

VOCAB, _ = setup()
MODEL = random_model(VOCAB)


def _text_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return VOCAB.text_offset + rng.integers(0, VOCAB.text_size, n)


def _streams(lengths: list[int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """cond prompts ``<eos> text <break>`` of the given lengths and their uncond ``<eos> <mask:0> <break>``."""
    rng = np.random.default_rng(seed)
    cond = [np.concatenate([[VOCAB.eos_id], _text_ids(rng, n), [VOCAB.break_id]]) for n in lengths]
    uncond = [np.array([VOCAB.eos_id, VOCAB.mask_id(0), VOCAB.break_id])] * len(lengths)
    return cond, uncond


GREEDY = build_pipelines([{"selector": {"name": "greedy"}}], where="greedy")
CFG_GREEDY = build_pipelines(
    [{"guidance": {"name": "cfg", "options": {"scale": 3.0}}, "selector": {"name": "greedy"}}], where="cfg"
)


# ------------------------------------------------------- cached == uncached
def test_cached_equals_uncached_free_greedy_with_left_padding() -> None:
    cond, _ = _streams([3, 9, 14])
    kw = dict(stream_names=("cond",), num_candidates=1)
    cached = decode(MODEL, [cond], SpanSpec.free(25, stop_ids=()), GREEDY, **kw)
    full = decode(MODEL, [cond], SpanSpec.free(25, stop_ids=()), GREEDY, use_cache=False, **kw)
    assert torch.equal(cached.tokens, full.tokens) and cached.tokens.shape == (3, 1, 25)
    assert len(set(cached.tokens[:, 0].flatten().tolist())) > 5  # not a degenerate repetition


def test_cached_equals_uncached_cfg_image_span_with_candidates_and_two_pipelines() -> None:
    cond, uncond = _streams([2, 11])
    pipes = build_pipelines(
        [{"guidance": {"name": "cfg", "options": {"scale": 2.5}}, "selector": {"name": "greedy"}},
         {"guidance": {"name": "cdk", "options": {"k": 3, "alpha": 0.3}}, "selector": {"name": "greedy"}}],
        where="mix",
    )  # fmt: skip
    span = SpanSpec.image(VOCAB, 12)
    kw = dict(stream_names=("cond", "uncond"), num_candidates=4)
    cached = decode(MODEL, [cond, uncond], span, pipes, **kw)
    full = decode(MODEL, [cond, uncond], span, pipes, use_cache=False, **kw)
    assert torch.equal(cached.tokens, full.tokens)
    assert cached.pipeline == [0, 0, 1, 1]
    assert torch.equal(cached.tokens[:, 0], cached.tokens[:, 1])  # greedy: same pipeline, same tokens
    assert not torch.equal(cached.tokens[:, 0], cached.tokens[:, 2])  # CFG and CD-K differ


def test_cached_equals_uncached_text_span_with_stops() -> None:
    cond, _ = _streams([4, 7, 1], seed=3)
    pipes = build_pipelines([{"processors": [{"name": "temperature", "options": {"temperature": 2.0}}]}], where="s")
    kw = dict(stream_names=("cond",), num_candidates=5)
    a = decode(MODEL, [cond], SpanSpec.text(VOCAB, 20), pipes, generator=torch.Generator().manual_seed(0), **kw)
    b = decode(MODEL, [cond], SpanSpec.text(VOCAB, 20), pipes, generator=torch.Generator().manual_seed(0),
               use_cache=False, **kw)  # fmt: skip
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths) and torch.equal(a.stop, b.stop)


def test_batching_and_padding_do_not_change_greedy_outputs() -> None:
    cond, uncond = _streams([1, 6, 13], seed=5)
    span = SpanSpec.image(VOCAB, 9)
    together = decode(MODEL, [cond, uncond], span, CFG_GREEDY, stream_names=("cond", "uncond"))
    for p in range(3):
        alone = decode(MODEL, [[cond[p]], [uncond[p]]], span, CFG_GREEDY, stream_names=("cond", "uncond"))
        assert torch.equal(alone.tokens[0], together.tokens[p])


def test_logits_rows_equal_a_slice_of_the_full_projection() -> None:
    ids = torch.as_tensor(_streams([6])[0][0])[None]
    full_cache, part_cache = MODEL.new_cache(1, 16), MODEL.new_cache(1, 16)
    full = MODEL.forward_cached(ids, full_cache)
    rows = slice(VOCAB.image_offset, VOCAB.size)
    part = MODEL.forward_cached(ids, part_cache, logits_rows=rows)
    assert part.shape == (1, ids.shape[1], VOCAB.image_size)
    torch.testing.assert_close(part, full[..., rows], rtol=0, atol=1e-12)


# -------------------------------------------------------------- image spans
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num_tokens=st.integers(1, 12),
    num_candidates=st.integers(1, 3),
    lengths=st.lists(st.integers(0, 10), min_size=1, max_size=3),
    guidance=st.sampled_from([("none", {}), ("cfg", {"scale": 4.0}), ("cdk", {"k": 2, "alpha": 0.5}),
                              ("dual_cfg", {})]),  # fmt: skip
    temperature=st.floats(0.2, 3.0),
    top_k=st.one_of(st.none(), st.integers(1, 20)),
    top_p=st.one_of(st.none(), st.floats(0.05, 1.0)),
    seed=st.integers(0, 2**16),
)
def test_image_spans_have_exactly_the_tokens_and_only_image_ids(
    num_tokens, num_candidates, lengths, guidance, temperature, top_k, top_p, seed
) -> None:
    processors = [{"name": "temperature", "options": {"temperature": temperature}}]
    processors += [{"name": "top_k", "options": {"k": top_k}}] if top_k else []
    processors += [{"name": "top_p", "options": {"p": top_p}}] if top_p else []
    pipes = build_pipelines([{"guidance": {"name": guidance[0], "options": guidance[1]}, "processors": processors}],
                            where="prop")  # fmt: skip
    cond, uncond = _streams(lengths, seed=seed)
    names = ("cond", "no_text", "uncond")
    out = decode(MODEL, [cond, uncond, uncond], SpanSpec.image(VOCAB, num_tokens), pipes, stream_names=names,
                 num_candidates=num_candidates, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    assert out.tokens.shape == (len(lengths), num_candidates, num_tokens)
    assert (out.lengths == num_tokens).all() and (out.stop == -1).all()
    assert bool(VOCAB.is_image(out.tokens).all())
    assert out.steps == num_tokens - 1  # the last token needs no model step


# ------------------------------------------------------------ text stopping
class ScriptedModel(torch.nn.Module):
    """Prefers ``script[row][step]`` at every step (rows after repeat_interleave)."""

    def __init__(self, script: list[list[int]], vocab_size: int) -> None:
        super().__init__()
        self.script, self.calls = script, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"vocab_size": vocab_size, "max_seq_len": 64})()

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache.allocate(n_layers=1, batch_size=batch_size, n_heads=1, head_dim=1, max_len=max_len,
                                dtype=torch.float32, device="cpu")  # fmt: skip

    def forward_cached(self, ids, cache, *, attention_mask=None, last_only=False, logits_rows=None):
        step = self.calls
        self.calls += 1
        cache.length += ids.shape[1]
        logits = torch.zeros(ids.shape[0], 1, self.config.vocab_size)
        for b in range(ids.shape[0]):
            row = self.script[b % len(self.script)]
            choice = row[min(step, len(row) - 1)]
            for rank, token in enumerate(choice if isinstance(choice, tuple) else (choice,)):
                logits[b, 0, token] = 10.0 - rank  # a tuple: first choice, then fall-backs
        return logits if logits_rows is None else logits[..., logits_rows]


def test_text_spans_stop_per_candidate_at_break_eos_infill_or_length() -> None:
    t = VOCAB.text_offset
    script = [
        [t + 1, t + 2, VOCAB.break_id, t + 9],
        [t + 3, VOCAB.eos_id],
        [VOCAB.infill_id(1)],
        [(VOCAB.pad_id, t + 4), (VOCAB.mask_id(0), t + 4), t + 5, t + 6, t + 7, t + 8, t + 9],
    ]
    model = ScriptedModel(script, VOCAB.size)
    out = decode(model, [[np.array([1, 2])] * 4], SpanSpec.text(VOCAB, 5), GREEDY, stream_names=("cond",))
    assert out.candidate(0, 0) == [t + 1, t + 2] and out.stop[0, 0] == VOCAB.break_id
    assert out.candidate(1, 0) == [t + 3] and out.stop[1, 0] == VOCAB.eos_id
    assert out.candidate(2, 0) == [] and out.stop[2, 0] == VOCAB.infill_id(1)
    # steps 0 and 1 prefer pad/<mask:0>, which text spans never emit: the runner-up instead
    assert out.candidate(3, 0) == [t + 4, t + 4, t + 5, t + 6, t + 7] and out.stop[3, 0] == -1
    assert out.tokens[0, 0, 2:].tolist() == [VOCAB.pad_id] * 3


def test_loop_ends_when_every_candidate_stopped() -> None:
    model = ScriptedModel([[VOCAB.text_offset, VOCAB.eos_id]], VOCAB.size)
    out = decode(model, [[np.array([1])]], SpanSpec.text(VOCAB, 30), GREEDY, stream_names=("cond",),
                 num_candidates=3)  # fmt: skip
    assert out.steps == 1 and out.lengths.tolist() == [[1, 1, 1]]


# ------------------------------------------------------------ determinism
def test_sampling_is_deterministic_for_a_seed() -> None:
    cond, uncond = _streams([4, 8])
    pipes = build_pipelines([{"guidance": {"name": "cfg"}, "processors": [{"name": "top_p", "options": {"p": 0.95}}]}],
                            where="s")  # fmt: skip
    run = lambda seed: decode(MODEL, [cond, uncond], SpanSpec.image(VOCAB, 16), pipes,  # noqa: E731
                              stream_names=("cond", "uncond"), num_candidates=4,
                              generator=torch.Generator().manual_seed(seed)).tokens  # fmt: skip
    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


# --------------------------------------------------------------- bad input
def test_prompt_longer_than_the_context_is_a_clear_error() -> None:
    long = np.full(MODEL.config.max_seq_len - 5, VOCAB.text_offset)
    with pytest.raises(ValueError, match=r"prompt 'big' \(cond stream\) is too long for the model's context: "
                                         r"251 prompt tokens \+ 10 to generate = 261 > max_seq_len 256"):  # fmt: skip
        decode(MODEL, [[long]], SpanSpec.image(VOCAB, 9), GREEDY, stream_names=("cond",), prompt_ids=["big"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_candidates": 0}, "num_candidates must be a positive integer"),
        ({"stream_names": ("uncond",)}, r"pipeline 'cfg/greedy' needs stream\(s\) \['cond'\]"),
    ],
)
def test_bad_decode_arguments(kwargs: dict, message: str) -> None:
    args = {"stream_names": ("cond", "uncond"), **kwargs}
    streams = [[np.array([1, 2])]] * len(args["stream_names"])
    with pytest.raises(ValueError, match=message):
        decode(MODEL, streams, SpanSpec.image(VOCAB, 3), CFG_GREEDY, **args)
    with pytest.raises(ValueError, match=r"prompt '0' \(cond stream\) is empty"):
        decode(MODEL, [[np.array([], dtype=np.int64)]], SpanSpec.image(VOCAB, 3), GREEDY, stream_names=("cond",))
