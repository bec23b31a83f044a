"""Composer Algorithms registered through ``cm3leon_register_callbacks`` reach ``Trainer(algorithms=)``.

The hook's contract lets a factory return a ``composer.Algorithm``; Composer calls
``run_event`` on everything in ``Trainer(callbacks=)``, which an Algorithm does not have, so
such a component must be routed to the Trainer's algorithms instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import ConfigError, load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.builders import build_configured_components, split_components
from tests.core.plugin_fixtures import make_distribution
from tests.core.train._helpers import tiny_config

THRESHOLD = 1e-3

# A third-party distribution registering Composer's own GradientClipping class (and, for
# the error test, a factory that builds neither a Callback nor an Algorithm).
PLUGIN = """
from composer.algorithms import GradientClipping

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CallbackSpec


@hookimpl
def cm3leon_register_callbacks():
    return [
        CallbackSpec("acme_clip", GradientClipping, "Composer's gradient clipping"),
        CallbackSpec("acme_dict", dict, "not a Composer component"),
    ]
"""


@pytest.fixture
def acme_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins) -> None:
    site = tmp_path / "site"
    make_distribution(site, "acme-clip", "acme_clip", PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    fresh_plugins()


def _grad_norm(model: torch.nn.Module) -> float:
    grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.cat(grads)))


class GradNormProbe(Callback):
    """Global gradient norm after the last backward (unclipped) and after the batch.

    Composer runs algorithms before callbacks at an event, so the ``AFTER_TRAIN_BATCH``
    reading is taken after the clipping algorithm has acted.
    """

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []
        self._last = float("nan")

    def after_backward(self, state: State, logger: Logger) -> None:
        self._last = _grad_norm(state.model)

    def after_train_batch(self, state: State, logger: Logger) -> None:
        self.before.append(self._last)
        self.after.append(_grad_norm(state.model))


def _config(run_dir: Path, token_data: Path, component: dict) -> TrainConfig:
    return load_config(
        TrainConfig,
        data=tiny_config(
            run_dir,
            {"ra": {"local": str(token_data)}},
            **{"max_duration": "2ba", "optim.grad_clip_norm": None, "callbacks": [component]},
        ),
    )


def test_plugin_gradient_clipping_trains_and_clips(
    acme_plugin, tmp_path: Path, token_data: Path
) -> None:
    component = {
        "name": "acme_clip",
        "options": {"clipping_type": "norm", "clipping_threshold": THRESHOLD},
    }
    cfg = _config(tmp_path / "run", token_data, component)
    probe = GradNormProbe()
    result = train(cfg, extra_callbacks=[probe])
    assert result.batches == 2
    assert len(probe.after) == 2
    # the unclipped gradients are far above the threshold (built-in clipping is off) ...
    assert all(b > 10 * THRESHOLD for b in probe.before), probe.before
    # ... and the optimizer saw them clipped to it by the plugin's algorithm
    assert all(a == pytest.approx(THRESHOLD, rel=1e-3) for a in probe.after), probe.after


def test_configured_components_are_split_by_kind(
    acme_plugin, tmp_path: Path, token_data: Path
) -> None:
    from composer.algorithms import GradientClipping
    from composer.callbacks import SpeedMonitor

    cfg = load_config(
        TrainConfig,
        data=tiny_config(
            tmp_path / "run",
            {"ra": {"local": str(token_data)}},
            callbacks=[
                {"name": "speed_monitor", "options": {"window_size": 2}},
                {
                    "name": "acme_clip",
                    "options": {"clipping_type": "norm", "clipping_threshold": 1.0},
                },
            ],
        ),
    )
    callbacks, algorithms = build_configured_components(cfg)
    assert [type(c) for c in callbacks] == [SpeedMonitor]
    assert [type(a) for a in algorithms] == [GradientClipping]


def test_component_that_is_neither_callback_nor_algorithm(
    acme_plugin, tmp_path: Path, token_data: Path
) -> None:
    cfg = _config(tmp_path / "run", token_data, {"name": "acme_dict"})
    with pytest.raises(
        ConfigError,
        match=r"callbacks\[0\]: 'acme_dict' built a dict, not a Composer "
        r"Callback or Algorithm",
    ):
        build_configured_components(cfg)


def test_split_components_keeps_order_and_rejects_other_objects() -> None:
    from composer.algorithms import GradientClipping

    probe, clip = GradNormProbe(), GradientClipping("norm", 1.0)
    assert split_components([clip, probe]) == ([probe], [clip])
    with pytest.raises(
        TypeError, match=r"extra_callbacks\[1\]: str is not a Composer Callback or Algorithm"
    ):
        split_components([probe, "speed_monitor"], where="extra_callbacks")
