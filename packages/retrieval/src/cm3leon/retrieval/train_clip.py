"""Training a small CLIP (open_clip model classes + ``ClipLoss``) with Composer.

Nothing can be downloaded here, so the frozen retriever encoder of §2.1 is trained
on the project's own caption-image documents.  The loop is Composer's::

    FIT_START            record the batch we resume from (autoresume)
    for batch (images (B,3,H,W), tokens (B,L)):
        forward          image/text features, unit norm, and exp(logit_scale)
        loss             open_clip ClipLoss (symmetric InfoNCE, gathered across ranks)
        BATCH_END        ClampLogitScale: logit_scale <= ln(100), as open_clip does
        BATCH_CHECKPOINT save every `save_interval` into OUTPUT/checkpoints/
    rank 0: export OUTPUT/encoder/ (open_clip local-dir) and OUTPUT/metrics.json

A run killed at any point resumes from its latest checkpoint when the same
command is repeated (``autoresume=True``); a finished run is a cache hit.

Tokenizer: open_clip's ``SimpleTokenizer`` (CLIP's BPE, 49,408 ids).  Its merges
file ships inside the open_clip package (``bpe_simple_vocab_16e6.txt.gz``), so it
works offline, and it is the tokenizer of the paper's ViT-B-32 — an encoder
trained here is a drop-in replacement for a downloaded one.  The cost is a
49,408-row text embedding (3-5M parameters at width 64-96), cheap on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cm3leon.core.documents import Document
from cm3leon.core.precision import precision_problem, resolve_precision
from cm3leon.retrieval.config import ClipTrainConfig
from cm3leon.retrieval.encoder import (
    ClipDocumentEncoder,
    build_clip_model,
    load_encoder,
    model_config,
    save_encoder,
)

__all__ = ["ClipPairs", "caption_image_pairs", "clip_recall", "train_clip"]

log = logging.getLogger("cm3leon.retrieval.train_clip")


def caption_image_pairs(docs: Sequence[Document]) -> list[Document]:
    """Documents usable for CLIP training: non-empty text and at least one pixel image."""
    return [d for d in docs if d.text.strip() and any(s.image is not None for s in d.images)]


class ClipPairs(torch.utils.data.Dataset):
    """``(image (3, H, W), tokens (L,))`` from caption-image documents (first image)."""

    def __init__(self, docs: Sequence[Document], transform: Any, tokenizer: Any) -> None:
        self.docs = list(docs)
        self.transform = transform
        self.tokens = tokenizer([d.text for d in self.docs])  # (N, L)

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = next(s for s in self.docs[i].images if s.image is not None).pil()
        return self.transform(image), self.tokens[i]


def _composer_parts(clip: torch.nn.Module, cpu_autocast: bool = False) -> tuple[Any, Any]:
    """The ComposerModel and the logit-scale callback (composer imported lazily).

    ``cpu_autocast``: the forward pass runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``
    (``precision: amp_bf16`` on the CPU; Composer's own autocast is CUDA-only); the
    features are cast back to fp32 for the loss.
    """
    from composer import Callback, Event, State
    from composer.loggers import Logger
    from composer.models import ComposerModel
    from composer.utils import dist
    from open_clip.loss import ClipLoss

    class ClipComposerModel(ComposerModel):
        """open_clip CLIP + ClipLoss as a Composer model."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.clip = model
            self.cpu_autocast = cpu_autocast
            self.loss_fn = ClipLoss(
                local_loss=False, gather_with_grad=True, rank=dist.get_global_rank(),
                world_size=dist.get_world_size(),
            )

        def forward(self, batch: Any) -> Any:
            images, tokens = batch
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
                return self.clip(images, tokens)  # (B, D), (B, D), scalar; bf16 under CPU autocast

        def loss(self, outputs: Any, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
            image_features, text_features, logit_scale = (x.float() for x in outputs[:3])  # no-op in fp32
            return self.loss_fn(image_features, text_features, logit_scale)

    class ClampLogitScale(Callback):
        """Keep ``logit_scale`` in ``[0, ln 100]`` after each step; record the resume point."""

        def __init__(self, model: torch.nn.Module) -> None:
            self.model = model  # the bare CLIP: state.model may be wrapped in DDP
            self.resumed_from = 0

        def run_event(self, event: Event, state: State, logger: Logger) -> None:
            if event == Event.FIT_START:
                self.resumed_from = int(state.timestamp.batch)
            elif event == Event.BATCH_END:
                with torch.no_grad():
                    self.model.logit_scale.clamp_(0, math.log(100))

    return ClipComposerModel(clip), ClampLogitScale(clip)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases, embeddings and logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _run_key(cfg: ClipTrainConfig) -> dict[str, Any]:
    """Settings that define a run's result; a finished run with the same key is reused."""
    key = asdict(cfg)
    for k in ("output", "device", "num_workers", "save_interval"):
        key.pop(k)
    if key["precision"] == "fp32":  # the key runs had before `precision` existed
        key.pop("precision")
    return key


def _check_resumable(out: Path, cfg: ClipTrainConfig) -> None:
    """Refuse to resume checkpoints of a run with other settings (``max_duration`` may grow)."""
    from cm3leon.core.io import atomic_write_json, read_json

    key = {k: v for k, v in _run_key(cfg).items() if k != "max_duration"}
    marker = out / "run.json"
    if marker.is_file():
        previous = read_json(marker)
        changed = sorted(k for k in set(previous) | set(key) if previous.get(k) != key.get(k))
        if changed:
            raise ValueError(
                f"{out}: holds a CLIP run with different settings ({', '.join(changed)}); "
                "use another output directory or delete this one"
            )
    elif int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(marker, key)


def clip_recall(encoder: ClipDocumentEncoder, docs: Sequence[Document], ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Image -> caption recall@k over the *distinct* captions of ``docs``.

    A hit is the image's own caption text (identical captions are one candidate);
    chance recall@k is ``k / number of distinct captions``.
    """
    pairs = caption_image_pairs(docs)
    captions = sorted({d.text for d in pairs})
    index = {c: i for i, c in enumerate(captions)}
    images = [next(s for s in d.images if s.image is not None).pil() for d in pairs]
    img = encoder.encode_image(images)  # (N, D)
    txt = encoder.encode_text(captions)  # (C, D)
    sims = img @ txt.T  # (N, C)
    truth = torch.tensor([index[d.text] for d in pairs])
    rank = (sims > sims[torch.arange(len(pairs)), truth][:, None]).sum(1)  # 0 = best
    out: dict[str, Any] = {"images": len(pairs), "captions": len(captions)}
    for k in ks:
        out[f"recall@{k}"] = float((rank < k).float().mean())
        out[f"chance@{k}"] = min(1.0, k / len(captions))
    return out


def train_clip(
    cfg: ClipTrainConfig,
    *,
    documents: Sequence[Document] | None = None,
    progress: bool = True,
    extra_callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train (or resume, or reuse) a small CLIP; return the metrics written to ``metrics.json``.

    Args:
        cfg: the ``train_clip`` config section.
        documents: use these documents instead of ``cfg.data`` (tests, notebooks).
        progress: show Composer's progress bar.
        extra_callbacks: more Composer callbacks (tests inject interruptions).
    """
    from cm3leon.core.io import atomic_write_json, is_complete, read_json

    out = Path(cfg.output)
    problem = precision_problem(cfg.precision, cfg.device, key="train_clip.precision")
    if problem:
        raise ValueError(problem)
    metrics_path = out / "metrics.json"
    if is_complete(out / "encoder") and metrics_path.is_file():
        previous = read_json(metrics_path)
        if previous.get("run_key") == _run_key(cfg):
            log.info("%s: finished run with the same settings found; reusing it", out)
            return previous
    if documents is None:
        from cm3leon.retrieval.data import load_documents

        documents = load_documents(cfg.data)
    pairs = caption_image_pairs(documents)
    if len(pairs) <= cfg.eval_size + cfg.batch_size:
        raise ValueError(
            f"train_clip: {len(pairs)} caption-image documents; need more than eval_size "
            f"({cfg.eval_size}) + batch_size ({cfg.batch_size})"
        )
    _check_resumable(out, cfg)
    train_docs, eval_docs = pairs[: len(pairs) - cfg.eval_size], pairs[len(pairs) - cfg.eval_size :]
    model_cfg = model_config(cfg.arch, cfg.model_overrides)
    torch.manual_seed(cfg.seed)
    clip = build_clip_model(model_cfg)
    resumed_from = _fit(cfg, clip, model_cfg, train_docs, progress, extra_callbacks)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    save_encoder(clip, model_cfg, out / "encoder", overwrite=True, extra={"arch": cfg.arch, "trained_by": "cm3leon"})
    encoder = load_encoder(out / "encoder")
    metrics = {
        "eval": clip_recall(encoder, eval_docs),
        "train_documents": len(train_docs),
        "resumed_from_batch": resumed_from,
        "parameters": sum(p.numel() for p in clip.parameters()),
        "encoder": str(out / "encoder"),
        "fingerprint": encoder.fingerprint,
        "run_key": _run_key(cfg),
    }
    atomic_write_json(metrics_path, metrics)
    log.info("clip metrics: %s", json.dumps(metrics["eval"]))
    return metrics


def _fit(cfg: ClipTrainConfig, clip: torch.nn.Module, model_cfg: dict[str, Any], docs: Sequence[Document],
         progress: bool, extra_callbacks: Sequence[Any]) -> int:
    """Run Composer's Trainer; returns the batch training resumed from (0 = fresh start)."""
    import open_clip
    from composer import Trainer
    from composer.loggers import FileLogger
    from composer.optim import CosineAnnealingWithWarmupScheduler
    from composer.utils import dist
    from open_clip.transform import PreprocessCfg, image_transform_v2

    out = Path(cfg.output)
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"].get("context_length", 77))
    transform = image_transform_v2(PreprocessCfg(size=clip.visual.image_size), is_train=False)
    dataset = ClipPairs(docs, transform, tokenizer)
    sampler = dist.get_sampler(dataset, shuffle=True, drop_last=True, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                                         drop_last=True, num_workers=cfg.num_workers)
    precision = resolve_precision(cfg.precision, "gpu" if cfg.device == "gpu" else "cpu",
                                  key="train_clip.precision")
    log.info("%s", precision.describe())
    model, clamp = _composer_parts(clip, precision.cpu_autocast)
    optimizer = torch.optim.AdamW(_param_groups(clip, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    trainer = Trainer(
        model=model,
        train_dataloader=loader,
        max_duration=cfg.max_duration,
        optimizers=optimizer,
        schedulers=CosineAnnealingWithWarmupScheduler(t_warmup=cfg.warmup),
        device=cfg.device,
        precision=precision.composer_precision,  # CPU bf16: the model's own autocast
        callbacks=[clamp, *extra_callbacks],
        loggers=[FileLogger(str(out / "train.log"), capture_stdout=False, capture_stderr=False)],
        save_folder=str(out / "checkpoints"),
        save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=2,
        autoresume=True,
        run_name="clip",
        seed=cfg.seed,
        progress_bar=progress,
        log_to_console=False,
        python_log_level=None,
    )
    try:
        trainer.fit()
    finally:
        trainer.close()
    return clamp.resumed_from


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cm3leon.retrieval.train_clip CONFIG [key=value ...]`` (``composer -n N -m``)."""
    import sys

    from cm3leon.core.config import load_config
    from cm3leon.retrieval.config import RetrievalConfig, section

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m cm3leon.retrieval.train_clip CONFIG.yaml [key=value ...]")
    cfg = section(load_config(RetrievalConfig, args[0], args[1:]), "train_clip", source=args[0])
    metrics = train_clip(cfg, progress=int(os.environ.get("RANK", "0")) == 0)
    if metrics:
        print(json.dumps(metrics["eval"], indent=2))


if __name__ == "__main__":
    main()
