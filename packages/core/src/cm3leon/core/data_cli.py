"""``cm3leon data``: turn raw data into MDS shards and inspect shard directories.

::

    cm3leon data prepare --source folder data/pairs --out shards/docs
    cm3leon data prepare --source jsonl pairs.jsonl --out shards/tok --kind tokens \\
        --text-tokenizer bytes --image-codebook-size 8192 --tokens-per-image 1024
    cm3leon data prepare --task coco_captioning annotations/ --out shards/sft --kind tokens \\
        --text-tokenizer bpe:tok/text --image-tokenizer vqgan:tok/image
    cm3leon data prepare --source webdataset laion/ --out shards/laion --workers 8
    composer -n 2 -m cm3leon.core.data_cli prepare --source webdataset laion/ --out shards/laion
    cm3leon data inspect shards/tok

``--workers N`` (and/or ranks under a launcher) write parts in parallel and merge them
into one dataset; a killed run resumes (:mod:`cm3leon.core.prepare_parallel`).
Sources, tasks and tokenizers are resolved by registered name (``cm3leon plugins list``).
Output directories appear only when complete (see :mod:`cm3leon.core.shards`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = ["PrepareReport", "SkipRateError", "data_command", "inspect_dataset", "prepare_dataset"]

log = logging.getLogger("cm3leon.data")


class SkipRateError(ValueError):
    """``--skip-bad`` skipped more than ``max_skip_rate`` of the items; nothing was written."""


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` did."""

    out: str
    kind: str
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    parallel: dict[str, Any] | None = None  # parts, workers, per-worker counts (--workers / ranks)

    def as_dict(self) -> dict[str, Any]:
        out = {"out": self.out, "kind": self.kind, "written": self.written,
               "skipped": len(self.skipped), "skipped_items": [list(s) for s in self.skipped[:50]],
               "stats": self.stats}  # fmt: skip
        if self.parallel is not None:
            out["parallel"] = self.parallel
        return out


def prepare_dataset(documents: Iterable[Any], out: str | Path, *, kind: str = "documents",
                    doc_tokenizer: Any = None, max_samples: int | None = None, skip_bad: bool = False,
                    overwrite: bool = False, meta: dict[str, Any] | None = None,
                    progress: bool = True, total: int | None = None, batch_size: int = 32,
                    with_targets: bool = False, max_skip_rate: float | None = None,
                    report: PrepareReport | None = None) -> PrepareReport:
    """Write ``documents`` as document shards or (with ``doc_tokenizer``) token shards.

    Args:
        documents: iterable of :class:`Document`; a ``skipped`` attribute (list of
            ``(where, reason)``) on it is merged into the report.
        out: dataset directory (created atomically).
        kind: ``"documents"`` or ``"tokens"``.
        doc_tokenizer: a :class:`cm3leon.core.serialize.DocumentTokenizer` (tokens only).
        max_samples: stop after this many written samples.
        skip_bad: skip documents that fail to encode (counted) instead of failing.
        overwrite / meta: passed to the writer.
        progress / total: tqdm progress bar and its total.
        batch_size: documents whose pixel-only images are VQ-encoded together.
        with_targets: token shards get the ``targets`` column: the token ranges of each
            document's task output (``Document.targets``; SFT tasks declare them), which the
            CM3 transform can mask (``CM3Config.target_prob``).
        max_skip_rate: with ``skip_bad``, fail (:class:`SkipRateError`, nothing written) when
            skipped / (written + skipped) exceeds it; the source's own skips count (a
            ``num_skipped`` attribute, else one per ``skipped`` entry). ``None``: no limit.
        report: filled in place instead of a new one, so a caller still has the counts and
            the skipped items when the writer refuses (:class:`cm3leon.core.shards.EmptyDatasetError`).
    """
    from tqdm.auto import tqdm

    from cm3leon.core.shards import DocumentShardWriter, TokenShardWriter

    report = report if report is not None else PrepareReport(str(out), kind)
    if kind == "tokens":
        if doc_tokenizer is None:
            raise ValueError("--kind tokens needs a text tokenizer (and an image tokenizer or precomputed codes)")
        writer: Any = TokenShardWriter(out, doc_tokenizer.vocab, overwrite=overwrite, meta=meta,
                                       with_loss_weights=doc_tokenizer.query_loss_weight is not None,
                                       with_targets=with_targets)  # fmt: skip
    elif kind == "documents":
        writer = DocumentShardWriter(out, overwrite=overwrite, meta=meta)
    else:
        raise ValueError(f"kind must be 'documents' or 'tokens', got {kind!r}")
    if max_samples is not None:
        total = min(total, max_samples) if total is not None else max_samples
    bar = tqdm(total=total, unit="doc", desc=f"prepare {Path(out).name}", disable=not progress)
    with writer, bar:
        for doc in _encoded_in_batches(documents, doc_tokenizer if kind == "tokens" else None, batch_size):
            if max_samples is not None and report.written >= max_samples:
                break
            try:
                if kind == "tokens":
                    ids, weights, targets, _ = doc_tokenizer.encode_example_with_targets(doc)
                    writer.write(ids, id=doc.id or str(report.written), loss_weights=weights,
                                 targets=targets if with_targets else None)  # fmt: skip
                else:
                    writer.write(doc)
            except ValueError as err:
                if not skip_bad:
                    raise
                report.skipped.append((f"document {doc.id!r}", str(err)))
                log.warning("skipped document %r: %s", doc.id, err)
                continue
            report.written += 1
            bar.update(1)
        from_source = list(getattr(documents, "skipped", []))
        num_skipped = getattr(documents, "num_skipped", len(from_source)) + len(report.skipped)
        report.skipped = from_source + report.skipped
        _check_skip_rate(report, num_skipped, max_skip_rate)
        report.stats = writer.stats()
    log.info("prepared %s: %s", out, json.dumps(report.as_dict()))
    return report


