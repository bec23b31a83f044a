"""Training on augmented examples longer than a row: documents dropped, counted, logged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cm3leon.core.config import load_config
from cm3leon.core.serialize import document_ranges, join_documents
from cm3leon.core.shards import TokenShardWriter
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import VOCAB, pair_tokens, tiny_config


def test_overlong_augmented_examples_lose_documents_not_their_infill(tmp_path: Path) -> None:
    # Three retrieved pairs + the query = 85 tokens; rows of 64 leave 48 after CM3's growth
    # (2 x 8 sentinels): the trainer keeps the first retrieved pair and the query.
    rng = np.random.default_rng(0)
    with TokenShardWriter(tmp_path / "ra", VOCAB, with_parts=True) as writer:
        for i in range(16):
            parts = [pair_tokens(int(a), int(b))[1:] for a, b in rng.integers(0, 8, size=(4, 2))]
            ids, _ = join_documents(parts, VOCAB)
            assert ids.size > 64
            writer.write(ids, id=f"ex{i}", parts=document_ranges(parts, VOCAB))
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(tmp_path / "ra")}},
                                                    max_duration="2ba"))  # fmt: skip
    result = train(cfg)
    rows = [r for r in read_metrics(result.metrics) if "data/examples_shortened" in r]
    assert [r["data/examples_shortened"] for r in rows] == [8, 8]
    assert [r["data/documents_dropped"] for r in rows] == [16, 16]
    assert rows[-1]["data/total_examples_shortened"] == 16
    assert all(r["data/examples_truncated"] == 0 and r["data/examples_dropped"] == 0 for r in rows)
    assert rows[-1]["data/total_examples"] == 16


def test_the_realised_whole_segment_rate_is_logged(tmp_path: Path, token_data: Path) -> None:
    """Every example masks its caption whole: the log says so, step by step."""
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}},
                                                    max_duration="2ba",
                                                    **{"data.cm3.options": {"whole_text_prob": 1.0}}))  # fmt: skip
    rows = [r for r in read_metrics(train(cfg).metrics) if "data/whole_text_masks" in r]
    # token_data: one retrieved pair + the query, so at least one whole caption per example.
    assert [r["data/whole_text_masks"] >= 8 for r in rows] == [True, True]
    off = load_config(TrainConfig, data=tiny_config(tmp_path / "off", {"ra": {"local": str(token_data)}},
                                                    max_duration="1ba"))  # fmt: skip
    row = next(r for r in read_metrics(train(off).metrics) if "data/whole_text_masks" in r)
    assert row["data/whole_text_masks"] < 8
