"""``data.num_rows`` counts rows per optimizer step over all ranks, as ``global_batch_size``
counts examples: each rank packs its share of the examples into its share of the rows, so a
config keeps its tokens per step and examples per row on any world size (configs/sft/*.yaml
run on 8 GPUs with the rows they state for 64 / 128)."""

from __future__ import annotations

from pathlib import Path

import pytest
from composer.utils import dist
from omegaconf import OmegaConf

from cm3leon.core.config import ConfigError
from cm3leon.core.train.config import DataSection, StreamSection
from cm3leon.core.train.data import build_dataspec

from ._helpers import write_token_dataset


def _dataspec(tmp_path: Path, data_dir: Path, *, global_batch_size: int, num_rows: int | None):
    streams = {"d": StreamSection(local=str(data_dir))}
    data = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataSection), {
        "streams": {"d": {"local": str(data_dir)}}, "seq_len": 64,
        "global_batch_size": global_batch_size, "num_rows": num_rows, "shuffle": False,
    }))
    assert isinstance(data, DataSection)
    return build_dataspec(data, streams=streams, global_batch_size=global_batch_size,
                          num_rows=num_rows, cache_root=tmp_path / "cache", seed=0,
                          shuffle=False, where="data")


@pytest.mark.parametrize(("world", "rows"), [(1, 4), (2, 2), (4, 1)])
def test_each_rank_packs_into_its_share_of_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: int, rows: int
) -> None:
    data_dir = write_token_dataset(tmp_path / "data", 16)
    monkeypatch.setattr(dist, "get_world_size", lambda: world)
    spec, _ = _dataspec(tmp_path, data_dir, global_batch_size=8, num_rows=4)
    assert spec.dataloader.collate_fn.num_rows == rows
    batch = next(iter(spec.dataloader))
    assert batch["input_ids"].shape == (rows, 64)  # (rows per rank, seq_len)


def test_rows_that_do_not_split_over_the_ranks_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    with pytest.raises(ConfigError, match=r"data\.num_rows=3 is not divisible by the world size 2"):
        _dataspec(tmp_path, tmp_path / "never_read", global_batch_size=8, num_rows=3)
