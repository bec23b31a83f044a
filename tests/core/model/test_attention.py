"""FlexAttention for packed rows equals the dense-mask SDPA path; choosing the kernel.

Tolerance of the flex/dense comparisons (float32): the two kernels compute the same
softmax(QK^T / sqrt(d)) V, but FlexAttention sums over keys block by block with an online
softmax while SDPA does it in one pass, so each attention output differs by a few ulps
(float32 eps = 1.2e-7) times the number of keys summed.  Through two blocks and the output
projection of :func:`random_model` (weights std 0.2, logits up to 6.7) that measured at
most 3.1e-6 absolute on 2 CPU cores (torch 2.14.1); ``atol = rtol = 2e-5`` leaves a 6x
margin for other CPUs' vector widths, while a mask that is wrong by a single key (checked
in each test) moves the logits by more than 1e-2.
"""

from __future__ import annotations

import logging

import pytest
import torch

from cm3leon.core.model import TransformerConfig, cm3leon_tiny
from cm3leon.core.model.attention import flex_unavailable_reason, resolve_attention
from tests.core.model._helpers import VOCAB, random_ids, random_model

TOL = dict(rtol=2e-5, atol=2e-5)
T = 200  # not a multiple of FlexAttention's 128-token blocks: a partial block at the end

pytestmark = pytest.mark.skipif(
    flex_unavailable_reason(torch.device("cpu"), requires_grad=False) is not None,
    reason=str(flex_unavailable_reason(torch.device("cpu"), requires_grad=False)),
)


def _runs(*lengths: int) -> list[int]:
    """Doc ids of consecutive documents of ``lengths`` (the packer's layout)."""
    assert sum(lengths) == T
    return [d for d, n in enumerate(lengths) for _ in range(n)]


#: One row per layout: several documents with a one-token one, a single document,
#: documents then a padding run with its own id (as ``pack`` writes it), many short
#: documents crossing the block boundary at 128.
LAYOUTS = torch.tensor([
    _runs(30, 70, 1, 99),
    _runs(T),
    _runs(57, 90, 53),
    _runs(*[7] * 28, 4),
])


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    flex = random_model(dtype=torch.float32, attention="flex")
    dense = random_model(dtype=torch.float32, attention="sdpa")
    dense.load_state_dict(flex.state_dict())
    return {"flex": flex, "sdpa": dense}


