"""End to end: procedural world -> VQ-GAN + bytes -> token shards -> CM3 -> packed rows -> model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.objective import CM3Config, cm3_inverse
from cm3leon.core.packing import IGNORE_INDEX, raw_samples_in_batch, token_accounting
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.shards import iter_token_samples, verify_dataset


@pytest.mark.slow
@pytest.mark.integration
def test_world_to_packed_batches_through_the_registries(tmp_path: Path) -> None:
    registries = get_registries()
    if "vqgan" not in registries.tokenizers or "world" not in registries.sources:
        pytest.fail("this pipeline test needs the registered 'vqgan' tokenizer and 'world' source")
    image_tok = registries.tokenizers.build("vqgan", "small_32", seed=0)
    image_tok.save(tmp_path / "vq")
    out = tmp_path / "tok"
    result = CliRunner().invoke(cli, [
        "data", "prepare", "--source", "world", "-", "-o", "n=48", "--out", str(out), "--kind", "tokens",
        "--text-tokenizer", "bytes", "--image-tokenizer", f"vqgan:{tmp_path / 'vq'}",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["written"] == 48
    info = verify_dataset(out)
    vocab = info.vocab
    assert vocab is not None and vocab.image_size == image_tok.codebook_size
    samples = list(iter_token_samples(out))
    assert all(int(np.asarray(vocab.is_image(s.tokens)).sum()) == image_tok.num_tokens for s in samples)

    from cm3leon.core.model import cm3leon_tiny
    from cm3leon.core.shard_datasets import CM3StreamingDataset, build_packed_dataloader

    ds = CM3StreamingDataset(remote=str(out), local=str(tmp_path / "cache"), batch_size=8, shuffle=True,
                             cm3=CM3Config(), cm3_seed=3)
    loader = build_packed_dataloader(ds, seq_len=256)
    model = cm3leon_tiny(vocab_size=vocab.size)
    seen = 0
    for batch in loader:
        seen += raw_samples_in_batch(batch)
        counts = token_accounting(batch["input_ids"], vocab)
        assert counts["image"] == int(batch["num_image_tokens"].sum()) > 0
        logits = model(batch["input_ids"], doc_ids=batch["doc_ids"])  # (R, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                 ignore_index=IGNORE_INDEX)
        assert torch.isfinite(loss)
    assert seen == 48
    first = ds[0]["tokens"]
    assert np.asarray(vocab.is_sentinel(first)).any()
    assert np.array_equal(cm3_inverse(first, vocab), samples[0].tokens)
