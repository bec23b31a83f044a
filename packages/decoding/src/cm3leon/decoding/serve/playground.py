"""What the playground does, without the web server: requests in, JSON results out.

A :class:`PlaygroundRequest` is one form of the page (task, text, image, decoding knobs);
:meth:`Playground.parse` validates the raw form (errors are :class:`RequestError`, shown in
the page), :meth:`Playground.run` generates in the caller's thread (the server calls it in
its worker, :class:`~cm3leon.decoding.serve.jobs.JobQueue`) and returns the candidates as
data-URL PNGs / texts, best first, with their CLIP scores and the ``k`` retrieved documents.

Prompts use the fine-tuning layout of the registered SFT task when cm3leon-tasks is
installed (``coco_captioning`` -> ``caption``, ``vqa2`` -> ``answer``,
``instructpix2pix`` -> ``edited_image``: the layouts cm3leon-eval's protocols score), else
the built-in :class:`~cm3leon.decoding.prompts.Prompt` layouts (§2.2 "Image of <mask>",
§4.1 editing).  Decoding knobs are a :class:`~cm3leon.decoding.presets.DecodingPreset`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cm3leon.core.documents import ImageSegment, TextSegment, image_from_png, image_to_png
from cm3leon.decoding.generator import CM3LeonGenerator, GenerationResult
from cm3leon.decoding.presets import PRESETS, DecodingPreset, generation_options
from cm3leon.decoding.prompts import Prompt

__all__ = ["TASKS", "Playground", "PlaygroundRequest", "RequestError"]

#: Page task -> (output modality, SFT task, its output field, default strategy).
TASKS: dict[str, tuple[str, str | None, str | None, str]] = {
    "text_to_image": ("image", None, None, "top_p"),
    "caption": ("text", "coco_captioning", "caption", "greedy"),
    "vqa": ("text", "vqa2", "answer", "greedy"),
    "edit": ("image", "instructpix2pix", "edited_image", "dual_cfg"),
}

#: Integer knobs: (minimum, maximum).
_INT_LIMITS = {"num_candidates": (1, 16), "k": (0, 8), "seed": (0, 2**31 - 1), "max_new_tokens": (1, 256),
               "cd_k": (1, 1000)}  # fmt: skip
_FLOATS = ("cfg_scale", "temperature", "top_p", "cd_alpha", "image_scale", "text_scale")
_PRESET_KNOBS = ("strategy", *_FLOATS, "cd_k", "max_new_tokens")


class RequestError(ValueError):
    """A bad form (empty prompt, unreadable image, a knob out of range); the message is shown."""


@dataclass
class PlaygroundRequest:
    """One generation asked for by the page (see :data:`TASKS`)."""

    task: str
    text: str = ""
    image: Any = None
    strategy: str = ""
    # The decoding knobs default to the paper's presets (cm3leon.decoding.presets).
    cfg_scale: float = DecodingPreset.cfg_scale
    temperature: float = DecodingPreset.temperature
    top_p: float = DecodingPreset.top_p
    cd_k: int = DecodingPreset.cd_k
    cd_alpha: float = DecodingPreset.cd_alpha
    image_scale: float = DecodingPreset.image_scale
    text_scale: float = DecodingPreset.text_scale
    num_candidates: int = 4
    k: int = 0
    seed: int = 0
    max_new_tokens: int = 24

    @property
    def output(self) -> str:
        return TASKS[self.task][0]


class Playground:
    """A loaded generator plus what the page needs to know about it.

    Args:
        generator: the model, tokenizers, optional retriever and CLIP re-ranker.
        registries: where SFT tasks are looked up (default: the installed plugins).
        about: free-form facts shown in the page (model path, bank).
    """

    def __init__(self, generator: CM3LeonGenerator, *, registries: Any = None,
                 about: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        if registries is None:
            from cm3leon.core.plugin_manager import get_registries

            registries = get_registries()
        self.generator = generator
        self.registries = registries
        self.about = dict(about or {})
        self._tokens = 0
        self._hook_model()

    # ---------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """What ``GET /api/info`` returns: tasks and their layouts, knobs, limits, capabilities."""
        tasks = {
            name: {"output": out, "layout": self._layout(name)}
            for name, (out, *_rest) in TASKS.items()
        }
        return {
            **self.about,
            "tasks": tasks,
            "strategies": list(PRESETS),
            "default_strategy": {name: t[3] for name, t in TASKS.items()},
            "defaults": asdict(PlaygroundRequest(task="text_to_image")),
            "limits": _INT_LIMITS,
            "retrieval": self.generator.retriever is not None,
            "rerank": self.generator.reranker is not None,
            "tokens_per_image": self.generator.tokenizer.tokens_per_image,
        }

    def _layout(self, task: str) -> str:
        sft = TASKS[task][1]
        if sft is None:
            return "built-in: <eos> prompt <break> -> image"
        return f"SFT task {sft!r}" if sft in self.registries.tasks else "built-in prompt layout"

    # --------------------------------------------------------------- parse
    def parse(self, form: Mapping[str, Any], image_bytes: bytes | None = None) -> PlaygroundRequest:
        """Validate a raw form (strings, as posted) and an uploaded image.

        Raises:
            RequestError: unknown task or strategy, empty text, a missing or unreadable
                image, numbers that do not parse or are out of range.
        """
        task = str(form.get("task") or "")
        if task not in TASKS:
            raise RequestError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        values: dict[str, Any] = {"task": task, "text": str(form.get("text") or "").strip()}
        for name, (lo, hi) in _INT_LIMITS.items():
            if form.get(name) not in (None, ""):
                values[name] = _number(form[name], name, int, lo, hi)
        for name in _FLOATS:
            if form.get(name) not in (None, ""):
                values[name] = _number(form[name], name, float, 0.0, 100.0)
        values["strategy"] = str(form.get("strategy") or TASKS[task][3])
        if values["strategy"] not in PRESETS:
            raise RequestError(
                f"unknown strategy {values['strategy']!r}; known: {', '.join(PRESETS)}"
            )
        if task != "caption" and not values["text"]:
            what = {"text_to_image": "a prompt", "vqa": "a question", "edit": "an instruction"}[
                task
            ]
            raise RequestError(f"{task}: give {what} (the text box is empty)")
        if task != "text_to_image":
            values["image"] = _image(image_bytes, task)
        if values.get("k", 0) > 0 and self.generator.retriever is None:
            raise RequestError("k > 0 needs a memory bank: start the server with --bank BANK")
        return PlaygroundRequest(**values)

    # ----------------------------------------------------------------- run
    def prompt(self, req: PlaygroundRequest) -> Prompt:
        """The :class:`Prompt` of ``req`` (SFT task layout when registered)."""
        out, sft, field, _ = TASKS[req.task]
        extra: dict[str, Any] = {"id": "playground", "meta": {"task": req.task}}
        if out == "text":
            extra["max_new_tokens"] = req.max_new_tokens
        if sft is not None and sft in self.registries.tasks:
            from cm3leon.decoding.tasks import prompt_from_task

            record = {
                "id": "playground",
                "image": req.image,
                "question": req.text,
                "instruction": req.text,
            }
            keep = {"caption": ("id", "image"), "vqa": ("id", "image", "question"),
                    "edit": ("id", "image", "instruction")}[req.task]  # fmt: skip
            task = self.registries.tasks.get(sft, where="playground task").build()
            return prompt_from_task(
                task, {k: record[k] for k in keep}, output=field, modality=out, **extra
            )
        if req.task == "text_to_image":
            return Prompt.text_to_image(req.text, **extra)
        if req.task == "caption":
            return Prompt.image_to_text(req.image, prefix="Image of ", suffix=":", **extra)
        if req.task == "vqa":
            return Prompt.image_to_text(
                req.image, prefix=f"Question: {req.text} Answer:", suffix=".", **extra
            )
        return Prompt.edit(req.image, req.text, **extra)

    def run(self, req: PlaygroundRequest, job: Any = None) -> dict[str, Any]:
        """Generate for ``req``; report progress on ``job`` (a :class:`~.jobs.Job`, optional).

        Raises:
            ValueError: what the generator raises (a prompt too long for the context, a
                retriever with fewer than ``k`` documents, bad decoding options).
        """
        preset = DecodingPreset(**{name: getattr(req, name) for name in _PRESET_KNOBS})
        prompt = self.prompt(req)
        total = (
            self.generator.tokenizer.tokens_per_image
            if req.output == "image"
            else req.max_new_tokens
        )
        self._job, self._tokens, self._total = job, 0, int(total or 0)
        _update(job, stage="retrieving" if req.k else "decoding", done=0, total=self._total)
        start = time.perf_counter()
        try:
            (result,) = self.generator.generate(
                [prompt], generation_options(preset, req.output), num_candidates=req.num_candidates, k=req.k,
                seed=req.seed, batch_size=1,
            )  # fmt: skip
        finally:
            self._job = None
        seconds = time.perf_counter() - start
        _update(job, stage="preparing the result", done=self._total)
        return self._serialise(req, result, seconds)

    def _serialise(
        self, req: PlaygroundRequest, result: GenerationResult, seconds: float
    ) -> dict[str, Any]:
        reranked = self.generator.reranker is not None and len(result.candidates) > 1
        candidates = [
            {"rank": rank, "index": c.index, "pipeline": c.pipeline, "score": c.score, "text": c.text,
             "stop": c.stop, "image": _data_url(c.image) if c.image is not None else None}
            for rank, c in enumerate(result.candidates)
        ]  # fmt: skip
        return {
            "task": req.task,
            "output": req.output,
            "prompt": result.prompt.rerank_text(),
            "strategy": req.strategy,
            "reranked": reranked,
            "candidates": candidates,
            "retrieved": [self._document(d) for d in result.retrieved],
            "seconds": round(seconds, 3),
            "tokens": sum(len(c.tokens) for c in result.candidates),
        }

    def _document(self, doc: Any) -> dict[str, Any]:
        texts = [s.text for s in doc.segments if isinstance(s, TextSegment)]
        images = [s for s in doc.segments if isinstance(s, ImageSegment)]
        image = None
        if images:
            seg = images[0]
            if seg.image is not None:
                image = _data_url(seg.pil())
            elif self.generator.tokenizer.image_tokenizer is not None:
                import torch

                image = _data_url(
                    self.generator.tokenizer.image_tokenizer.decode(torch.as_tensor([seg.codes]))[0]
                )
        return {"id": doc.id, "text": " ".join(texts), "image": image}

    # ------------------------------------------------------------ progress
    def _hook_model(self) -> None:
        """Count model steps: the token embedding runs once per prefill and once per step."""
        import torch

        self._job, self._total = None, 0
        emb = getattr(self.generator.model, "tok_emb", None)
        if not isinstance(emb, torch.nn.Module):
            emb = next(
                (m for m in self.generator.model.modules() if isinstance(m, torch.nn.Embedding)),
                None,
            )
        if emb is not None:
            emb.register_forward_hook(self._on_step)

    def _on_step(self, *_: Any) -> None:
        job = self._job
        if job is None:
            return
        self._tokens += 1
        done = min(self._tokens, self._total) if self._total else self._tokens
        stage = (
            "decoding" if not self._total or done < self._total else "decoding images / re-ranking"
        )
        job.update(stage=stage, done=done)


def _update(job: Any, **values: Any) -> None:
    if job is not None:
        job.update(**values)


def _number(raw: Any, name: str, kind: type, lo: float, hi: float) -> Any:
    try:
        value = kind(str(raw).strip())
    except ValueError:
        raise RequestError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        ) from None
    if not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _image(data: bytes | None, task: str) -> Any:
    if not data:
        raise RequestError(f"{task}: upload an image")
    try:
        return image_from_png(data)
    except Exception as err:  # PIL raises several error types for unreadable files
        raise RequestError(
            f"the uploaded file is not an image PIL can read ({type(err).__name__}: {err})"
        ) from None


def _data_url(image: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(image_to_png(image)).decode("ascii")
