"""Run by tests/core/test_parallel_streams.py under ``pytest -n 2``, not collected by the suite.

Each test builds StreamingDatasets on its own ``local`` directories (pytest's per-worker
``tmp_path``), as the shard tests do, so two xdist workers register streaming's shared memory
at the same time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.shard_datasets import CM3StreamingDataset
from tests.core.train._helpers import write_token_dataset


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_token_dataset(tmp_path_factory.mktemp("data") / "ra", 8, retrieved=1)


@pytest.mark.parametrize("case", range(8))
def test_build_and_read(data: Path, tmp_path: Path, case: int) -> None:
    for i in range(4):
        ds = CM3StreamingDataset(remote=str(data), local=str(tmp_path / f"cache{i}"), batch_size=2,
                                 check_hashes=False, cm3=None)  # fmt: skip
        assert sorted(int(s["sample_id"]) for s in ds) == list(range(8))
        del ds
