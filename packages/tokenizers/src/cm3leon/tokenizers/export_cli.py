"""``cm3leon export``: a model in another ecosystem's format.

Commands::

    cm3leon export hf EXPORT_OR_CHECKPOINT OUT --text-tokenizer T --image-tokenizer I
                      [--summary summary.json] [--train-config config.yaml] [--overwrite]

Registered by cm3leon-tokenizers (see :mod:`cm3leon.tokenizers.hf_export` for why here).
"""

from __future__ import annotations

import click

__all__ = ["export_command"]


@click.group("export")
def export_command() -> None:
    """Export a model for other ecosystems (hf: a folder transformers loads with no cm3leon code)."""


@export_command.command("hf")
@click.argument("source", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--text-tokenizer", required=True,
              help="Text tokenizer the model was trained with: NAME, NAME:DIR or DIR (e.g. runs/tok/text/tokenizer).")
@click.option("--image-tokenizer", required=True, help="VQ image tokenizer: NAME, NAME:DIR or DIR.")
@click.option("--summary", type=click.Path(exists=True, dir_okay=False),
              help="summary.json whose evaluation numbers go into the model card.")
@click.option("--train-config", type=click.Path(exists=True, dir_okay=False),
              help="Training config.yaml for the card (default: the checkpoint's run's, if found).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export_hf_command(source: str, out: str, text_tokenizer: str, image_tokenizer: str, summary: str | None,
                      train_config: str | None, overwrite: bool) -> None:  # fmt: skip
    """Write SOURCE (an export directory, its model.safetensors, or a training checkpoint) to OUT
    as OPT weights + a PreTrainedTokenizerFast of the unified vocabulary + generation config +
    the VQ tokenizer (OUT/vq) + a model card: AutoModelForCausalLM / AutoTokenizer load it."""
    from cm3leon.tokenizers.hf_export import export_hf

    try:
        path = export_hf(source, out, text_tokenizer=text_tokenizer, image_tokenizer=image_tokenizer,
                         summary=summary, train_config=train_config, overwrite=overwrite)  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path} (AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
