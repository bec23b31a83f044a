"""The Composer wrapper: CM3 loss over real targets, weights, per-modality metrics, FLOPs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cm3leon.core.model import cm3leon_tiny
from cm3leon.core.packing import IGNORE_INDEX, PackingCollator
from cm3leon.core.train.composer_model import CM3LeonComposerModel, flops_per_token
from cm3leon.core.train.data import tokens_in_batch
from cm3leon.core.train.metrics import ModalityCrossEntropy, ModalityPerplexity
from tests.core.train._helpers import VOCAB, pair_tokens


def _model(seed: int = 0) -> CM3LeonComposerModel:
    torch.manual_seed(seed)
    model = cm3leon_tiny(vocab_size=VOCAB.size, max_seq_len=64, d_model=32, d_ff=64)
    with torch.no_grad():  # §2.3 zero-inits output projections; random weights exercise every path
        for p in model.parameters():
            p.normal_(0, 0.3)
    return CM3LeonComposerModel(model, VOCAB)


def _batch(weights: list[float] | None = None) -> dict[str, torch.Tensor]:
    examples = [pair_tokens(a, b) for a, b in [(1, 2), (3, 4), (5, 6), (7, 0)]]
    items = [{"tokens": ex, "loss_weights": None if weights is None else np.full(ex.size, w, np.float32)}
             for ex, w in zip(examples, weights or [1.0] * 4, strict=True)]
    return PackingCollator(64, VOCAB, strategy="greedy")(items)


def test_loss_is_mean_cross_entropy_over_real_targets() -> None:
    model, batch = _model(), _batch()
    outputs = model(batch)
    loss = model.loss(outputs, batch)
    logits, labels = outputs["logits"], batch["labels"]
    keep = labels != IGNORE_INDEX
    assert 0 < keep.sum() < labels.numel()  # the batch has padding to ignore
    expected = F.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(loss, expected)
    # padding rows/positions never contribute: changing pad logits' targets changes nothing
    assert torch.isfinite(loss)


def test_pad_labels_are_ignored_even_without_ignore_index() -> None:
    model, batch = _model(), _batch()
    relabelled = dict(batch)
    relabelled["labels"] = batch["labels"].masked_fill(batch["labels"] == IGNORE_INDEX, VOCAB.pad_id)
    out = model(batch)
    torch.testing.assert_close(model.loss(out, relabelled), model.loss(out, batch))


def test_loss_weights_give_weighted_mean_and_can_be_disabled() -> None:
    batch = _batch(weights=[1.0, 3.0, 1.0, 1.0])
    model = _model()
    outputs = model(batch)
    token_ce = F.cross_entropy(outputs["logits"].flatten(0, 1), batch["labels"].flatten(),
                               ignore_index=IGNORE_INDEX, reduction="none")
    w = batch["loss_weights"].flatten() * (batch["labels"].flatten() != IGNORE_INDEX)
    torch.testing.assert_close(model.loss(outputs, batch), (token_ce * w).sum() / w.sum())
    model.use_loss_weights = False
    unweighted = model.loss(model(batch), batch)
    keep = batch["labels"] != IGNORE_INDEX
    torch.testing.assert_close(unweighted, token_ce[keep.flatten()].mean())


def test_metrics_split_targets_by_modality() -> None:
    model, batch = _model(), _batch()
    outputs = model.eval_forward(batch)
    metrics = model.get_metrics(is_train=True)
    for metric in metrics.values():
        model.update_metric(batch, outputs, metric)
    labels, tl = batch["labels"], outputs["token_loss"]
    image = VOCAB.is_image(labels) & (labels != IGNORE_INDEX)
    text = VOCAB.is_text(labels) & (labels != IGNORE_INDEX)
    assert image.sum() > text.sum() > 0
    torch.testing.assert_close(metrics["loss_image"].compute(), tl[image].mean())
    torch.testing.assert_close(metrics["loss_text"].compute(), tl[text].mean())
    torch.testing.assert_close(metrics["perplexity_text"].compute(), tl[text].mean().exp())
    torch.testing.assert_close(metrics["loss_all"].compute(), model.loss(model(batch), batch))


def test_metric_reduction_is_a_token_mean_across_ranks() -> None:
    """States reduce by sum (dist_reduce_fx), so two ranks give the pooled token mean."""
    labels_a = torch.tensor([[VOCAB.image_offset, VOCAB.image_offset + 1, IGNORE_INDEX]])
    labels_b = torch.tensor([[VOCAB.image_offset + 2, VOCAB.text_offset, VOCAB.text_offset]])
    loss_a, loss_b = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[8.0, 5.0, 7.0]])
    rank0, rank1 = ModalityCrossEntropy(VOCAB, "image"), ModalityCrossEntropy(VOCAB, "image")
    rank0.update(loss_a, labels_a)
    rank1.update(loss_b, labels_b)
    rank0.merge_state(rank1)  # what torchmetrics' sync does with the dist_reduce_fx
    assert math.isclose(float(rank0.compute()), (1 + 3 + 8) / 3)  # not mean(2, 8) = 5
    empty = ModalityPerplexity(VOCAB, "text")
    assert math.isnan(float(empty.compute()))


def test_flops_per_batch_counts_matmul_parameters_and_attention() -> None:
    model, batch = _model(), _batch()
    cfg = model.config
    matmul_params = sum(p.numel() for p in model.model.blocks.parameters()) + model.model.tok_emb.weight.numel()
    B, T = batch["input_ids"].shape
    expected = (6 * matmul_params + 12 * cfg.n_layers * cfg.d_model * T) * B * T
    assert model.flops_per_batch(batch) == pytest.approx(expected)
    assert flops_per_token(cfg, T) * B * T == pytest.approx(expected)


def test_token_counts_for_duration_and_gradient_accumulation() -> None:
    batch = _batch(weights=[1.0, 2.0, 1.0, 1.0])
    counts = tokens_in_batch(batch, use_loss_weights=True)
    real = int((batch["input_ids"] != VOCAB.pad_id).sum())
    targets = batch["labels"] != IGNORE_INDEX
    assert counts["total"] == real
    assert counts["loss_generating"] == pytest.approx(float((batch["loss_weights"] * targets).sum()))
    assert tokens_in_batch(batch, use_loss_weights=False)["loss_generating"] == int(targets.sum())


def test_vocabulary_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        CM3LeonComposerModel(cm3leon_tiny(vocab_size=VOCAB.size + 1), VOCAB)


def test_blocks_are_marked_for_fsdp_and_activation_checkpointing() -> None:
    model = CM3LeonComposerModel(cm3leon_tiny(vocab_size=VOCAB.size), VOCAB, activation_checkpointing=True)
    assert all(b._fsdp_wrap and b._activation_checkpointing for b in model.model.blocks)
