"""An optional loss-spike detector: a Composer callback, registered as ``loss_spike``.

Large runs diverge in spikes (the paper's 7B and 30B curves restart from checkpoints
after them).  At every ``BATCH_END`` the detector compares the step's training loss --
Composer's ``state.total_loss_dict["loss/train/total"]``, already averaged over ranks,
so every rank decides the same -- with the losses of the last ``window`` steps:

    spike  <=>  loss > median + threshold * 1.4826 * MAD   and   loss > (1 + min_rise) * median

(median and MAD are robust to earlier spikes; ``1.4826 * MAD`` estimates the standard
deviation of normal noise; ``min_rise`` keeps a near-constant loss, whose MAD is ~0, from
flagging noise).  Nothing is decided before ``warmup`` steps of history.  A spike is
logged (``loss_spike/count``, ``loss_spike/last_step`` and a warning naming the step,
the loss and the median) and, with ``policy="stop"``, stops training with
:class:`LossSpikeError` so the run can be resumed from an earlier checkpoint with a
lower learning rate.  Spiking losses are not added to the history.  The history is part
of the checkpoint, so a resumed run decides as the uninterrupted one would.

Enable it in a train config::

    callbacks:
      - name: loss_spike
        options: {window: 200, threshold: 6.0, policy: warn}
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
from composer.core import Callback, State
from composer.loggers import Logger

__all__ = ["LossSpikeDetector", "LossSpikeError", "loss_spike"]

log = logging.getLogger(__name__)

LOSS_KEY = "loss/train/total"


class LossSpikeError(RuntimeError):
    """Training stopped on a loss spike (``policy="stop"``); the message names the step."""


class LossSpikeDetector(Callback):
    """Flag (and optionally stop on) training-loss spikes; see the module docstring.

    Args:
        window: how many recent non-spike losses the median and MAD are taken over.
        threshold: robust z-score above which a loss is a spike.
        min_rise: the loss must also exceed the median by this fraction.
        warmup: steps of history needed before anything is flagged.
        policy: ``"warn"`` (log and go on) or ``"stop"`` (raise :class:`LossSpikeError`).
    """

    def __init__(
        self,
        window: int = 100,
        threshold: float = 6.0,
        min_rise: float = 0.25,
        warmup: int = 20,
        policy: str = "warn",
    ) -> None:
        if policy not in ("warn", "stop"):
            raise ValueError(f"loss_spike policy must be 'warn' or 'stop', got {policy!r}")
        if window < 2 or not 2 <= warmup <= window:
            raise ValueError(f"loss_spike needs 2 <= warmup <= window, got warmup={warmup}, window={window}")
        if threshold <= 0 or min_rise < 0:
            raise ValueError(f"loss_spike needs threshold > 0 and min_rise >= 0, got {threshold}, {min_rise}")
        self.window, self.threshold, self.min_rise = window, float(threshold), float(min_rise)
        self.warmup, self.policy = warmup, policy
        self.history: deque[float] = deque(maxlen=window)
        self.spikes: list[tuple[int, float, float]] = []  # (step, loss, median)

    def check(self, step: int, loss: float) -> bool:
        """Record ``loss`` of ``step``; True when it is a spike (the decision rule above)."""
        if not np.isfinite(loss):
            return False  # non-finite losses are the NonFiniteGuard's business
        if len(self.history) >= self.warmup:
            past = np.asarray(self.history, dtype=np.float64)
            median = float(np.median(past))
            spread = 1.4826 * float(np.median(np.abs(past - median)))
            if loss > median + self.threshold * spread and loss > (1.0 + self.min_rise) * median:
                self.spikes.append((step, loss, median))
                return True
        self.history.append(loss)
        return False

    def batch_end(self, state: State, logger: Logger) -> None:
        losses = state.total_loss_dict or {}
        if LOSS_KEY not in losses:
            return
        step = int(state.timestamp.batch)
        loss = float(losses[LOSS_KEY])
        if not self.check(step, loss):
            return
        median = self.spikes[-1][2]
        log.warning("step %d: loss spike %.4g (median of the last %d steps %.4g)", step, loss, len(self.history), median)
        logger.log_metrics({"loss_spike/count": len(self.spikes), "loss_spike/last_step": step})
        if self.policy == "stop":
            raise LossSpikeError(
                f"loss spike at step {step}: {loss:.4g} against a median of {median:.4g} over the last "
                f"{len(self.history)} steps (loss_spike policy=stop); resume from an earlier checkpoint, "
                "e.g. with a lower learning rate"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "spikes": [list(s) for s in self.spikes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((float(x) for x in state.get("history", [])), maxlen=self.window)
        self.spikes = [(int(s), float(v), float(m)) for s, v, m in state.get("spikes", [])]


def loss_spike(
    window: int = 100, threshold: float = 6.0, min_rise: float = 0.25, warmup: int = 20, policy: str = "warn"
) -> LossSpikeDetector:
    """Factory of the registered ``loss_spike`` callback."""
    return LossSpikeDetector(window, threshold, min_rise, warmup, policy)
