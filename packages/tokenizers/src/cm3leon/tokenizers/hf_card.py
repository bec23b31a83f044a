"""The model card (``README.md``) of a Hugging Face export (:mod:`cm3leon.tokenizers.hf_export`).

YAML metadata first, as the Hugging Face Hub reads it::

    ---
    library_name: transformers
    pipeline_tag: text-generation
    tags: [cm3leon, opt, multimodal, text-to-image, image-to-text]
    model-index:            # from --summary: one result per evaluation (Hub format)
    - name: RUN
      results: [{task: {type, name}, dataset: {type, name}, metrics: [{type, value, name}]}]
    cm3leon:
      source, provenance    # the export's meta: checkpoint, run name, batches, tokens seen
      architecture          # TransformerConfig
      vocabulary            # layout, image token names, tokens per image
      tokenizers            # text BPE and VQ settings
      data                  # training streams: path, examples, token counts (shard manifests)
      training              # the training config's seed, model, optim, scheduler, duration
      evaluation            # the summary's floors (value, baseline, passed)
    ---

then a short human-readable body.  Every number comes from a file (the export, the
training config and its shard manifests, the summary); nothing is recomputed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cm3leon.core.exported import ExportedModel
from cm3leon.core.io import read_json

__all__ = ["CardInputs", "eval_results", "model_card", "write_model_card"]

#: Hub task type of each cm3leon evaluation protocol (``summary.json`` ``evaluations.*``).
_TASK_TYPES = {
    "text_to_image": "text-to-image",
    "captioning": "image-to-text",
    "vqa": "visual-question-answering",
    "editing": "image-to-image",
}
#: Numeric columns of a text-to-image results row that label the run rather than measure it.
_ROW_LABELS = frozenset({"k", "num_prompts", "num_samples", "n_detected"})
_TRAINING_KEYS = ("run_name", "seed", "model", "optim", "scheduler", "max_duration", "precision")


@dataclass
class CardInputs:
    """Everything the card reads."""

    exported: ExportedModel
    source: Path
    out_name: str
    text_tokenizer: Any
    image_tokenizer: Any
    cm3leon: dict[str, Any]
    summary: Path | None = None
    train_config: Path | None = None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _metrics(values: dict[str, Any], *, prefix: str = "") -> list[dict[str, Any]]:
    """Hub ``metrics`` entries of the finite numbers of ``values`` (nested keys joined with dots)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _metrics(value, prefix=f"{prefix}{key}.")
        elif _number(value) is not None:
            out.append({"type": prefix + key, "name": prefix + key, "value": value})
    return out


