"""``cm3leon tokenizers``: train and inspect tokenizers.

Commands::

    cm3leon tokenizers train-text  CONFIG [key=value ...]   # byte-level BPE
    cm3leon tokenizers train-image CONFIG [key=value ...]   # VQ-GAN with Composer (resumable)
    cm3leon tokenizers presets                              # VQ-GAN presets and their sizes
    cm3leon tokenizers info DIR                             # describe an exported tokenizer
    cm3leon tokenizers reconstruct IMAGES --tokenizer DIR --out DIR   # encode -> decode
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

__all__ = ["tokenizers_command"]


def _load(config: str, overrides: tuple[str, ...]):
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.tokenizers.configs import TokenizersConfig, check_config

    try:
        cfg = load_config(TokenizersConfig, config, list(overrides))
        check_config(cfg, source=config)
    except (ConfigError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    return cfg


@click.group("tokenizers")
def tokenizers_command() -> None:
    """Train the text BPE and the VQ-GAN image tokenizer; inspect exported tokenizers."""
    # OpenMP threads that spin while waiting make small CPU convolutions up to 10x slower
    # on a shared machine (measured on 2 busy cores); sleeping waits cost nothing when the
    # machine is idle.  Only possible before torch (libgomp) is loaded; an explicit
    # setting in the environment wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@tokenizers_command.command("train-text")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_text(config: str, overrides: tuple[str, ...], quiet: bool) -> None:
    """Train byte-level BPE from CONFIG (dotted key=value OVERRIDES) and export tokenizer.json."""
    from cm3leon.tokenizers.train_text import train_text_tokenizer

    cfg = _load(config, overrides)
    if cfg.kind != "text":
        raise click.ClickException(f"{config}: kind is {cfg.kind!r}; use `cm3leon tokenizers train-image`")
    try:
        summary = train_text_tokenizer(cfg, source=config, show_progress=not quiet)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(summary, indent=2))


@tokenizers_command.command("train-image")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
def train_image(config: str, overrides: tuple[str, ...]) -> None:
    """Train (or resume) the VQ-GAN of CONFIG with Composer; export safetensors + JSON."""
    cfg = _load(config, overrides)
    if cfg.kind != "image":
        raise click.ClickException(f"{config}: kind is {cfg.kind!r}; use `cm3leon tokenizers train-text`")
    from cm3leon.tokenizers.train_image import train_image_tokenizer

    try:
        summary = train_image_tokenizer(cfg, source=config)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(summary, indent=2))


@tokenizers_command.command("reconstruct")
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option("--tokenizer", "tokenizer", required=True, help="Image tokenizer: registered NAME:DIR or DIR.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (atomic).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N images (by file name).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def reconstruct(images: str, tokenizer: str, out: str, limit: int | None, batch_size: int,
                overwrite: bool) -> None:  # fmt: skip
    """Encode the images of IMAGES to codes and decode them back (PNG, same file stems).

    Shows what the model can at best produce through the tokenizer: score the folder like
    generated images (e.g. `cm3leon world score OUT --scenes ...`).  OUT/summary.json holds
    the mean PSNR against the (resized) inputs.
    """
    from pathlib import Path

    import numpy as np

    from cm3leon.core.io import atomic_directory, atomic_write_json
    from cm3leon.core.tokenization import resolve_tokenizer

    try:
        tok = resolve_tokenizer(tokenizer, "image")
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise click.ClickException(f"--tokenizer {tokenizer}: {err}") from None
    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
    files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in suffixes)[:limit]
    if not files:
        raise click.ClickException(f"{images}: no image files ({', '.join(suffixes)})")
    psnr: list[float] = []
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                decoded = tok.decode(tok.encode([str(p) for p in chunk]))
                for path, image in zip(chunk, decoded, strict=True):
                    image.save(tmp / f"{path.stem}.png")
                    psnr.append(_psnr(path, image))
            atomic_write_json(tmp / "summary.json", {
                "images": len(files), "source": str(images), "tokenizer": tokenizer,
                "tokens_per_image": tok.num_tokens, "codebook_size": tok.codebook_size,
                "psnr": float(np.mean(psnr)),
            })  # fmt: skip
    except (ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps({"out": out, "images": len(files), "psnr": round(float(np.mean(psnr)), 3)}))


def _psnr(path: Any, image: Any) -> float:
    """PSNR (dB, 8-bit peak) of ``image`` against the file at ``path`` resized to its size."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as src:
        ref = np.asarray(src.convert("RGB").resize(image.size, Image.LANCZOS), dtype=np.float64)
    mse = float(np.mean((ref - np.asarray(image, dtype=np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-10))


@tokenizers_command.command("presets")
def presets() -> None:
    """List VQ-GAN presets: resolution, downsampling, codebook, tokens per image."""
    from cm3leon.tokenizers.vqgan_config import PRESETS

    for name, preset in sorted(PRESETS.items()):
        c = preset.config
        click.echo(
            f"{name:10s} {c.resolution}px  {c.downsample_factor}x down  {c.latent_size}x{c.latent_size}="
            f"{c.num_tokens} tokens  codebook {c.codebook_size}x{c.codebook_dim}"
        )


@tokenizers_command.command("info")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def info(directory: str) -> None:
    """Describe an exported tokenizer directory (text or image)."""
    from pathlib import Path

    from cm3leon.core.io import read_json

    path = Path(directory)
    if (path / "config.json").is_file():
        from cm3leon.tokenizers.image_tokenizer import load_image_tokenizer

        try:
            tok = load_image_tokenizer(path)
        except (ValueError, FileNotFoundError) as err:
            raise click.ClickException(str(err)) from None
        data = {"kind": "image", "codebook_size": tok.codebook_size, "image_size": tok.image_size,
                "num_tokens": tok.num_tokens, "parameters": tok.model.num_parameters(),
                "config": read_json(path / "config.json")["vqgan"], "info": tok.info}
    else:
        from cm3leon.tokenizers.text_bpe import load_text_tokenizer

        try:
            bpe = load_text_tokenizer(path)
        except (ValueError, FileNotFoundError) as err:
            raise click.ClickException(str(err)) from None
        data = {"kind": "text", "vocab_size": bpe.vocab_size, "info": bpe.info}
    click.echo(json.dumps(data, indent=2))
