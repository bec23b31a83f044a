"""``cm3leon tokenizers train-text``: train the byte-level BPE on a corpus and export it.

Corpus paths may be ``.txt`` files (one document per line), ``.jsonl`` files (the
``data.field`` of each object), directories (searched recursively for both), globs, or
MDS document-shard directories of :mod:`cm3leon.core.shards` (the text segments of
their documents).  Bad input raises an
error naming the file and line.

Output (``output_dir``): ``config.yaml``, ``train.log``, ``tokenizer/`` (standard
``tokenizer.json`` + ``cm3leon_tokenizer.json``, complete when ``COMPLETE`` exists) and
``summary.json``.  Re-running skips training when ``tokenizer/`` is already complete
(set ``overwrite=true`` to retrain); BPE training is a single pass with no
intermediate state to resume.
"""

from __future__ import annotations

import glob
import json
import logging
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from cm3leon.core.config import save_config
from cm3leon.core.io import atomic_write_json, is_complete
from cm3leon.tokenizers.configs import TokenizersConfig, check_config
from cm3leon.tokenizers.text_bpe import BPETokenizer, load_text_tokenizer

__all__ = ["iter_corpus", "train_text_tokenizer"]

log = logging.getLogger(__name__)

_TEXT_SUFFIXES = (".txt", ".jsonl")


def _expand(patterns: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir() and (path / "index.json").is_file():
            files.append(path)  # an MDS directory
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.suffix in _TEXT_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{pattern}: no corpus files found")
            files.extend(matches)
    return files


def _iter_jsonl(path: Path, field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
            value = obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise ValueError(f"{path}:{lineno}: expected a string field {field!r}")
            yield value


def _iter_txt(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                text = line.rstrip("\n")
                if text:
                    yield text
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text: {err}") from None


def _iter_mds(path: Path) -> Iterator[str]:
    from cm3leon.core.shards import iter_documents

    for doc in iter_documents(path):  # verified (COMPLETE, manifest, hashes) before reading
        yield from (t for t in doc.texts if t)


def iter_corpus(paths: Sequence[str], *, field: str = "text", max_documents: int | None = None) -> Iterator[str]:
    """Stream the documents of a corpus (see the module docstring for accepted inputs)."""
    def generate() -> Iterator[str]:
        for path in _expand(paths):
            if path.is_dir():
                yield from _iter_mds(path)
            elif path.suffix == ".jsonl":
                yield from _iter_jsonl(path, field)
            elif path.suffix == ".txt":
                yield from _iter_txt(path)
            else:
                raise ValueError(f"{path}: unsupported corpus file (use .txt, .jsonl or an MDS directory)")

    return islice(generate(), max_documents) if max_documents is not None else generate()


def train_text_tokenizer(cfg: TokenizersConfig, *, source: str = "<config>", show_progress: bool = True) -> dict[str, Any]:
    """Train the BPE of ``cfg`` and export it to ``output_dir/tokenizer``.

    Returns:
        The summary (also written to ``summary.json``): vocabulary size, documents, time.
    """
    check_config(cfg, source=source)
    if cfg.kind != "text" or cfg.text is None:
        raise ValueError(f"{source}: train-text needs kind 'text', got {cfg.kind!r}")
    out = Path(cfg.output_dir)
    export = out / "tokenizer"
    if is_complete(export) and not cfg.overwrite:
        tok = load_text_tokenizer(export)
        log.info("%s is complete; not retraining (overwrite=true to retrain)", export)
        return {"vocab_size": tok.vocab_size, "export": str(export), "skipped": True}
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    handler = logging.FileHandler(out / "train.log", encoding="utf-8")
    logging.getLogger().addHandler(handler)
    try:
        text = cfg.text
        counted = {"documents": 0, "characters": 0}

        def counting(docs: Iterator[str]) -> Iterator[str]:
            for doc in docs:
                counted["documents"] += 1
                counted["characters"] += len(doc)
                yield doc

        start = time.perf_counter()
        corpus = iter_corpus(text.data.paths, field=text.data.field, max_documents=text.data.max_documents)
        tok = BPETokenizer.train(counting(corpus), vocab_size=text.vocab_size, min_frequency=text.min_frequency,
                                 show_progress=show_progress)
        if counted["documents"] == 0:
            raise ValueError(f"{source}: the corpus {text.data.paths} holds no text")
        tok.info.update(run_name=cfg.run_name, **counted)
        tok.save(export, overwrite=True)
        summary = {"vocab_size": tok.vocab_size, "requested_vocab_size": text.vocab_size, **counted,
                   "seconds": round(time.perf_counter() - start, 2), "export": str(export), "skipped": False}
        log.info("trained BPE: %s", summary)
        atomic_write_json(out / "summary.json", summary)
        return summary
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
