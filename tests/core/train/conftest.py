"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.train._helpers import tiny_config, write_token_dataset


@pytest.fixture(scope="session")
def token_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 learnable caption-image examples with one retrieved pair each (Figure 9 layout)."""
    return write_token_dataset(tmp_path_factory.mktemp("data") / "ra", 64, retrieved=1)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, token_data: Path):
    """One short in-process training run (8 steps, checkpoints every 2), shared by several tests."""
    from cm3leon.core.config import load_config
    from cm3leon.core.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    cfg = load_config(TrainConfig, data=tiny_config(run_dir, {"ra": {"local": str(token_data)}},
                                                   **{"logging.plot": True}))
    result = train(cfg)
    return cfg, result
