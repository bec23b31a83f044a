"""The optional loss-spike detector (issue 20, item 8): the rule, resume, and a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.train.spikes import LossSpikeDetector, LossSpikeError, loss_spike
from tests.core.train._helpers import tiny_config


def noisy(n: int, level: float = 2.0, noise: float = 0.02, seed: int = 0) -> list[float]:
    return list(level + noise * np.random.default_rng(seed).standard_normal(n))


def test_a_jump_is_flagged_at_its_step_and_noise_is_not() -> None:
    det = LossSpikeDetector(window=50, threshold=6.0, warmup=20)
    losses = noisy(40) + [3.5] + noisy(20, seed=1)
    flagged = [step for step, loss in enumerate(losses) if det.check(step, loss)]
    assert flagged == [40]
    assert det.spikes[0][0] == 40 and det.spikes[0][2] == pytest.approx(2.0, abs=0.02)
    assert 3.5 not in det.history  # a spike does not raise the baseline


def test_falling_loss_and_warmup_and_non_finite_are_not_spikes() -> None:
    det = LossSpikeDetector(window=20, threshold=3.0, warmup=5)
    falling = list(np.linspace(8.0, 2.0, 60))
    assert not any(det.check(i, x) for i, x in enumerate(falling))
    early = LossSpikeDetector(window=20, warmup=5)
    assert not any(early.check(i, x) for i, x in enumerate([2.0, 2.0, 2.0, 2.0, 50.0]))  # 4 < warmup
    assert not early.check(5, float("nan"))


def test_min_rise_keeps_a_flat_loss_from_flagging_its_noise() -> None:
    det = LossSpikeDetector(window=30, threshold=6.0, min_rise=0.25, warmup=10)
    flat = [2.0] * 29 + [2.001]  # MAD 0: any rise is "infinitely many sigmas"
    assert not any(det.check(i, x) for i, x in enumerate(flat))
    assert det.check(30, 2.6)  # 30 % above the median


def test_state_round_trip_decides_like_the_uninterrupted_detector() -> None:
    losses = noisy(30) + [2.9] + noisy(10, seed=2) + [3.1]
    whole = LossSpikeDetector(window=25, warmup=10)
    expected = [whole.check(i, x) for i, x in enumerate(losses)]
    first = LossSpikeDetector(window=25, warmup=10)
    got = [first.check(i, x) for i, x in enumerate(losses[:20])]
    resumed = LossSpikeDetector(window=25, warmup=10)
    resumed.load_state_dict(first.state_dict())
    got += [resumed.check(i, x) for i, x in enumerate(losses[20:], start=20)]
    assert got == expected and sum(expected) == 2


def test_bad_options_are_errors() -> None:
    with pytest.raises(ValueError, match="policy"):
        loss_spike(policy="ignore")
    with pytest.raises(ValueError, match="warmup"):
        loss_spike(window=5, warmup=10)


class _State:
    def __init__(self, step: int, loss: float) -> None:
        from composer.core import Timestamp

        self.total_loss_dict = {"loss/train/total": loss}
        self.timestamp = Timestamp(batch=step)


class _Logger:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_metrics(self, metrics: dict) -> None:
        self.rows.append(metrics)


def test_stop_policy_raises_naming_the_step_and_warn_logs_a_metric() -> None:
    losses = noisy(25) + [4.0]
    warn, logger = LossSpikeDetector(warmup=10), _Logger()
    for step, loss in enumerate(losses):
        warn.batch_end(_State(step, loss), logger)
    assert logger.rows == [{"loss_spike/count": 1, "loss_spike/last_step": 25}]
    stop = LossSpikeDetector(warmup=10, policy="stop")
    with pytest.raises(LossSpikeError, match=r"loss spike at step 25: 4 against a median of (1\.99|2\.00)"):
        for step, loss in enumerate(losses):
            stop.batch_end(_State(step, loss), _Logger())


def test_registered_callback_sees_every_training_loss(tmp_path: Path, token_data: Path) -> None:
    from cm3leon.core.config import load_config
    from cm3leon.core.train import TrainConfig, train
    from cm3leon.core.train.composer_checkpoints import load_checkpoint_state
    from cm3leon.core.train.logs import read_metrics

    spike = {"name": "loss_spike", "options": {"window": 16, "warmup": 4}}
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}},
                                                    **{"max_duration": "6ba", "callbacks": [spike]}))  # fmt: skip
    result = train(cfg)
    state = load_checkpoint_state(result.latest_checkpoint)["state"]["callbacks"]["LossSpikeDetector"]
    logged = [row["loss/train/total"] for row in read_metrics(result.metrics) if "loss/train/total" in row]
    assert len(logged) == 6 and state["history"] == pytest.approx(logged)