def eval_results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Hub ``model-index`` results of a ``summary.json``.

    ``cm3leon demo``'s summary gives one result per protocol (``evaluations.<name>.metrics``,
    its baselines as ``baseline.<name>.<metric>``) and one per text-to-image matrix cell
    (the numeric columns of ``results.csv``, standard errors and baselines left out);
    any other summary with a top-level ``metrics`` mapping gives one result.
    """
    results = []
    for name, ev in (summary.get("evaluations") or {}).items():
        if not isinstance(ev, dict):
            continue
        task = {"type": _TASK_TYPES.get(name, name), "name": name}
        for row in ev.get("rows") or []:
            numbers = {k: v for k, v in row.items()
                       if not k.startswith("baselines.") and not k.endswith("_se") and k not in _ROW_LABELS}
            results.append({"task": {**task, "name": f"{name} ({row.get('run')})"},
                            "dataset": {"type": name, "name": str(ev.get("task") or name)},
                            "metrics": _metrics(numbers)})  # fmt: skip
        if isinstance(ev.get("metrics"), dict):
            metrics = _metrics(ev["metrics"]) + _metrics({"baseline": ev.get("baselines") or {}})
            results.append({"task": task, "dataset": {"type": str(ev.get("task") or name),
                                                      "name": str(ev.get("task") or name)},
                            "metrics": metrics})  # fmt: skip
    if not results and isinstance(summary.get("metrics"), dict):
        results.append({"task": {"type": "text-generation", "name": "evaluation"},
                        "dataset": {"type": "custom", "name": str(summary.get("dataset", "evaluation"))},
                        "metrics": _metrics(summary["metrics"])})  # fmt: skip
    return [r for r in results if r["metrics"]]


def _train_config_path(inputs: CardInputs) -> Path | None:
    """The given training config, else ``config.yaml`` of the run that wrote the checkpoint."""
    if inputs.train_config is not None:
        return inputs.train_config
    checkpoint = inputs.exported.meta.get("source")
    candidates = [Path(checkpoint)] if isinstance(checkpoint, str) else []
    candidates.append(inputs.source)
    for path in candidates:  # RUN/checkpoints/ep0-ba8-rank0.pt, or RUN/export
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        if (run / "config.yaml").is_file() and (run / "checkpoints").is_dir():
            return run / "config.yaml"
    return None


def _stream_data(stream: dict[str, Any]) -> dict[str, Any]:
    """A training stream's location and, from its shard manifest, examples and token counts."""
    out = {k: stream.get(k) for k in ("local", "remote", "proportion") if stream.get(k) is not None}
    local = stream.get("local")
    if local:
        try:
            manifest = read_json(Path(local) / "manifest.json")
        except (FileNotFoundError, ValueError):
            return out
        meta = manifest.get("meta") or {}
        out |= {"examples": manifest.get("num_samples"), "kind": manifest.get("kind"),
                "stats": manifest.get("stats"), "retriever": meta.get("retriever"), "retrieved_k": meta.get("k")}  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def _training(inputs: CardInputs) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, training)`` sections from the training config, when one is found."""
    meta = inputs.exported.meta
    data: dict[str, Any] = {"tokens_seen": meta.get("tokens"), "batches": meta.get("batch")}
    path = _train_config_path(inputs)
    if path is None:
        return {k: v for k, v in data.items() if v is not None}, {}
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    cfg_data = config.get("data") or {}
    data["streams"] = {name: _stream_data(s or {}) for name, s in (cfg_data.get("streams") or {}).items()}
    data |= {k: cfg_data.get(k) for k in ("seq_len", "global_batch_size", "cm3") if k in cfg_data}
    training = {"config": str(path), **{k: config[k] for k in _TRAINING_KEYS if k in config}}
    return {k: v for k, v in data.items() if v is not None}, training


def _tokenizers(inputs: CardInputs) -> dict[str, Any]:
    text, image = inputs.text_tokenizer, inputs.image_tokenizer
    out = {"text": {"type": type(text).__name__, "vocab_size": text.vocab_size, "info": getattr(text, "info", {})},
           "image": {"type": type(image).__name__, "codebook_size": image.codebook_size,
                     "tokens_per_image": image.num_tokens, "image_size": image.image_size}}  # fmt: skip
    config = getattr(image, "config", None)
    if hasattr(config, "to_dict"):
        out["image"]["config"] = config.to_dict()
    return out


def model_card(inputs: CardInputs) -> str:
    """The card's text: YAML front matter plus a body (see the module docstring)."""
    exported = inputs.exported
    summary = read_json(inputs.summary) if inputs.summary is not None else {}
    data, training = _training(inputs)
    name = str(exported.meta.get("run_name") or inputs.out_name)
    cm3leon = {"source": str(inputs.source), "provenance": exported.meta,
               "architecture": exported.model.config.to_dict(), "vocabulary": inputs.cm3leon,
               "tokenizers": _tokenizers(inputs), "data": data, "training": training}  # fmt: skip
    if summary.get("floors"):
        cm3leon["evaluation"] = {"summary": str(inputs.summary), "floors": summary["floors"]}
    metadata: dict[str, Any] = {
        "library_name": "transformers", "pipeline_tag": "text-generation",
        "tags": ["cm3leon", "opt", "multimodal", "text-to-image", "image-to-text"],
    }  # fmt: skip
    results = eval_results(summary)
    if results:
        metadata["model-index"] = [{"name": name, "results": results}]
    metadata["cm3leon"] = json.loads(json.dumps(cm3leon, default=str))  # plain YAML types only
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{_body(name, inputs, results, summary.get('floors') or [])}"


def _body(name: str, inputs: CardInputs, results: list[dict[str, Any]], floors: list[dict[str, Any]]) -> str:
    cfg = inputs.exported.model.config
    vocab = inputs.exported.vocab
    lines = [
        f"# {name}", "",
        "A CM3Leon-style decoder-only transformer (cm3leon) over one vocabulary of text BPE tokens, "
        f"VQ image codes and special tokens, exported as OPT: {cfg.n_layers} layers, d_model {cfg.d_model}, "
        f"{cfg.n_heads} heads, context {cfg.max_seq_len}, vocabulary {vocab.size} "
        f"({vocab.num_special} special, {vocab.text_size} text, {vocab.image_size} image: "
        f"`<img_0>`..`<img_{vocab.image_size - 1}>`).", "",
        "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        'model = AutoModelForCausalLM.from_pretrained("PATH")',
        'tok = AutoTokenizer.from_pretrained("PATH")',
        'ids = tok("a red cube<break>", return_tensors="pt").input_ids  # <eos> caption <break>',
        f"out = model.generate(ids, max_new_tokens={inputs.image_tokenizer.num_tokens}, do_sample=True)",
        "```", "",
        "Image tokens decode to pixels with the VQ tokenizer in `vq/` "
        "(`cm3leon.tokenizers.load_image_tokenizer`).  The YAML metadata above records the "
        "data, the architecture and training config, and the evaluation numbers.", "",
    ]  # fmt: skip
    if results:
        lines += ["## Evaluation", "", "| task | dataset | metrics |", "| --- | --- | --- |"]
        for result in results:
            shown = [f"{m['name']} {m['value']:.4g}" for m in result["metrics"] if not m["name"].startswith("baseline.")]
            lines.append(f"| {result['task']['name']} | {result['dataset']['name']} | {', '.join(shown)} |")
        lines.append("")
    if floors:
        lines += ["| check | value | baseline | passed |", "| --- | --- | --- | --- |"]
        lines += [f"| {f.get('name')} | {f.get('value')} | {f.get('baseline')} ({f.get('baseline_name')}) | "
                  f"{f.get('passed')} |" for f in floors]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def write_model_card(path: Path, inputs: CardInputs) -> Path:
    """Write :func:`model_card` to ``path``."""
    path.write_text(model_card(inputs), encoding="utf-8")
    return path