def _check_skip_rate(report: PrepareReport, num_skipped: int, max_skip_rate: float | None) -> None:
    """Raise :class:`SkipRateError` (inside the writer, so nothing is committed) over the limit."""
    seen = report.written + num_skipped
    if max_skip_rate is None or num_skipped == 0 or num_skipped <= max_skip_rate * seen:
        return
    first = "; ".join(f"{where}: {reason}" for where, reason in report.skipped[:3])
    raise SkipRateError(f"{report.out}: skipped {num_skipped} of {seen} items ({num_skipped / seen:.1%}), "
                        f"over max skip rate {max_skip_rate:.1%}; nothing written. First skipped: {first}")


def _encoded_in_batches(documents: Iterable[Any], doc_tokenizer: Any, batch_size: int) -> Iterator[Any]:
    """Yield documents with VQ codes precomputed batch-wise (one call per ``batch_size`` docs).

    If a batch fails to encode (one unreadable image), its documents are yielded unchanged
    and encoded one by one later, so the error names the bad document and ``--skip-bad``
    loses only that one.
    """
    if doc_tokenizer is None or doc_tokenizer.image_tokenizer is None:
        yield from documents
        return
    chunk: list[Any] = []
    for doc in documents:
        chunk.append(doc)
        if len(chunk) == batch_size:
            yield from _encode_chunk(chunk, doc_tokenizer)
            chunk = []
    yield from _encode_chunk(chunk, doc_tokenizer)


def _encode_chunk(chunk: list[Any], doc_tokenizer: Any) -> list[Any]:
    try:
        return doc_tokenizer.with_codes(chunk)
    except Exception as err:  # isolate the bad document: encode them one by one instead
        log.warning("batch image encoding failed (%s); encoding documents one by one", err)
        return chunk


