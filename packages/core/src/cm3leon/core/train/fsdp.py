"""FSDP through Composer: which of Composer's two FSDP implementations runs, and how.

Composer 0.32.1 has two.  **FSDP1** (``FSDPConfig``, ``prepare_fsdp_module``) wraps the
model in ``FullyShardedDataParallel`` with ``device_id=torch.cuda.current_device()``
hard-coded, so it cannot run without a GPU (tried on 2 gloo ranks: ``RuntimeError: Found
no NVIDIA driver``).  **FSDP2** (``FSDP2Config``, ``parallelize_composer_model``) applies
``torch.distributed.fsdp.fully_shard`` to every module marked ``_fsdp_wrap`` (each
transformer block) and then the root; parameters become ``DTensor`` shards, and sharded
checkpoints are ``torch.distributed.checkpoint`` directories (``.metadata`` + one
``__{rank}_0.distcp`` per rank).  It runs on CPU ranks (gloo) as on GPUs (NCCL).

``fsdp.version: 2`` (the default, and what the shipped 350m/760m/7b configs run) is
therefore the path proven on the CPU: ``tests/core/train/test_fsdp.py`` trains the
shipped 7b config (model scaled down, its ``fsdp`` section and activation checkpointing
kept; 350m/760m build the same FSDP config without activation checkpointing) on 2 gloo
ranks, SIGKILLs every rank, and resumes from the sharded checkpoint bitwise.  ``fsdp.version: 1`` keeps Composer's FSDP1 for GPUs.

The :class:`~cm3leon.core.train.config.FSDPSection` fields are FSDP1's names; for FSDP2
they map as follows (:func:`fsdp_problems` rejects what has no FSDP2 meaning):

* ``sharding_strategy``: ``FULL_SHARD`` -> ``reshard_after_forward=True`` (ZeRO-3),
  ``SHARD_GRAD_OP`` -> ``False`` (ZeRO-2); the hybrid and ``NO_SHARD`` strategies are
  errors (use DDP: ``fsdp.enabled=false``);
* ``mixed_precision``, ``state_dict_type``, ``verbose``, and the model's
  ``activation_checkpointing``: the same fields of ``FSDP2Config``;
* ``backward_prefetch``, ``forward_prefetch``, ``limit_all_gathers``, ``use_orig_params``:
  FSDP1 knobs that FSDP2 does not have (it prefetches the next block's all-gather
  itself, keeps original parameters, and bounds in-flight all-gathers by its stream
  design); accepted and not used;
* ``cpu_offload``: an error (Composer's ``FSDP2Config`` has no offload policy);
* ``sync_module_states``: set by Composer when rank 0 holds the initialised model and
  the others a meta-device one (:func:`builds_on_meta`).

**Initialisation without a full model on every rank.**  With FSDP2 on more than one rank,
only global rank 0 builds the model with real storage (the ordinary seeded build, so the
initial weights equal a DDP or single-process run's); the other ranks build it on the
``meta`` device (:func:`cm3leon.core.model.meta_model`: shapes, no storage).  Composer
sees that mix, sets ``sync_module_states``, shards the model and broadcasts rank 0's
values into every rank's shards -- on a node of 8 GPUs the 7B preset is built once
(27 GB of host memory), not 8 times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composer.utils import dist

if TYPE_CHECKING:  # config.py imports this module's checks
    from cm3leon.core.train.config import FSDPSection

__all__ = ["FSDP2_STRATEGIES", "builds_on_meta", "composer_parallelism", "fsdp_problems"]

#: FSDP1 sharding strategies with an FSDP2 meaning: ``reshard_after_forward``.
FSDP2_STRATEGIES = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}


def fsdp_problems(section: FSDPSection, device: str) -> list[str]:
    """What is wrong with an enabled ``fsdp`` section for ``device`` (``cpu``/``gpu``/``auto``)."""
    if not section.enabled:
        return []
    if section.version not in (1, 2):
        return [f"fsdp.version: 1 (Composer's FSDP1) or 2 (FSDP2, fully_shard), got {section.version!r}"]
    if section.version == 1:
        if device == "cpu":
            return ["fsdp.version: 1 (Composer's FSDP1) needs GPUs (it pins torch.cuda.current_device()); "
                    "use fsdp.version=2 on the CPU"]
        return []
    problems = []
    if section.sharding_strategy not in FSDP2_STRATEGIES:
        problems.append(f"fsdp.sharding_strategy: {section.sharding_strategy!r} has no FSDP2 (fsdp.version=2) "
                        f"equivalent; use one of {sorted(FSDP2_STRATEGIES)}, or fsdp.version=1 on GPUs")
    if section.cpu_offload:
        problems.append("fsdp.cpu_offload: not available with fsdp.version=2 (Composer's FSDP2Config "
                        "has no offload policy); use fsdp.version=1 on GPUs")
    return problems


def composer_parallelism(section: FSDPSection, *, activation_checkpointing: bool) -> dict[str, Any] | None:
    """``Trainer(parallelism_config=)`` for ``section``: ``None`` (DDP / single process),
    ``{"fsdp": {...FSDPConfig fields}}`` (version 1) or ``{"fsdp": FSDP2Config}`` (version 2).

    Raises:
        ValueError: a section :func:`fsdp_problems` rejects (checked by the config
            validation before this is reached).
    """
    if not section.enabled:
        return None
    problems = fsdp_problems(section, "gpu")
    if problems:
        raise ValueError("; ".join(problems))
    if section.version == 1:
        from dataclasses import asdict

        fsdp = {k: v for k, v in asdict(section).items() if k not in ("enabled", "version")}
        fsdp["activation_checkpointing"] = activation_checkpointing
        return {"fsdp": fsdp}
    import warnings

    from composer.utils.parallelism import FSDP2Config

    with warnings.catch_warnings():  # "FSDP2 Config/APIs are experimental": said once, in the docs
        warnings.filterwarnings("ignore", message="FSDP2 Config/APIs are experimental")
        config = FSDP2Config(
            reshard_after_forward=FSDP2_STRATEGIES[section.sharding_strategy],
            activation_checkpointing=activation_checkpointing,
            activation_cpu_offload=section.activation_cpu_offload,
            state_dict_type=section.state_dict_type,
            mixed_precision=section.mixed_precision,
            verbose=section.verbose,
        )
    return {"fsdp": config}


def builds_on_meta(section: FSDPSection) -> bool:
    """Whether this rank builds the model on the ``meta`` device (FSDP2, > 1 rank, not rank 0)."""
    return (section.enabled and section.version == 2 and dist.get_world_size() > 1
            and dist.get_global_rank() != 0)
