"""Cached incremental decoding equals the full forward pass.

Tolerances: float64 agrees to 1e-12 (the cached path multiplies different-shaped
matrices, so results are not bitwise identical); float32 to 2e-5 absolute on logits
of order 10.
"""

from __future__ import annotations

import pytest
import torch

from cm3leon.core.model import CM3LeonTransformer, KVCache
from tests.core.model._helpers import VOCAB, left_pad_mask, random_ids, random_model

TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _decode(model: CM3LeonTransformer, ids: torch.Tensor, prefill: int, mask: torch.Tensor | None = None,
            max_len: int = 40) -> tuple[torch.Tensor, KVCache]:
    """Prefill ``prefill`` tokens, then feed the rest one at a time."""
    cache = model.new_cache(ids.shape[0], max_len)
    m = None if mask is None else mask[:, :prefill]
    out = [model.forward_cached(ids[:, :prefill], cache, attention_mask=m)]
    for i in range(prefill, ids.shape[1]):
        out.append(model.forward_cached(ids[:, i : i + 1], cache))
    return torch.cat(out, dim=1), cache


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tie", [True, False])
def test_incremental_equals_full(dtype: torch.dtype, tie: bool) -> None:
    model = random_model(dtype=dtype, tie_embeddings=tie)
    ids = random_ids(3, 21)
    full = model(ids)
    for prefill in (1, 8):
        inc, cache = _decode(model, ids, prefill)
        assert cache.length == 21 and cache.next_pos.tolist() == [21] * 3
        torch.testing.assert_close(inc, full, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_left_padded_batch_equals_full_and_unpadded(dtype: torch.dtype) -> None:
    model = random_model(dtype=dtype)
    lengths = [12, 7, 3]  # prompt lengths, left-padded to 12
    ids = random_ids(3, 20)
    mask = torch.cat([left_pad_mask(lengths, 12), torch.ones(3, 8, dtype=torch.bool)], dim=1)
    ids = ids.masked_fill(~mask, 0)
    full = model(ids, attention_mask=mask)
    inc, cache = _decode(model, ids, 12, mask)
    real = mask[:, :, None]
    torch.testing.assert_close(inc * real, full * real, rtol=0, atol=TOL[dtype])
    assert cache.next_pos.tolist() == [n + 8 for n in lengths]
    for row, n in enumerate(lengths):  # and each row as if it had never been padded
        alone = model(ids[row : row + 1, 12 - n :])
        torch.testing.assert_close(inc[row : row + 1, 12 - n :], alone, rtol=0, atol=TOL[dtype])


def test_chunked_prefill_with_explicit_mask_and_positions() -> None:
    """Two prefill chunks (mask over cache + new tokens), then steps with explicit positions."""
    model = random_model()
    ids = random_ids(2, 16)
    mask = torch.cat([left_pad_mask([10, 4], 10), torch.ones(2, 6, dtype=torch.bool)], dim=1)
    full = model(ids, attention_mask=mask)
    cache = model.new_cache(2, 16)
    a = model.forward_cached(ids[:, :6], cache, attention_mask=mask[:, :6])
    b = model.forward_cached(ids[:, 6:10], cache, attention_mask=mask[:, :10])
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    steps = [
        model.forward_cached(ids[:, i : i + 1], cache, position_ids=pos[:, i : i + 1],
                             attention_mask=mask[:, : i + 1])
        for i in range(10, 16)
    ]
    inc = torch.cat([a, b, *steps], dim=1)
    real = mask[:, :, None]
    torch.testing.assert_close(inc * real, full * real, rtol=0, atol=1e-12)


def test_cfg_streams_and_candidates_in_one_batch() -> None:
    """Conditional and unconditional prompts of different lengths share one batch;
    ``repeat_interleave`` then gives N candidates per stream that stay exact."""
    model = random_model()
    cond, uncond = random_ids(1, 9, seed=3), random_ids(1, 4, seed=4)
    ids = torch.cat([cond, torch.cat([torch.zeros(1, 5, dtype=torch.long), uncond], 1)])
    mask = left_pad_mask([9, 4], 9)
    cache = model.new_cache(2, 20)
    model.forward_cached(ids, cache, attention_mask=mask)
    cache = cache.repeat_interleave(3)  # rows: c, c, c, u, u, u
    assert cache.batch_size == 6 and cache.length == 9
    cont = random_ids(6, 5, seed=5)
    steps = torch.cat([model.forward_cached(cont[:, i : i + 1], cache) for i in range(5)], 1)
    for row in range(6):
        prompt = cond if row < 3 else uncond
        full = model(torch.cat([prompt, cont[row : row + 1]], 1))
        torch.testing.assert_close(steps[row], full[0, -5:], rtol=0, atol=1e-12)
    # select keeps chosen rows, in order, and they keep decoding correctly
    picked = cache.select([5, 0])
    nxt = random_ids(2, 1, seed=6)
    out = model.forward_cached(nxt, picked)
    for i, (row, prompt) in enumerate([(5, uncond), (0, cond)]):
        full = model(torch.cat([prompt, cont[row : row + 1], nxt[i : i + 1]], 1))
        torch.testing.assert_close(out[i, -1], full[0, -1], rtol=0, atol=1e-12)


def test_buffers_are_written_in_place() -> None:
    model = random_model(dtype=torch.float32)
    cache = model.new_cache(2, 12)
    ptrs = (cache.k.data_ptr(), cache.v.data_ptr(), cache.valid.data_ptr())
    assert cache.k.shape == (2, 2, 4, 12, 16)  # (n_layers, B, H, T_max, Dh)
    ids = random_ids(2, 10)
    model.forward_cached(ids[:, :4], cache)
    for i in range(4, 10):
        model.forward_cached(ids[:, i : i + 1], cache)
    assert (cache.k.data_ptr(), cache.v.data_ptr(), cache.valid.data_ptr()) == ptrs
    assert cache.length == 10 and cache.remaining == 2
    assert torch.count_nonzero(cache.k[:, :, :, 10:]) == 0  # untouched slots


def test_last_only_and_hidden() -> None:
    model = random_model()
    ids = random_ids(2, 7)
    cache = model.new_cache(2, 8)
    logits, hidden = model.forward_cached(ids, cache, last_only=True, return_hidden=True)
    full, full_hidden = model(ids, return_hidden=True)
    assert logits.shape == (2, 1, VOCAB) and hidden.shape == (2, 1, 64)
    torch.testing.assert_close(logits[:, 0], full[:, -1], rtol=0, atol=1e-12)
    torch.testing.assert_close(hidden[:, 0], full_hidden[:, -1], rtol=0, atol=1e-12)


def test_crop_and_reset() -> None:
    model = random_model()
    ids = random_ids(2, 10)
    full = model(ids)
    cache = model.new_cache(2, 12)
    model.forward_cached(ids[:, :8], cache)
    cache.crop(5)  # forget three tokens, redo them
    assert cache.length == 5 and cache.next_pos.tolist() == [5, 5]
    redo = model.forward_cached(ids[:, 5:10], cache)
    torch.testing.assert_close(redo, full[:, 5:10], rtol=0, atol=1e-12)
    cache.reset()
    torch.testing.assert_close(model.forward_cached(ids[:, :3], cache), full[:, :3], rtol=0, atol=1e-12)


def test_no_autograd_graph_is_kept() -> None:
    model = random_model(dtype=torch.float32)
    cache = model.new_cache(1, 4)
    out = model.forward_cached(random_ids(1, 2), cache)
    assert not out.requires_grad and not cache.k.requires_grad


def test_cache_errors() -> None:
    model = random_model()
    cache = model.new_cache(2, 6)
    with pytest.raises(ValueError, match="batch size 3 but the cache holds 2 rows"):
        model.forward_cached(random_ids(3, 2), cache)
    model.forward_cached(random_ids(2, 5), cache)
    with pytest.raises(ValueError, match=r"cache overflow: 5 cached \+ 2 new tokens > cache max_len 6"):
        model.forward_cached(random_ids(2, 2), cache)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(B, cache.length \+ t\)"):
        model.forward_cached(random_ids(2, 1), cache, attention_mask=torch.ones(2, 1, dtype=torch.bool))
    bad = random_ids(2, 1)
    bad[1, 0] = VOCAB + 5
    with pytest.raises(ValueError, match=r"input_ids\[1, 0\] = 102 is out of range"):
        model.forward_cached(bad, cache)
    with pytest.raises(ValueError, match="outside the position table"):
        model.forward_cached(random_ids(2, 1), cache, position_ids=torch.full((2, 1), 256))
    with pytest.raises(ValueError, match=r"row index out of range \[0, 2\)"):
        cache.select([0, 2])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        cache.repeat_interleave(0)
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        model.new_cache(2, 0)


@pytest.mark.slow
def test_small_preset_full_context_incremental() -> None:
    """cm3leon_small over its whole position table: prefill 512, then 512 single steps."""
    from cm3leon.core.model import cm3leon_small

    torch.manual_seed(0)
    model = cm3leon_small(vocab_size=3000).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    lengths = [1024, 900]
    mask = left_pad_mask(lengths, 1024)
    ids = torch.randint(0, 3000, (2, 1024)).masked_fill(~mask, 0)
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
    inc, cache = _decode(model, ids, 512, mask, max_len=1024)
    assert cache.next_pos.tolist() == lengths
    real = mask[:, :, None]
    torch.testing.assert_close(inc * real, full * real, rtol=0, atol=1e-4)