def inspect_dataset(path: str | Path, *, check_hashes: bool = True, seq_len: int | None = None) -> dict[str, Any]:
    """Verify a dataset directory and recount what it holds (per-modality token accounting).

    With ``seq_len``, also count how the trainer will fit retrieval-augmented examples into
    rows of that length under CM3's default transform (:func:`fit_example`): examples that
    lose retrieved documents, documents dropped, and examples whose query alone does not
    fit (training stops on those); examples without document ranges that exceed it are
    counted as ``would_truncate``.
    """
    from cm3leon.core.objective import CM3Config, max_growth
    from cm3leon.core.serialize import fit_example
    from cm3leon.core.shards import iter_documents, iter_token_samples, verify_dataset

    info = verify_dataset(path, check_hashes=check_hashes)
    result: dict[str, Any] = {"path": str(info.path), "kind": info.kind, "samples": info.num_samples,
                              "shards": len(info.shards), "hashes_checked": check_hashes,
                              "meta": info.meta}
    if info.kind == "tokens":
        assert info.vocab is not None
        counts: Counter[str] = Counter()
        lengths = []
        weighted = with_targets = with_parts = 0
        fit: Counter[str] = Counter()
        budget = None if seq_len is None else seq_len - max_growth(CM3Config(), info.vocab)
        for sample in iter_token_samples(path, verify=False):
            counts.update(info.vocab.count_modalities(sample.tokens))
            lengths.append(sample.tokens.size)
            weighted += sample.loss_weights is not None
            with_targets += sample.targets is not None and sample.targets.size > 0
            with_parts += sample.parts is not None
            if budget is not None and sample.tokens.size > budget:
                if sample.parts is None:
                    fit["would_truncate"] += 1
                    continue
                try:
                    dropped = fit_example(sample.tokens, sample.parts, budget, info.vocab).dropped
                except ValueError:
                    fit["query_too_long"] += 1
                    continue
                fit["shortened"] += 1
                fit["documents_dropped"] += dropped
        result.update({"vocab": info.vocab.to_dict(), "tokens": sum(lengths),
                       "text_tokens": counts["text"], "image_tokens": counts["image"],
                       "special_tokens": counts["special"] + counts["pad"],
                       "min_length": min(lengths), "max_length": max(lengths),
                       "mean_length": round(sum(lengths) / len(lengths), 2),
                       "with_loss_weights": weighted > 0, "samples_with_targets": with_targets,
                       "samples_with_parts": with_parts})
        if budget is not None:
            result["fit"] = {"seq_len": seq_len, "budget": budget,
                             **{k: fit[k] for k in ("shortened", "documents_dropped", "query_too_long",
                                                    "would_truncate")}}
    else:
        images = texts = 0
        for doc in iter_documents(path, verify=False):
            images += len(doc.images)
            texts += len(doc.texts)
        result.update({"images": images, "text_segments": texts})
    return result


@click.group("data")
def data_command() -> None:
    """Prepare and inspect MosaicML (MDS) shards of documents or token ids."""


