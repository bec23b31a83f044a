"""Behavioural conformance suite for metric plugins (``cm3leon_register_metrics``).

A metric is a ``torchmetrics.Metric`` so that its value is the same on one process and
across ranks.  Subclass :class:`MetricConformance`, name the metric, give the options of a
cheap instance and the ``update`` calls of a small evaluation::

    import pytest
    from cm3leon.core.testing import MetricConformance

    class TestMyMetric(MetricConformance):
        name = "my_accuracy"

        @pytest.fixture
        def updates(self):
            return [((["a", "b"], ["a", "c"]), {}), ((["d"], ["d"]), {})]

The checks: the factory returns a ``torchmetrics.Metric`` whose every state declares a
``dist_reduce_fx``; the value computed on rank 0 of a simulated two-rank job (rank 0
updated with some calls, rank 1 with the others, rank 1's states gathered in through
torchmetrics' own synchronisation with an in-process ``dist_sync_fn``) equals the value of
one process updated with every call -- for an even split, an uneven one and a rank that
saw nothing; after ``reset()`` the metric computes as a fresh one.

Requires pytest and torchmetrics.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import torch

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import MetricSpec

__all__ = ["MetricConformance", "TwoRankGather", "assert_same_value", "two_rank_value"]

Update = tuple[tuple[Any, ...], dict[str, Any]]


class TwoRankGather:
    """``dist_sync_fn`` of rank 0 in a simulated two-rank job: ``[own tensor, rank 1's]``.

    :meth:`record` runs torchmetrics' synchronisation on a copy of rank 1's metric and keeps
    the tensors it would send, in the order torchmetrics gathers them.
    """

    def __init__(self) -> None:
        self.partner: list[torch.Tensor] = []

    def __call__(self, tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
        assert self.partner, "rank 0 gathers more tensors than rank 1 sends: the ranks' states do not line up"
        return [tensor, self.partner.pop(0)]

    def record(self, metric: Any) -> None:
        sent: list[torch.Tensor] = []

        def send(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
            sent.append(tensor.clone())
            return [tensor]

        copy.deepcopy(metric)._sync_dist(send)
        self.partner = sent


def two_rank_value(make: Callable[..., Any], updates: Sequence[Update], rank0: Sequence[int]) -> Any:
    """``compute()`` on rank 0 of a simulated two-rank job; ``rank0`` indexes its updates."""
    gather = TwoRankGather()
    first = make(dist_sync_fn=gather, distributed_available_fn=lambda: True)
    second = make()
    for i, (args, kwargs) in enumerate(updates):
        (first if i in rank0 else second).update(*args, **kwargs)
    gather.record(second)
    value = first.compute()
    assert not gather.partner, "rank 1 sent tensors rank 0 never gathered: the ranks' states do not line up"
    return value


def assert_same_value(got: Any, expected: Any, where: str, rel: float = 1e-9) -> None:
    """Equal values: numbers within ``rel``, mappings and sequences element by element."""
    if isinstance(expected, Mapping):
        assert isinstance(got, Mapping) and set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_same_value(got[key], expected[key], f"{where}[{key!r}]", rel)
    elif isinstance(expected, torch.Tensor) and expected.numel() != 1:
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape, f"{where}: shapes differ"
        assert torch.allclose(got.double(), expected.double(), rtol=rel, atol=rel), f"{where}: {got} != {expected}"
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{where}: lengths {len(got)} != {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_value(a, b, f"{where}[{i}]", rel)
    elif isinstance(expected, (torch.Tensor, float, int)):
        a, b = float(got), float(expected)
        assert math.isclose(a, b, rel_tol=rel, abs_tol=rel) or (math.isnan(a) and math.isnan(b)), (
            f"{where}: two ranks give {a!r}, one process {b!r}"
        )
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


class MetricConformance:
    """Checks every registered metric must pass; subclass, set :attr:`name`, supply ``updates``.

    Attributes:
        name: the registered metric name.
        options: keyword options of the factory (a cheap instance: stand-in encoders, ...).
        rel: relative tolerance of the comparison (float reductions change summation order).
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    rel: ClassVar[float] = 1e-9

    @pytest.fixture
    def metric_name(self) -> str:
        return self.name

    @pytest.fixture
    def metric_options(self) -> dict[str, Any]:
        return dict(self.options)

    @pytest.fixture
    def registries(self) -> Any:
        """The registries to look the component up in (override to test an uninstalled plugin)."""
        return get_registries()

    @pytest.fixture
    def spec(self, registries: Any, metric_name: str) -> MetricSpec:
        return registries.metrics.get(metric_name)

    @pytest.fixture
    def make(self, spec: MetricSpec, metric_options: dict[str, Any]) -> Callable[..., Any]:
        """``make(**torchmetrics_kwargs)`` -> a fresh metric."""
        return lambda **kwargs: spec.build(**metric_options, **kwargs)

    @pytest.fixture
    def updates(self) -> list[Update]:
        """At least three ``(args, kwargs)`` of ``update``; a subclass must supply them."""
        pytest.fail(f"{type(self).__name__} must define the `updates` fixture of metric {self.name!r}")

    def _single(self, make: Callable[..., Any], updates: Sequence[Update]) -> Any:
        metric = make()
        for args, kwargs in updates:
            metric.update(*args, **kwargs)
        return metric.compute()

    def test_is_a_torchmetrics_metric_with_reductions(self, spec: MetricSpec, make: Callable[..., Any]) -> None:
        from torchmetrics import Metric

        metric = make()
        assert isinstance(metric, Metric), f"{spec.name}: {type(metric).__name__} is not a torchmetrics.Metric"
        assert metric._reductions, f"{spec.name}: declares no state (add_state)"
        missing = [state for state, fx in metric._reductions.items() if fx is None]
        assert not missing, f"{spec.name}: states {missing} have no dist_reduce_fx; ranks would not combine them"

    @pytest.mark.parametrize("split", ["even", "uneven", "one_rank_empty"])
    def test_two_ranks_equal_one_process(self, spec: MetricSpec, make: Callable[..., Any],
                                         updates: list[Update], split: str) -> None:  # fmt: skip
        assert len(updates) >= 3, f"{spec.name}: give at least three update calls"
        n = len(updates)
        rank0 = {"even": range(0, n, 2), "uneven": range(n - 1), "one_rank_empty": range(n)}[split]
        expected = self._single(make, updates)
        got = two_rank_value(make, updates, list(rank0))
        assert_same_value(got, expected, f"{spec.name} ({split} split)", self.rel)

    def test_reset_forgets_updates(self, spec: MetricSpec, make: Callable[..., Any], updates: list[Update]) -> None:
        metric = make()
        for args, kwargs in updates[: len(updates) // 2 + 1]:
            metric.update(*args, **kwargs)
        metric.reset()
        for args, kwargs in updates:
            metric.update(*args, **kwargs)
        assert_same_value(metric.compute(), self._single(make, updates), f"{spec.name} after reset()", self.rel)