def _both(models: dict, ids: torch.Tensor, **kwargs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():  # torch's FlexAttention has no CPU backward
        return models["flex"](ids, **kwargs), models["sdpa"](ids, **kwargs)


def test_flex_logits_equal_dense_for_packed_layouts(models: dict) -> None:
    ids = random_ids(len(LAYOUTS), T)
    flex, dense = _both(models, ids, doc_ids=LAYOUTS)
    torch.testing.assert_close(flex, dense, **TOL)
    # The comparison can fail: move one document boundary by one token.
    shifted = LAYOUTS.clone()
    shifted[0, 30] = 0
    _, wrong = _both(models, ids, doc_ids=shifted)
    assert (flex - wrong).abs().max() > 1e-2


@pytest.mark.slow  # a second compile (the mask_mod with a padding mask): ~20 s
def test_flex_logits_equal_dense_with_padding_mask(models: dict) -> None:
    ids = random_ids(len(LAYOUTS), T, seed=3)
    mask = torch.ones(len(LAYOUTS), T, dtype=torch.bool)
    mask[0, :13] = False  # left padding
    mask[2, 147:] = False  # the padding run of row 2, also masked
    mask[3, 100:110] = False  # holes inside documents
    for kwargs in ({"attention_mask": mask}, {"attention_mask": mask, "doc_ids": LAYOUTS}):
        flex, dense = _both(models, ids, **kwargs)
        torch.testing.assert_close(flex, dense, **TOL)
    assert torch.isfinite(flex).all()
    other = mask.clone()
    other[3, 110] = False
    _, wrong = _both(models, ids, attention_mask=other, doc_ids=LAYOUTS)
    assert (flex - wrong).abs().max() > 1e-2


def test_auto_on_cpu_is_the_dense_path_bitwise() -> None:
    """The default keeps CPU numbers (tests, the demo) exactly as before, with gradients."""
    ids = random_ids(len(LAYOUTS), T)
    grads = []
    for attention in ("auto", "sdpa"):
        model = random_model(dtype=torch.float32, attention=attention).train()
        logits = model(ids, doc_ids=LAYOUTS)
        logits.square().mean().backward()
        grads.append((logits.detach(), [p.grad for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1], strict=True))


def test_flex_where_it_cannot_run_names_the_reason() -> None:
    model = random_model(dtype=torch.float32, attention="flex").train()
    ids = random_ids(2, 16)
    with pytest.raises(RuntimeError, match="attention='flex' cannot run on cpu: .*no CPU backward"):
        model(ids, doc_ids=torch.zeros(2, 16, dtype=torch.long))
    model(ids)  # plain causal rows need no mask: SDPA's is_causal kernel, no error


def test_resolve_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_attention("sdpa", cuda, requires_grad=True)[0] == "sdpa"
    assert resolve_attention("auto", cpu, requires_grad=False)[0] == "sdpa"
    assert resolve_attention("flex", cpu, requires_grad=False)[0] == "flex"
    monkeypatch.setattr(
        "cm3leon.core.model.attention.flex_unavailable_reason", lambda *a, **k: None
    )
    assert resolve_attention("auto", cuda, requires_grad=True) == ("flex", "attention='auto' on CUDA")
    monkeypatch.setattr(
        "cm3leon.core.model.attention.flex_unavailable_reason", lambda *a, **k: "no Triton"
    )
    assert resolve_attention("auto", cuda, requires_grad=True) == ("sdpa", "attention='auto': no Triton")
    with pytest.raises(RuntimeError, match="cannot run on cuda: no Triton"):
        resolve_attention("flex", cuda, requires_grad=True)


def test_one_log_line_names_the_path(caplog: pytest.LogCaptureFixture) -> None:
    model = cm3leon_tiny(vocab_size=VOCAB)
    ids, docs = random_ids(2, 16), torch.zeros(2, 16, dtype=torch.long)
    with caplog.at_level(logging.INFO, logger="cm3leon.core.model.attention"):
        model(ids, doc_ids=docs)
        model(ids, doc_ids=docs)
        model(ids)  # unmasked: nothing to choose, nothing logged
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "masked attention on cpu: scaled_dot_product_attention with a dense (B, 1, T, T) mask "
        "[attention='auto' uses FlexAttention on CUDA only (device cpu)]"
    ]


def test_attention_is_a_runtime_choice_not_architecture() -> None:
    cfg = cm3leon_tiny(vocab_size=VOCAB).config
    flex = cfg.replace(attention="flex")
    assert flex.attention == "flex" and cfg.attention == "auto"
    assert flex == cfg  # same architecture
    assert "attention" not in flex.to_dict()  # checkpoints load under any kernel
    assert flex.replace(d_ff=128).attention == "flex"
    with pytest.raises(ValueError, match=r"attention must be one of \['auto', 'flex', 'sdpa'\]"):
        cfg.replace(attention="flash")
    assert TransformerConfig.from_dict({**cfg.to_dict(), "attention": "sdpa"}).attention == "sdpa"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_logits_and_gradients_equal_dense_on_cuda() -> None:
    """Training on CUDA: FlexAttention's backward against SDPA's with the dense mask."""
    flex = random_model(dtype=torch.float32, attention="flex").cuda().train()
    dense = random_model(dtype=torch.float32, attention="sdpa").cuda().train()
    dense.load_state_dict(flex.state_dict())
    ids, docs = random_ids(len(LAYOUTS), T).cuda(), LAYOUTS.cuda()
    out = {}
    for name, model in (("flex", flex), ("sdpa", dense)):
        logits = model(ids, doc_ids=docs)
        logits.square().mean().backward()
        out[name] = (logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(out["flex"][0], out["sdpa"][0], rtol=1e-4, atol=1e-4)
    for n, g in out["flex"][1].items():
        torch.testing.assert_close(g, out["sdpa"][1][n], rtol=1e-3, atol=1e-5, msg=n)
