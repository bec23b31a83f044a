"""``cm3leon serve``: start the playground on a local port.

::

    cm3leon serve --model runs/export --text-tokenizer bpe:runs/tok/text \\
        --image-tokenizer vqgan:runs/tok/image --bank runs/bank --clip runs/clip --port 8000

Prints ``cm3leon playground: http://HOST:PORT/`` once the socket is bound (``--port 0``
picks a free port), then serves until interrupted.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import click

__all__ = ["build_playground", "serve_command"]


@click.command("serve")
@click.option(
    "--model", "export", required=True, help="Model export directory (cm3leon train export)."
)
@click.option(
    "--text-tokenizer", required=True, help="NAME, NAME:DIR or DIR of the text tokenizer."
)
@click.option(
    "--image-tokenizer", default=None, help="NAME, NAME:DIR or DIR of the image tokenizer."
)
@click.option("--bank", default=None, type=click.Path(file_okay=False, exists=True),
              help="Memory bank directory: enables k > 0 retrieved documents.")  # fmt: skip
@click.option(
    "--retriever",
    default=None,
    help="Registered retriever for --bank (default: from the bank's kind).",
)
@click.option("--clip", default=None, type=click.Path(file_okay=False, exists=True),
              help="CLIP encoder directory (feature extractor clip-image): re-rank the candidates.")  # fmt: skip
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=int, help="0 picks a free port.")
def serve_command(export: str, text_tokenizer: str, image_tokenizer: str | None, bank: str | None,
                  retriever: str | None, clip: str | None, device: str, dtype: str, host: str,
                  port: int) -> None:  # fmt: skip
    """Serve a local page: text-to-image, captioning, VQA and editing with the model EXPORT."""
    try:
        import uvicorn

        from cm3leon.decoding.serve.app import create_app
    except ImportError as err:
        raise click.ClickException(
            f"cm3leon serve needs the serve extra: pip install 'cm3leon-decoding[serve]' ({err})"
        ) from None
    from cm3leon.core.config import ConfigError

    try:
        playground = build_playground(export, text_tokenizer=text_tokenizer, image_tokenizer=image_tokenizer,
                                      bank=bank, retriever=retriever, clip=clip, device=device, dtype=dtype)  # fmt: skip
    except (ConfigError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(f"serve: {err}") from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        raise click.ClickException(f"serve: cannot listen on {host}:{port}: {err}") from None
    sock.listen(
        128
    )  # connections wait in the backlog until uvicorn accepts: the URL works once printed
    bound = sock.getsockname()[1]
    click.echo(f"cm3leon playground: http://{host}:{bound}/")
    config = uvicorn.Config(create_app(playground), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def build_playground(export: str, *, text_tokenizer: str, image_tokenizer: str | None = None,
                     bank: str | None = None, retriever: str | None = None, clip: str | None = None,
                     device: str = "cpu", dtype: str = "float32") -> Any:  # fmt: skip
    """Load the generator (retriever over ``bank``, CLIP re-ranker from ``clip``) as a Playground.

    Raises:
        ValueError / ConfigError: what :func:`cm3leon.decoding.run.build_generator` raises.
    """
    from cm3leon.core.config import ComponentConfig
    from cm3leon.decoding.config import (
        GenerateConfig,
        ModelSource,
        RerankConfig,
        RetrievalConfig,
        TokenizerSources,
    )
    from cm3leon.decoding.run import build_generator
    from cm3leon.decoding.serve.playground import Playground

    retrieval = RetrievalConfig(k=0)
    if bank is not None:
        name = retriever or _bank_retriever(Path(bank))
        retrieval = RetrievalConfig(
            k=1, retriever=ComponentConfig(name=name, options={"bank": bank})
        )
    rerank = RerankConfig(enabled=clip is not None,
                          encoder=ComponentConfig(name="clip-image", options={"path": clip} if clip else {}))  # fmt: skip
    cfg = GenerateConfig(model=ModelSource(export=export, device=device, dtype=dtype),
                         tokenizer=TokenizerSources(text=text_tokenizer, image=image_tokenizer),
                         retrieval=retrieval, rerank=rerank)  # fmt: skip
    about = {"model": str(export), "bank": bank, "clip": clip, "device": device}
    return Playground(build_generator(cfg), about=about)


def _bank_retriever(bank: Path) -> str:
    """``bm25`` for a BM25 bank, ``clip`` for a FAISS one (the ``kind`` of its manifest.json)."""
    try:
        kind = json.loads((bank / "manifest.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        raise ValueError(f"{bank}: not a memory bank (no readable manifest.json); "
                         "build one with `cm3leon retrieval build`") from None  # fmt: skip
    return "bm25" if kind == "bm25" else "clip"
