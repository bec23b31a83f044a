"""``cm3leon generate``: prompts from the command line or a JSONL file -> PNG grids and JSONL.

::

    cm3leon generate configs/generate/small.yaml model.export=runs/export \\
        tokenizer.text=bpe:runs/tokenizers/text tokenizer.image=vqgan:runs/tokenizers/image \\
        --prompt "a red cube on a blue floor" --num-candidates 8 --seed 0 --out runs/generate/cube
"""

from __future__ import annotations

import json

import click

__all__ = ["generate_command"]


@click.command("generate")
@click.argument("config", required=False, type=click.Path(dir_okay=False, exists=True))
@click.argument("overrides", nargs=-1)
@click.option("--prompt", "texts", multiple=True, help="A text-to-image prompt (repeatable).")
@click.option("--prompts", "prompts_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="JSONL prompt file (any task; see cm3leon.decoding.config).")  # fmt: skip
@click.option("--model", "export", default=None, help="Model export directory (overrides model.export).")
@click.option("--text-tokenizer", default=None, help="NAME, NAME:DIR or DIR (overrides tokenizer.text).")
@click.option("--image-tokenizer", default=None, help="NAME, NAME:DIR or DIR (overrides tokenizer.image).")
@click.option("--out", default=None, help="Output directory (overrides output).")
@click.option("--num-candidates", type=int, default=None, help="Candidates per prompt (overrides num_candidates).")
@click.option("--seed", type=int, default=None, help="Sampling seed (overrides seed).")
@click.option("--dtype", default=None, type=click.Choice(["fp32", "bf16", "fp16", "float32", "bfloat16", "float16"]),
              help="Weight dtype (overrides model.dtype); bf16 halves the bytes each decode step reads.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def generate_command(
    config: str | None,
    overrides: tuple[str, ...],
    texts: tuple[str, ...],
    prompts_file: str | None,
    export: str | None,
    text_tokenizer: str | None,
    image_tokenizer: str | None,
    out: str | None,
    num_candidates: int | None,
    seed: int | None,
    dtype: str | None,
    overwrite: bool,
) -> None:
    """Generate images and text with a trained model, deterministically for a seed.

    CONFIG is a configs/generate/*.yaml file (optional); OVERRIDES are dotted key=value
    pairs (decoding.image.pipelines.0.guidance.options.scale=4.0).  Writes OUT/results.jsonl,
    OUT/grids/<id>.png (all candidates, best first), OUT/images/<id>/<rank>.png and
    OUT/manifest.json, atomically (OUT/COMPLETE last).
    """
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.decoding.config import GenerateConfig, PromptFileError
    from cm3leon.decoding.options import DecodingOptionsError
    from cm3leon.decoding.prompts import Prompt
    from cm3leon.decoding.run import run_generation

    flags = {"model.export": export, "tokenizer.text": text_tokenizer, "tokenizer.image": image_tokenizer,
             "output": out, "num_candidates": num_candidates, "seed": seed, "prompts": prompts_file,
             "model.dtype": dtype}  # fmt: skip
    extra = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    try:
        cfg = load_config(GenerateConfig, config, [*overrides, *extra])
        prompts = [Prompt.text_to_image(t, id=f"prompt{i}", meta={"task": "text_to_image"}) for i, t in enumerate(texts)]
        summary = run_generation(cfg, prompts=prompts, overwrite=overwrite)
    except (ConfigError, DecodingOptionsError, PromptFileError, FileExistsError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    except ValueError as err:
        raise click.ClickException(f"generate: {err}") from None
    click.echo(json.dumps(summary, indent=2, sort_keys=True))
