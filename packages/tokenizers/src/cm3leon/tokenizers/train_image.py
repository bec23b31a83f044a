"""``cm3leon tokenizers train-image``: train the VQ-GAN with Composer, export safetensors.

:func:`train_image_tokenizer` reads as the list of builder calls it is::

    config  -> VQGANConfig (preset + overrides) -> VQModel
    data    -> FolderImageDataset | MDSImageDataset -> DataLoader
    trainer -> Composer Trainer(autoresume, atomic checkpoints every N steps, progress
                                bar, DeadCodeRestart, core's JSON-lines metrics)
    fit     -> export VQGANTokenizer (config.json + model.safetensors) atomically

Run directory (``output_dir``)::

    config.yaml        resolved config
    train.log          python logging of the run
    metrics.jsonl      every logged metric, one JSON object per step
    checkpoints/       Composer checkpoints (autoresume reads latest-rank0.pt)
    tokenizer/         the exported tokenizer (complete when COMPLETE exists)
    summary.json       PSNR / codebook usage before and after training

Resumption: running the same command again continues from the latest checkpoint
(model, optimizer, scheduler, step, RNG and the usage EMA).  Checkpoints are written
atomically and loaded only through core's weights-only guard
(:mod:`cm3leon.core.train.composer_checkpoints`); the exported tokenizer is safetensors + JSON.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.optim import CosineAnnealingWithWarmupScheduler
from torch.utils.data import DataLoader, Dataset

from cm3leon.core.config import save_config
from cm3leon.core.io import atomic_write_json
from cm3leon.core.precision import ResolvedPrecision, resolve_precision
from cm3leon.core.train.composer_checkpoints import (
    AtomicCheckpointSaver,
    check_resume_checkpoint,
    install_checkpoint_guard,
)
from cm3leon.core.train.logs import JSONLLogger
from cm3leon.tokenizers.configs import (
    ImageDataConfig,
    ImageTrainConfig,
    TokenizersConfig,
    check_config,
)
from cm3leon.tokenizers.image_data import (
    FolderImageDataset,
    MDSImageDataset,
    expand_image_paths,
    find_mds_dirs,
)
from cm3leon.tokenizers.image_io import Preprocess
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer
from cm3leon.tokenizers.metrics import CodebookPerplexity, CodebookUsage, reconstruction_psnr
from cm3leon.tokenizers.vq_training import DeadCodeRestart, LossWeights, VQGANComposerModel
from cm3leon.tokenizers.vqgan import VQModel
from cm3leon.tokenizers.vqgan_config import vqgan_preset

__all__ = ["build_image_dataset", "evaluate_reconstruction", "train_image_tokenizer"]

log = logging.getLogger(__name__)


def build_image_dataset(data: ImageDataConfig, prep: Preprocess, *, seed: int = 0, batch_size: int = 1) -> Dataset:
    """The training dataset of ``data`` (format ``auto`` picks MDS when an ``index.json`` exists)."""
    fmt = data.format
    if fmt == "auto":
        fmt = "mds" if find_mds_dirs(data.paths) else "folder"
    if fmt == "mds":
        dirs = find_mds_dirs(data.paths)
        if not dirs:
            raise FileNotFoundError(f"no MDS index.json under {data.paths}")
        return MDSImageDataset(dirs, prep, shuffle=True, seed=seed, flip_p=data.flip_p, batch_size=batch_size)
    return FolderImageDataset(expand_image_paths(data.paths), prep, flip_p=data.flip_p)


def _first_images(dataset: Dataset, n: int) -> torch.Tensor:
    """Up to ``n`` un-augmented images of ``dataset`` (the fixed evaluation batch)."""
    if isinstance(dataset, FolderImageDataset):
        rows = []
        for i in range(len(dataset)):
            if len(rows) >= n:
                break
            try:
                rows.append(dataset.load(i))
            except ValueError:
                continue
        if not rows:
            raise ValueError(f"none of the {len(dataset)} training images could be read")
        return torch.stack(rows)
    flip, dataset.flip_p = dataset.flip_p, 0.0  # type: ignore[attr-defined]
    try:
        rows = []
        for pixels in dataset:  # type: ignore[attr-defined]
            rows.append(pixels)
            if len(rows) >= n:
                break
    finally:
        dataset.flip_p = flip  # type: ignore[attr-defined]
    return torch.stack(rows)


@torch.no_grad()
def evaluate_reconstruction(model: VQModel, pixels: torch.Tensor, *, batch_size: int = 64) -> dict[str, float]:
    """PSNR, codebook usage and perplexity of ``model`` on ``pixels`` ``(N, 3, S, S)``."""
    was_training = model.training
    model.eval()
    k = model.config.codebook_size
    psnr, usage, perplexity = reconstruction_psnr(), CodebookUsage(k), CodebookPerplexity(k)
    for start in range(0, pixels.shape[0], batch_size):
        x = pixels[start : start + batch_size].to(next(model.parameters()).device)
        out = model(x)
        psnr.update(out.reconstruction.clamp(-1, 1), x)
        usage.update(out.codes)
        perplexity.update(out.codes)
    model.train(was_training)
    return {"psnr": float(psnr.compute()), "codebook_usage": float(usage.compute()),
            "perplexity": float(perplexity.compute()), "images": int(pixels.shape[0])}


def _setup_file_logging(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _build_trainer(cfg: TokenizersConfig, img: ImageTrainConfig, composer_model: VQGANComposerModel,
                   loader: DataLoader, out: Path, precision: ResolvedPrecision) -> Trainer:
    optimizer = torch.optim.Adam(composer_model.parameters(), lr=img.optim.lr, betas=tuple(img.optim.betas),
                                 weight_decay=img.optim.weight_decay)
    scheduler = CosineAnnealingWithWarmupScheduler(t_warmup=f"{img.optim.warmup_steps}ba", alpha_f=0.1)
    callbacks: list = [
        AtomicCheckpointSaver(out / "checkpoints", save_interval=f"{img.save_interval}ba",
                              num_checkpoints_to_keep=img.checkpoints_to_keep),
    ]
    if img.restarts.enabled:
        callbacks.append(DeadCodeRestart(img.restarts.every, img.restarts.threshold, img.restarts.warmup))
    return Trainer(
        model=composer_model,
        train_dataloader=loader,
        max_duration=f"{img.max_steps}ba",
        optimizers=optimizer,
        schedulers=scheduler,
        step_schedulers_every_batch=True,
        callbacks=callbacks,
        loggers=[JSONLLogger(out / "metrics.jsonl")],
        run_name=cfg.run_name,
        autoresume=True,  # finds the checkpoint folder through the AtomicCheckpointSaver
        device=img.device,
        precision=precision.composer_precision,  # CPU bf16: the model's own autocast
        seed=cfg.seed,
        progress_bar=img.progress_bar,
        log_to_console=False,
    )


def train_image_tokenizer(cfg: TokenizersConfig, *, source: str = "<config>") -> dict[str, Any]:
    """Train (or resume) the VQ-GAN described by ``cfg`` and export it.

    Returns:
        The run summary (also written to ``summary.json``): evaluation PSNR, codebook
        usage and perplexity before and after training, steps, parameter count, export path.
    """
    check_config(cfg, source=source)
    if cfg.kind != "image" or cfg.image is None:
        raise ValueError(f"{source}: train-image needs kind 'image', got {cfg.kind!r}")
    img, out = cfg.image, Path(cfg.output_dir)
    handler = _setup_file_logging(out / "train.log")
    try:
        save_config(cfg, out / "config.yaml")
        torch.manual_seed(cfg.seed)
        vq_config = vqgan_preset(img.model.preset, **dict(img.model.overrides))
        model = VQModel(vq_config)
        prep = Preprocess(img.model.image_size or vq_config.resolution)
        dataset = build_image_dataset(img.data, prep, seed=cfg.seed, batch_size=img.batch_size)
        eval_pixels = _first_images(dataset, max(256, img.batch_size))
        if eval_pixels.shape[0] < img.batch_size:  # drop_last would leave no batch at all
            raise ValueError(f"{source}: the training data {img.data.paths} holds only {eval_pixels.shape[0]} "
                             f"usable images, fewer than image.batch_size={img.batch_size}")
        eval_pixels = eval_pixels[:256]
        before = evaluate_reconstruction(model, eval_pixels)
        log.info("before training: %s", before)
        is_map = isinstance(dataset, FolderImageDataset)
        loader = DataLoader(dataset, batch_size=img.batch_size, shuffle=is_map, drop_last=True,
                            num_workers=img.data.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed) if is_map else None)
        precision = resolve_precision(img.precision, "gpu" if img.device == "gpu" else "cpu",
                                      key="image.precision")
        log.info("%s", precision.describe())
        composer_model = VQGANComposerModel(
            model,
            weights=LossWeights(img.loss.l1, img.loss.l2, img.loss.codebook),
            usage_decay=img.restarts.usage_decay,
            cpu_autocast=precision.cpu_autocast,
        )
        install_checkpoint_guard()  # Composer's resume loads go through core's weights-only checks
        resume = check_resume_checkpoint(out / "checkpoints", None, True)
        if resume is not None:
            log.info("resuming from %s", resume)
        trainer = _build_trainer(cfg, img, composer_model, loader, out, precision)
        trainer.fit()
        steps = int(trainer.state.timestamp.batch)
        trainer.close()
        after = evaluate_reconstruction(model, eval_pixels)
        log.info("after %d steps: %s", steps, after)
        summary = {"steps": steps, "before": before, "after": after, "parameters": model.num_parameters(),
                   "preset": img.model.preset, "tokens_per_image": (prep.size // vq_config.downsample_factor) ** 2,
                   "export": str(out / "tokenizer")}
        tokenizer = VQGANTokenizer(model.eval(), prep, info={"run_name": cfg.run_name, **summary})
        tokenizer.save(out / "tokenizer", overwrite=True)
        atomic_write_json(out / "summary.json", summary)
        return summary
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