def _parse_options(options: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        parsed[key] = yaml.safe_load(value)
    return parsed


def _documents_from_task(name: str, path: str, options: dict[str, Any], skip_bad: bool,
                         seed: int) -> Iterator[Any]:
    """The task's records at ``path``, rendered as ``cm3leon tasks mixture`` renders its first source."""
    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.core.registry import resolve_object
    from cm3leon.core.task_render import render_task_records

    spec = get_registries().tasks.get(name, where="--task")
    if spec.reader is None:
        raise click.ClickException(f"task {name!r} has no reader for raw files")
    task = spec.build()
    stats: Counter[str] = Counter()
    records = resolve_object(spec.reader)(path, skip_bad=skip_bad, stats=stats, **options)

    class _Docs:
        def __init__(self) -> None:
            self.skipped: list[tuple[str, str]] = []

        @property
        def num_skipped(self) -> int:  # the reader's skips are one summary entry in ``skipped``
            summary = [where for where, _ in self.skipped if where == f"{name} reader {path}"]
            return len(self.skipped) - len(summary) + int(stats.get("skipped", 0))

        def __iter__(self) -> Iterator[Any]:
            yield from render_task_records(task, records, name=name, seed=seed, where=str(path),
                                           skip_bad=skip_bad, skipped=self.skipped)  # fmt: skip
            if stats.get("skipped"):
                self.skipped.append((f"{name} reader {path}", f"{stats['skipped']} record(s) skipped: {dict(stats)}"))

    return _Docs()  # type: ignore[return-value]


def _declares(factory: Any, name: str) -> bool:
    """Whether ``factory`` names parameter ``name`` explicitly (``**options`` does not count)."""
    import inspect

    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _doc_tokenizer(text: str | None, image: str | None, codebook: int | None, per_image: int | None,
                   num_sentinels: int) -> Any:
    from cm3leon.core.tokenization import build_document_tokenizer

    if text is None:
        raise click.UsageError("--kind tokens needs --text-tokenizer (a registered name, NAME:DIR or DIR)")
    if image is None and codebook is None:
        raise click.UsageError("give --image-tokenizer, or --image-codebook-size for precomputed VQ codes")
    try:
        return build_document_tokenizer(text, image, image_codebook_size=codebook, num_sentinels=num_sentinels,
                                        tokens_per_image=per_image)  # fmt: skip
    except (ValueError, KeyError) as err:
        raise click.UsageError(str(err)) from None


def _source_factory(source: str, opts: dict[str, Any], skip_bad: bool) -> tuple[Any, dict[str, Any]]:
    """The registered source's factory, and its options (``skip_bad`` added when it takes it)."""
    from cm3leon.core.plugin_manager import get_registries

    factory = get_registries().sources.get(source, where="--source").load()
    if skip_bad and _declares(factory, "skip_bad"):
        opts = {**opts, "skip_bad": True}
    elif skip_bad:
        log.warning("source %r has no skip_bad option; --skip-bad covers encoding only", source)
    return factory, opts


def _check_parallel_usage(parallel: bool, task: str | None, max_samples: int | None, part_size: int | None) -> None:
    if not parallel:
        if part_size is not None:
            raise click.UsageError("--part-size applies to parallel preparation (--workers N or composer -n N)")
        return
    if task is not None:
        raise click.UsageError("--task datasets are prepared by one process; drop --workers (and the launcher)")
    if max_samples is not None:
        raise click.UsageError("--max-samples needs one process (which samples come first depends on the "
                               "workers otherwise); drop --workers")  # fmt: skip


def _prepare_in_parallel(source: str, path: str, opts: dict[str, Any], meta: dict[str, Any], doc_tok: Any,
                         out: str, *, workers: int, part_size: int | None, skip_bad: bool, overwrite: bool,
                         max_skip_rate: float | None) -> PrepareReport | None:  # fmt: skip
    """``prepare --workers N`` (and/or ranks): :func:`cm3leon.core.prepare_parallel.prepare_parallel`."""
    from cm3leon.core.prepare_parallel import DEFAULT_PART_SIZE, PrepareJob, prepare_parallel

    job = PrepareJob(source, str(path), opts, kind=meta["kind"], meta=meta, skip_bad=skip_bad,
                     part_size=part_size or DEFAULT_PART_SIZE)  # fmt: skip
    return prepare_parallel(job, out, workers=workers, doc_tokenizer=doc_tok, overwrite=overwrite,
                            max_skip_rate=max_skip_rate)  # fmt: skip


@data_command.command("prepare")
@click.argument("path", type=click.Path())
@click.option("--source", "source", default=None, help="Registered source (folder, jsonl, world, ...).")
@click.option("--task", "task", default=None, help="Registered SFT task; PATH is read with its reader.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output dataset directory.")
@click.option("--kind", type=click.Choice(["documents", "tokens"]), default="documents", show_default=True)
@click.option("--text-tokenizer", default=None, help="Registered name, NAME:DIR or DIR (e.g. 'bytes').")
@click.option("--image-tokenizer", default=None, help="Registered name, NAME:DIR or DIR.")
@click.option("--image-codebook-size", type=int, default=None, help="Codebook size of precomputed codes.")
@click.option("--tokens-per-image", type=int, default=None, help="Expected codes per image (checked).")
@click.option("--num-sentinels", type=int, default=8, show_default=True, help="CM3 <mask:i>/<infill:i> pairs.")
@click.option("--max-samples", type=int, default=None, help="Stop after N written samples.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) bad items instead of failing.")
@click.option("--max-skip-rate", type=click.FloatRange(0.0, 1.0), default=None,
              help="With --skip-bad: fail, writing nothing, if more than this fraction of items is skipped.")
@click.option("-o", "--option", "options", multiple=True, help="KEY=VALUE passed to the source/reader.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for task template choice (as `tasks mixture`).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (per rank under composer -n N): parts written in parallel into "
                   "OUT.work, merged into OUT; a killed run resumes.")
@click.option("--part-size", type=click.IntRange(min=1), default=None,
              help="With --workers or ranks: images/lines/rows per part (tar and parquet files are one part each).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Log file (default: OUT.prepare.log next to OUT).")
def prepare_command(path: str, source: str | None, task: str | None, out: str, kind: str,
                    text_tokenizer: str | None, image_tokenizer: str | None, image_codebook_size: int | None,
                    tokens_per_image: int | None, num_sentinels: int, max_samples: int | None,
                    skip_bad: bool, max_skip_rate: float | None, options: tuple[str, ...], seed: int,
                    overwrite: bool, workers: int | None, part_size: int | None, log_file: str | None) -> None:
    """Turn raw data at PATH into MDS shards at --out (documents or token ids)."""
    from cm3leon.core.prepare_parallel import launcher_world_size
    from cm3leon.core.registry import UnknownComponentError

    if (source is None) == (task is None):
        raise click.UsageError("give exactly one of --source NAME or --task NAME")
    if max_skip_rate is not None and not skip_bad:
        raise click.UsageError("--max-skip-rate limits --skip-bad; give both")
    parallel = workers is not None or launcher_world_size() > 1
    _check_parallel_usage(parallel, task, max_samples, part_size)
    log_path = Path(log_file or f"{out.rstrip('/')}.prepare.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cm3leon")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    try:
        opts = _parse_options(options)
        doc_tok = None
        if kind == "tokens":
            doc_tok = _doc_tokenizer(text_tokenizer, image_tokenizer, image_codebook_size,
                                     tokens_per_image, num_sentinels)
        try:
            if task is not None:
                docs: Any = _documents_from_task(task, path, opts, skip_bad, seed)
            else:
                factory, opts = _source_factory(source, opts, skip_bad)  # type: ignore[arg-type]
                docs = None if parallel else factory(path, **opts)
        except UnknownComponentError as err:
            raise click.UsageError(str(err)) from None
        meta = {"source": source, "task": task, "path": str(path), "options": opts, "kind": kind,
                "text_tokenizer": text_tokenizer, "image_tokenizer": image_tokenizer}
        if parallel:
            report = _prepare_in_parallel(source, path, opts, meta, doc_tok, out, workers=workers or 1,
                                          part_size=part_size, skip_bad=skip_bad, overwrite=overwrite,
                                          max_skip_rate=max_skip_rate)  # fmt: skip
            if report is not None:  # rank 0
                click.echo(json.dumps(report.as_dict(), indent=2))
            return
        total = len(docs) if hasattr(docs, "__len__") else None
        report = prepare_dataset(docs, out, kind=kind, doc_tokenizer=doc_tok, max_samples=max_samples,
                                 skip_bad=skip_bad, overwrite=overwrite, meta=meta, total=total,
                                 with_targets=task is not None, max_skip_rate=max_skip_rate)  # fmt: skip
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        log.error("prepare failed: %s", err)
        raise click.ClickException(str(err)) from None
    finally:
        root.removeHandler(handler)
        handler.close()
    click.echo(json.dumps(report.as_dict(), indent=2))


@data_command.command("inspect")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-hash-check", is_flag=True, help="Check sizes only (faster on huge datasets).")
@click.option("--seq-len", type=click.IntRange(min=2), default=None,
              help="Also count examples that lose retrieved documents to fit rows of this length.")
def inspect_command(directory: str, as_json: bool, no_hash_check: bool, seq_len: int | None) -> None:
    """Verify DIRECTORY (COMPLETE, manifest, hashes) and print counts and token accounting."""
    try:
        result = inspect_dataset(directory, check_hashes=not no_hash_check, seq_len=seq_len)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if key != "meta":
            click.echo(f"{key:>16}: {value}")


def main() -> None:
    """``python -m cm3leon.core.data_cli prepare ...`` (for ``composer -n N -m cm3leon.core.data_cli``)."""
    data_command(prog_name="python -m cm3leon.core.data_cli")


if __name__ == "__main__":
    main()
