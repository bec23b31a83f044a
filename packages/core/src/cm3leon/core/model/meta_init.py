"""Build a model on the ``meta`` device, then materialise it with its own §2.3 init.

A large preset built the ordinary way exists in full, in fp32, on the CPU of every rank
before anything shards it (``cm3leon_7b``: 6.7B parameters, 27 GB).  Built on the meta
device it has shapes and no storage; this module then gives each parameter the value the
ordinary build would have given it, **bitwise, for the same seed**, one parameter at a
time::

    torch.manual_seed(seed)
    model = meta_model(preset_config("cm3leon_7b"))    # no parameter memory, no RNG drawn
    ...                                                # shard / wrap it (still on meta)
    materialize_(model, "cpu")                         # == cm3leon_7b() under the same seed

How the values come out equal: the ordinary build draws from torch's global CPU generator
in a fixed order -- each ``nn.Linear``/``nn.Embedding`` default-initialises as it is
constructed (module order), then :meth:`CM3LeonTransformer.reset_parameters` runs
:meth:`~CM3LeonTransformer.init_steps` (truncated normals in module order, the position
table, zeros for the output layers).  :func:`init_values` replays that whole sequence with
the same generator state: a step whose result a later step overwrites (the default inits,
the first draw of the position table and of the output layers) runs on a scratch tensor
that is freed at once, so the draws -- and with them every later value -- are exactly the
ordinary build's.  Peak memory: the largest single parameter (7B: the 64,532 x 4096
embedding, 1.06 GB) plus what the caller keeps.  The caller's own use of the global
generator between items does not disturb the sequence; afterwards the global generator is
where the ordinary build leaves it.

With FSDP2: ``fully_shard`` the meta model (each block, then the root), then
``materialize_(model, device)``: each rank keeps only its slice of each value as it comes
(tested on 2 gloo ranks: the gathered parameters equal the ordinary build bitwise), so no
rank ever holds more than its shards plus one full parameter.  Composer's FSDP1
(``sync_module_states``) instead materialises rank 0 and broadcasts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial

import torch
from torch import nn

from cm3leon.core.model.config import TransformerConfig
from cm3leon.core.model.transformer import CM3LeonTransformer

__all__ = ["init_values", "materialize_", "meta_model"]


def meta_model(config: TransformerConfig) -> CM3LeonTransformer:
    """``CM3LeonTransformer(config)`` on the meta device: shapes only, no RNG drawn."""
    with torch.device("meta"):
        return CM3LeonTransformer(config)


class _Replay:
    """Runs init steps on torch's global CPU generator from a saved state, not the caller's."""

    def __init__(self) -> None:
        self.state = torch.get_rng_state()

    def __call__(self, step: Callable[[], object]) -> None:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            with torch.no_grad():
                step()
            self.state = torch.get_rng_state()
        finally:
            torch.set_rng_state(outer)


def _construction_draws(model: nn.Module, replay: _Replay) -> None:
    """Replay the default init each submodule drew as it was constructed (module order)."""
    for name, module in model.named_modules():
        if module is model or not list(module.parameters(recurse=False)):
            continue
        if list(module.children()) or not hasattr(module, "reset_parameters"):
            raise TypeError(f"{name}: cannot replay the construction init of {type(module).__name__}")
        # Swap in plain CPU scratch parameters of the full shape (the module's own may be
        # meta, real or sharded DTensors), let the module draw its default init, swap back.
        own = dict(module._parameters)
        try:
            for key, p in own.items():
                if p is not None:
                    scratch = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                    module._parameters[key] = nn.Parameter(scratch, requires_grad=False)
            replay(module.reset_parameters)
        finally:
            module._parameters.update(own)


def init_values(
    model: CM3LeonTransformer, names: Iterable[str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, initial value)`` of each parameter, as the ordinary build draws them.

    Call right after :func:`meta_model` under the seed the ordinary build would have had.
    The values are computed on the CPU (the ordinary build's generator) in the parameters'
    dtype, one at a time; the iterator holds none of them after yielding.  Once it is
    exhausted, the global generator is where the ordinary build leaves it.

    Args:
        model: a :class:`CM3LeonTransformer`, typically on the meta device (only shapes
            and dtypes are read).
        names: parameter names to yield (default: all); the others are still drawn
            (into scratch), so every value equals the ordinary build's.
    """
    wanted = None if names is None else set(names)
    params = dict(model.named_parameters())
    unknown = sorted((wanted or set()) - set(params))
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}")
    replay = _Replay()
    _construction_draws(model, replay)
    steps = model.init_steps()
    last = {name: i for i, (name, _) in enumerate(steps)}
    for i, (name, fill) in enumerate(steps):
        param = params[name]
        value = torch.empty(param.shape, dtype=param.dtype, device="cpu")
        replay(partial(fill, value))
        if last[name] == i and (wanted is None or name in wanted):
            yield name, value
        del value
    torch.set_rng_state(replay.state)  # where the ordinary build leaves the generator


def materialize_(model: CM3LeonTransformer, device: torch.device | str = "cpu") -> CM3LeonTransformer:
    """Allocate a meta-device model on ``device`` and fill it with :func:`init_values`.

    Equals the ordinary build under the same seed, bitwise (see the module docstring).
    A model whose parameters FSDP2's ``fully_shard`` turned into sharded ``DTensor`` s gets
    only each rank's shard: no rank holds more than its shards plus one full parameter.
    Returns ``model`` (changed in place).
    """
    model.to_empty(device=device)
    with torch.no_grad():
        for name, value in init_values(model):
            param = model.get_parameter(name)
            target = param.to_local() if _is_dtensor(param) else param
            target.copy_(_local_part(param, value))
    return model


def _is_dtensor(t: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return False
    return isinstance(t, DTensor)


def _local_part(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` itself, or this rank's shard of it for a sharded (FSDP2) parameter."""
    if not _is_dtensor(param):
        return value
    from torch.distributed.tensor import distribute_tensor

    # src_data_rank=None: every rank holds the full value and keeps its slice, no collective.
    local = distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                              src_data_rank=None)
    return local.to_local()
