"""The ``generate`` config schema (``configs/generate/*.yaml``) and prompt files.

YAML -> OmegaConf -> :class:`GenerateConfig`; unknown keys and wrong types fail with the
dotted path.  Decoding strategies are chosen by registered name with typed options
(:mod:`cm3leon.decoding.options`), validated when the pipelines are built.

Prompt files are JSONL, one prompt per line (paths relative to the file)::

    {"id": "cube", "task": "text_to_image", "text": "a red cube"}
    {"id": "cap", "task": "image_to_text", "image": "cube.png", "prefix": "Image of", "suffix": ":"}
    {"id": "vqa", "task": "image_to_text", "image": "cube.png", "prefix": "Question: What colour? Answer:"}
    {"id": "fill", "task": "text_infill", "before": "a red", "after": "on a table"}
    {"id": "patch", "task": "image_infill", "image": "cube.png", "start": 0, "end": 8, "text": "a red cube"}
    {"id": "edit", "task": "edit", "image": "cube.png", "text": "make it blue"}
    {"id": "t1", "task": "vqa2", "record": {"question": "...", "image": "cube.png"}, "output": "answer"}

Any other ``task`` is looked up in the task registry (cm3leon-tasks): its ``render`` builds
the document with the ``output`` field left open (image-valued record fields are paths).
Every entry may carry ``max_new_tokens``; a line with only ``text`` is text-to-image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ComponentConfig
from cm3leon.decoding.options import GenerationOptions
from cm3leon.decoding.prompts import Prompt

__all__ = [
    "GenerateConfig",
    "ModelSource",
    "PromptFileError",
    "RerankConfig",
    "RetrievalConfig",
    "TokenizerSources",
    "prompt_from_entry",
    "read_prompts",
]

_BUILTIN_TASKS = ("text_to_image", "image_to_text", "text_infill", "image_infill", "edit")


@dataclass
class ModelSource:
    """Where the model comes from and how it is held.

    Attributes:
        export: a ``cm3leon train export`` directory or its ``model.safetensors``.
        device: ``cpu`` or a CUDA device.
        dtype: weight (and KV-cache) dtype: ``float32``/``fp32``, ``bfloat16``/``bf16``,
            ``float16``/``fp16`` or ``float64`` (``--dtype``).  bf16 halves the bytes each
            decode step reads; guidance and selection run on fp32 logits.
    """

    export: str = MISSING
    device: str = "cpu"
    dtype: str = "float32"


@dataclass
class TokenizerSources:
    """Registered ``NAME``, ``NAME:DIR`` or a saved tokenizer ``DIR`` (see ``resolve_tokenizer``)."""

    text: str = MISSING
    image: str | None = None


@dataclass
class RetrievalConfig:
    """``k`` retrieved documents in front of every prompt (0 = none), by a registered retriever."""

    k: int = 0
    retriever: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="clip"))


@dataclass
class RerankConfig:
    """CLIP re-ranking with the encoder registered as a feature extractor (``clip-image``)."""

    enabled: bool = False
    encoder: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="clip-image"))


@dataclass
class GenerateConfig:
    """A ``cm3leon generate`` run.

    Attributes:
        model: the weights.
        tokenizer: text and image tokenizers of the model's vocabulary.
        decoding: strategies per modality (:class:`GenerationOptions`).
        prompts: JSONL prompt file (``--prompt`` adds text-to-image prompts).
        output: directory written atomically (``COMPLETE`` last).
        num_candidates: ``N`` per prompt (Table 1: 8).
        seed: sampling seed.
        batch_size: prompts decoded together.
        retrieval: retrieved documents in front of the prompts.
        rerank: order candidates by CLIP similarity (best first).
    """

    model: ModelSource = field(default_factory=ModelSource)
    tokenizer: TokenizerSources = field(default_factory=TokenizerSources)
    decoding: GenerationOptions = field(default_factory=GenerationOptions)
    prompts: str | None = None
    output: str = "runs/generate"
    num_candidates: int = 8
    seed: int = 0
    batch_size: int = 4
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)


class PromptFileError(ValueError):
    """A prompt entry is malformed; the message names the file, line and key."""


def _image(value: Any, base: Path, where: str) -> Any:
    from cm3leon.core.documents import image_from_png

    if not isinstance(value, str):
        raise PromptFileError(f"{where}: image must be a path string, got {value!r}")
    path = Path(value) if Path(value).is_absolute() else base / value
    try:
        return image_from_png(path.read_bytes())
    except FileNotFoundError:
        raise PromptFileError(f"{where}: image file {str(path)!r} not found") from None
    except Exception as err:  # PIL raises several error types for unreadable files
        raise PromptFileError(f"{where}: cannot read image {str(path)!r}: {err}") from None


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key, "" if not required else None)
    if not isinstance(value, str) or (required and not value.strip()):
        raise PromptFileError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def prompt_from_entry(entry: dict[str, Any], *, base: Path, where: str, registries: Any = None) -> Prompt:
    """One JSONL entry -> :class:`Prompt` (see the module docstring for the keys).

    Raises:
        PromptFileError: unknown task, missing or mistyped keys, unreadable images.
    """
    if not isinstance(entry, dict):
        raise PromptFileError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    pid = str(entry.get("id", ""))
    task = entry.get("task", "text_to_image")
    extra: dict[str, Any] = {"id": pid, "meta": {"task": task}}
    if "max_new_tokens" in entry:
        extra["max_new_tokens"] = entry["max_new_tokens"]
    try:
        if task == "text_to_image":
            return Prompt.text_to_image(_text(entry, "text", where), **extra)
        if task == "image_to_text":
            return Prompt.image_to_text(
                _image(entry.get("image"), base, where), prefix=_text(entry, "prefix", where, required=False),
                suffix=_text(entry, "suffix", where, required=False), layout=entry.get("layout", "infill"), **extra,
            )  # fmt: skip
        if task == "text_infill":
            return Prompt.text_infill(_text(entry, "before", where, required=False),
                                      _text(entry, "after", where, required=False), **extra)  # fmt: skip
        if task == "image_infill":
            return Prompt.image_infill(_image(entry.get("image"), base, where), int(entry.get("start", 0)),
                                       entry.get("end"), caption=_text(entry, "text", where, required=False),
                                       **extra)  # fmt: skip
        if task == "edit":
            return Prompt.edit(_image(entry.get("image"), base, where), _text(entry, "text", where), **extra)
    except (TypeError, ValueError) as err:
        if isinstance(err, PromptFileError):
            raise
        raise PromptFileError(f"{where}: {err}") from None
    return _task_prompt(entry, task, base=base, where=where, extra=extra, registries=registries)


def _task_prompt(entry: dict[str, Any], task: Any, *, base: Path, where: str, extra: dict[str, Any],
                 registries: Any) -> Prompt:  # fmt: skip
    from cm3leon.core.registry import UnknownComponentError
    from cm3leon.decoding.tasks import prompt_from_task

    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    if not isinstance(task, str):
        raise PromptFileError(f"{where}: 'task' must be a string, got {task!r}")
    try:
        spec = registries.tasks.get(task, where=f"{where}: task")
    except UnknownComponentError as err:
        raise PromptFileError(f"{err}; built-in prompt kinds: {', '.join(_BUILTIN_TASKS)}") from None
    record = entry.get("record")
    if not isinstance(record, dict):
        raise PromptFileError(f"{where}: task {task!r} needs a 'record' object")
    output = _text(entry, "output", where)
    images = {key: _image(v, base, f"{where}, record.{key}") for key, v in record.items()
              if isinstance(v, str) and Path(v).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp")}  # fmt: skip
    record = {"id": extra["id"] or "prompt", **record, **images}
    modality = spec.outputs[0] if spec.outputs else "image"
    try:
        return prompt_from_task(spec.build(), record, output=output, modality=modality, **extra)
    except ValueError as err:
        raise PromptFileError(f"{where}: {err}") from None


def read_prompts(path: str | Path, *, registries: Any = None) -> list[Prompt]:
    """Read a JSONL prompt file; ids default to ``line<N>``.

    Raises:
        PromptFileError: invalid JSON or entry (file and line named), duplicate ids, no prompts.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PromptFileError(f"{path}: prompt file not found") from None
    prompts: list[Prompt] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{where}: invalid JSON: {err}") from None
        if isinstance(entry, dict) and not entry.get("id"):
            entry = {**entry, "id": f"line{n}"}
        prompts.append(prompt_from_entry(entry, base=path.parent, where=where, registries=registries))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts")
    ids = [p.id for p in prompts]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PromptFileError(f"{path}: duplicate prompt id(s) {dupes}")
    return prompts
