"""Dataloader resume state (issue 20 item 3; reliability list 7): a state that upstream
``StreamingDataset`` would silently ignore is an error.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from streaming import StreamingDataset

from cm3leon.core.train.data import StaleDataloaderStateError, TrainDataset, load_dataloader_state


def _dataset(data: Path) -> TrainDataset:
    return TrainDataset(local=str(data), batch_size=4, shuffle=False, cm3=None)


def _ids(dataset: TrainDataset, n: int) -> list[int]:
    out = []
    for item in dataset:
        out.append(int(item["sample_id"]))
        if len(out) == n:
            break
    return out


@pytest.fixture
def data(tmp_path: Path, token_data: Path) -> Path:
    """A private copy: streaming refuses two live datasets on one local directory."""
    import shutil

    return Path(shutil.copytree(token_data, tmp_path / "ra"))


def test_a_state_older_than_the_dataset_is_refused(data: Path) -> None:
    dataset = _dataset(data)
    assert len(_ids(dataset, 64)) == 64  # one whole epoch: next_epoch is now 1
    stale = {"epoch": 0, "sample_in_epoch": 8, "num_canonical_nodes": 1, "shuffle_seed": 9176,
             "initial_physical_nodes": 1}
    with pytest.raises(StaleDataloaderStateError, match=r"epoch 0 \(sample 8\) is older than .* next epoch 1"):
        dataset.load_state_dict(stale)  # what Composer calls on resume
    with pytest.raises(StaleDataloaderStateError, match="lacks"):
        load_dataloader_state(dataset, {"sample_in_epoch": 8})


def test_upstream_ignores_the_same_state_silently(data: Path) -> None:
    """Why the check exists: the library accepts the stale state and restarts at sample 0."""
    dataset = _dataset(data)
    first = _ids(dataset, 64)
    StreamingDataset.load_state_dict(dataset, {"epoch": 0, "sample_in_epoch": 8, "num_canonical_nodes": 1,
                                               "shuffle_seed": 9176, "initial_physical_nodes": 1})
    assert _ids(dataset, 4) == first[:4]  # epoch 1 from sample 0, not epoch 0 from sample 8


def test_a_fresh_dataset_resumes_at_the_offset(data: Path) -> None:
    dataset = _dataset(data)
    first = _ids(dataset, 16)
    state = dataset.state_dict(num_samples=8, from_beginning=False)
    del dataset
    gc.collect()
    fresh = _dataset(data)
    fresh.load_state_dict(state)
    assert _ids(fresh, 8) == first[8:16]
