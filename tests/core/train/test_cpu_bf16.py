"""bf16 mixed precision on the CPU: ``precision: amp_bf16`` really computes in bf16, fp32 is untouched.

Composer's own ``amp_bf16`` is a no-op without CUDA, so the Composer model autocasts;
these tests watch the dtype of a block's matmul outputs through forward hooks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import load_config
from cm3leon.core.model import cm3leon_tiny
from cm3leon.core.packing import IGNORE_INDEX, PackingCollator
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.composer_model import CM3LeonComposerModel
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import VOCAB, pair_tokens, tiny_config


def _transformer(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = cm3leon_tiny(vocab_size=VOCAB.size, max_seq_len=64, d_model=32, d_ff=64)
    with torch.no_grad():  # random weights (not §2.3's zero output layers) exercise every path
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def _batch() -> dict[str, torch.Tensor]:
    items = [{"tokens": pair_tokens(a, b), "loss_weights": None} for a, b in [(1, 2), (3, 4), (5, 6)]]
    return PackingCollator(64, VOCAB, strategy="greedy")(items)


def _matmul_dtypes(model: torch.nn.Module) -> tuple[list[torch.dtype], list]:
    seen: list[torch.dtype] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
               for m in (model.blocks[0].attn.qkv, model.blocks[0].mlp.fc1)]
    return seen, handles


def test_cpu_autocast_runs_the_matmuls_in_bf16_and_keeps_fp32_weights() -> None:
    wrapped = CM3LeonComposerModel(_transformer(), VOCAB, cpu_autocast=True)
    seen, handles = _matmul_dtypes(wrapped.model)
    batch = _batch()
    outputs = wrapped(batch)
    loss = wrapped.loss(outputs, batch)
    loss.backward()
    for h in handles:
        h.remove()
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert outputs["logits"].dtype == torch.bfloat16 and loss.dtype == torch.float32 and torch.isfinite(loss)
    params = list(wrapped.parameters())
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               for p in params if p.requires_grad and p.grad is not None)
    fp32 = CM3LeonComposerModel(_transformer(), VOCAB)
    reference = fp32.loss(fp32(batch), batch)
    got, want = float(loss.detach()), float(reference.detach())
    assert abs(got - want) < 0.05 * want and got != want  # bf16: close, not equal


def test_fp32_is_bitwise_the_bare_transformer_and_the_plain_loss() -> None:
    batch = _batch()
    bare = _transformer()
    wrapped = CM3LeonComposerModel(_transformer(), VOCAB, cpu_autocast=False)
    seen, _ = _matmul_dtypes(wrapped.model)
    outputs = wrapped(batch)
    loss = wrapped.loss(outputs, batch)
    logits = bare(batch["input_ids"], position_ids=batch["position_ids"], doc_ids=batch["doc_ids"])  # (B, T, V)
    labels = batch["labels"].masked_fill(batch["labels"] == VOCAB.pad_id, IGNORE_INDEX)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    assert seen == [torch.float32, torch.float32]
    assert torch.equal(outputs["logits"], logits)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)  # sum/count vs mean: same up to rounding
    for (name, p), q in zip(wrapped.model.named_parameters(), bare.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name


class _WatchDtypes(Callback):
    """Record the dtype of block 0's qkv projection output on every training forward."""

    def __init__(self) -> None:
        self.seen: list[torch.dtype] = []
        self.composer_precision = None

    def fit_start(self, state: State, logger: Logger) -> None:
        self.composer_precision = str(state.precision.value)
        state.model.model.blocks[0].attn.qkv.register_forward_hook(
            lambda _m, _i, out: self.seen.append(out.dtype))


def _run(tmp_path: Path, token_data: Path, precision: str) -> tuple[_WatchDtypes, list[float], Path]:
    cfg = load_config(TrainConfig, data=tiny_config(
        tmp_path / precision, {"ra": {"local": str(token_data)}}, precision=precision, max_duration="3ba",
        **{"data.shuffle": False, "logging.log_level": "INFO", "checkpoint.save_interval": "100ba"}))
    watch = _WatchDtypes()
    result = train(cfg, extra_callbacks=[watch])
    losses = [r["loss/train/total"] for r in read_metrics(result.metrics) if "loss/train/total" in r]
    return watch, losses, result.run_dir / "logs" / "rank0.log"


def test_train_run_with_amp_bf16_on_cpu_computes_in_bf16(tmp_path: Path, token_data: Path) -> None:
    bf16, bf16_losses, log = _run(tmp_path, token_data, "amp_bf16")
    assert bf16.composer_precision == "fp32"  # Composer would reject amp_bf16 on a CPU device
    assert bf16.seen and set(bf16.seen) == {torch.bfloat16}
    lines = [line for line in log.read_text().splitlines() if "precision amp_bf16 on cpu" in line]
    assert len(lines) == 1 and "requested amp_bf16" in lines[0]
    fp32, fp32_losses, _ = _run(tmp_path, token_data, "fp32")
    assert set(fp32.seen) == {torch.float32}
    assert len(bf16_losses) == len(fp32_losses) == 3 and np.isfinite(bf16_losses).all()
    np.testing.assert_allclose(bf16_losses, fp32_losses, rtol=0.05)
    assert bf16_losses != fp32_losses
