"""Greedy generation equals Hugging Face ``generate`` on the converted OPT model (same weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from cm3leon.core.model.hf_opt import to_hf_opt  # noqa: E402
from cm3leon.decoding.engine import SpanSpec, decode  # noqa: E402
from cm3leon.decoding.pipeline import build_pipelines  # noqa: E402
from tests.decoding._helpers import random_model, setup  # noqa: E402

VOCAB, _ = setup()
GREEDY = build_pipelines([{"selector": {"name": "greedy"}}], where="greedy")


@pytest.fixture(scope="module")
def models():
    model = random_model(VOCAB, seed=4)
    return model, to_hf_opt(model)


def _prompts(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[VOCAB.eos_id], VOCAB.text_offset + rng.integers(0, VOCAB.text_size, n)]) for n in lengths]


def _hf_left_pad(prompts: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


def _until_eos(row: list[int]) -> list[int]:
    return row[: row.index(VOCAB.eos_id) + 1] if VOCAB.eos_id in row else row


@pytest.mark.parametrize("lengths", [[12], [3, 17, 9]])
def test_greedy_equals_hf_generate(models, lengths: list[int]) -> None:
    model, hf = models
    prompts = _prompts(lengths)
    ours = decode(model, [prompts], SpanSpec.free(30), GREEDY, stream_names=("cond",))
    ids, mask = _hf_left_pad(prompts)
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=30, pad_token_id=0)
    for p in range(len(prompts)):
        mine = ours.candidate(p, 0) + ([int(ours.stop[p, 0])] if ours.stop[p, 0] >= 0 else [])
        assert mine == _until_eos(theirs[p, ids.shape[1]:].tolist())
    assert sum(len(ours.candidate(p, 0)) for p in range(len(prompts))) > 10  # a real comparison


class ImageBlockOnly(LogitsProcessor):
    """What the engine's image span does: only the image block may be chosen."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        out[:, VOCAB.image_offset:] = scores[:, VOCAB.image_offset:]
        return out


@pytest.mark.parametrize("scale", [1.5, 3.0])
def test_cfg_greedy_image_span_equals_hf_generate_with_guidance_scale(models, scale: float) -> None:
    model, hf = models
    cond = np.concatenate([_prompts([10], seed=2)[0], [VOCAB.break_id]])
    uncond = np.array([VOCAB.eos_id, VOCAB.mask_id(0), VOCAB.break_id])
    pipes = build_pipelines(
        [{"guidance": {"name": "cfg", "options": {"scale": scale}}, "selector": {"name": "greedy"}}], where="cfg"
    )
    n = VOCAB.image_size * 2  # long enough for the two streams to matter
    n = min(n, model.config.max_seq_len - len(cond) - 1)
    ours = decode(model, [[cond], [uncond]], SpanSpec.image(VOCAB, n), pipes, stream_names=("cond", "uncond"))
    with torch.no_grad():
        theirs = hf.generate(
            torch.as_tensor(cond)[None], attention_mask=torch.ones(1, len(cond), dtype=torch.long),
            negative_prompt_ids=torch.as_tensor(uncond)[None], guidance_scale=scale, do_sample=False,
            max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
            logits_processor=LogitsProcessorList([ImageBlockOnly()]),
        )  # fmt: skip
    assert ours.candidate(0, 0) == theirs[0, len(cond):].tolist()
    assert len(set(ours.candidate(0, 0))) > 3
