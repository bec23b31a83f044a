"""Visual question answering (paper §4.2, Table 2: VQA2 accuracy): the ``vqa`` runner and
``cm3leon eval vqa``.

checkpoint + VQA v2 questions/annotations -> generated answer spans -> short answers
(:func:`cm3leon.eval.answers.extract_short_answer`, the Table 5 answer layouts) -> VQA
results JSON -> official VQA accuracy (per question and answer type), with the
majority-answer baselines (the most frequent training answer for every question, and per
question type) scored the same way.

The prompt is the fine-tuning layout of the registered SFT task ``task`` (default
``vqa2``) with exactly the answer field masked, e.g. ``Question: What colour is the
circle? The answer is<mask:0>. <break> [image] <break> <infill:0>`` -- what SFT trains
with ``CM3Config.target_prob`` -- so the generated infill is the bare answer (``" red"``).

With ``predictions`` (a VQA results file) nothing is generated: the file is scored
(:func:`score_vqa_files`, against ``data.annotations``; ``data.questions`` is not needed)
and written to ``results.json``.

Outputs in ``run_dir``: ``generation/``, ``answers.json`` (VQA results),
``baseline_answers.json``, ``samples.png``, ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ConfigError
from cm3leon.core.io import atomic_write_json
from cm3leon.decoding.presets import DecodingPreset
from cm3leon.eval.answers import extract_short_answer
from cm3leon.eval.datasets import read_vqa_questions, sibling_split_file
from cm3leon.eval.formats import read_vqa_annotations, read_vqa_results
from cm3leon.eval.protocols.common import (
    file_info,
    finish,
    generation_info,
    load_rgb,
    registries_or_active,
    require_model,
    save_captioned_grid,
    summary,
)
from cm3leon.eval.protocols.config import ModelSource, RetrievalChoice, generate_config
from cm3leon.eval.protocols.generation import DEFAULT_GENERATOR, run_generator

__all__ = ["VQAConfig", "VQAData", "run_vqa", "score_vqa_files"]


@dataclass
class VQAData:
    """Questions, annotations and images.

    Attributes:
        questions: VQA questions file (``v2_OpenEnded_mscoco_val2014_questions.json``);
            required to generate.
        annotations: its annotations (``v2_mscoco_val2014_annotations.json``).
        images: image folder (default: ``<data_subtype>/`` next to the questions file).
        image_pattern: image file name, formatted with ``subtype`` and ``image_id``.
        train_annotations: annotations the majority answers are taken from (default: the
            ``val`` -> ``train`` sibling file; else the evaluation annotations, which the
            result then says).
        limit: first ``limit`` questions (by id).
    """

    questions: str | None = None
    annotations: str = MISSING
    images: str | None = None
    image_pattern: str = "COCO_{subtype}_{image_id:012d}.jpg"
    train_annotations: str | None = None
    limit: int | None = None


@dataclass
class VQAConfig:
    """Schema of the ``vqa`` runner and ``cm3leon eval vqa``.

    ``vqa_version`` picks the ``vqaEval.py`` normalisation the answers and the majority
    baselines are scored with: ``"2016"`` (default) or ``"current"``
    (:mod:`cm3leon.eval.metrics.vqa` says how they differ).  ``predictions``: a VQA results file
    to score instead of generating; ``partial``: then score only the questions it answers
    (a generated run always scores the questions it generated for).
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: VQAData = field(default_factory=VQAData)
    decoding: DecodingPreset = field(
        default_factory=lambda: DecodingPreset(strategy="greedy", max_new_tokens=8)
    )
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    task: str = "vqa2"
    output_field: str = "answer"
    seed: int = 0
    batch_size: int = 8
    grid_images: int = 16
    generator: str = DEFAULT_GENERATOR
    vqa_version: str = "2016"
    predictions: str | None = None
    partial: bool = False

    def __post_init__(self) -> None:
        from cm3leon.eval.metrics.vqa import check_vqa_version

        try:
            check_vqa_version(self.vqa_version)  # before generating anything
        except ValueError as err:
            raise ConfigError(f"vqa_version: {err}") from None


def score_vqa_files(
    predictions: str | Path,
    annotations: str | Path,
    *,
    partial: bool = False,
    version: str = "2016",
) -> dict[str, Any]:
    """Official VQA accuracy of a results file against an annotations file.

    ``partial`` scores only the questions that have a prediction.

    ``version`` picks the ``vqaEval.py`` normalisation, ``"2016"`` or ``"current"``
    (:mod:`cm3leon.eval.metrics.vqa`); the result records it under ``version``.
    """
    from cm3leon.eval.metrics.vqa import vqa_evaluate

    res = vqa_evaluate(
        read_vqa_results(predictions),
        read_vqa_annotations(annotations),
        partial=partial,
        version=version,
    )
    out = res.to_dict(per_question=True)
    return {
        "protocol": "vqa",
        "metrics": {"accuracy": out.pop("accuracy")},
        **out,
        "inputs": {"predictions": file_info(predictions), "annotations": file_info(annotations)},
    }


def _baselines(cfg: VQAConfig, questions: list[Any], run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.baselines import majority_answer, majority_answers_by_type

    source = (
        cfg.data.train_annotations
        or sibling_split_file(cfg.data.annotations)
        or cfg.data.annotations
    )
    train = read_vqa_annotations(source)
    overall = majority_answer(train, where=str(source))
    by_type = majority_answers_by_type(train, where=str(source))
    qtype = {
        str(a["question_id"]): str(a.get("question_type", ""))
        for a in read_vqa_annotations(cfg.data.annotations)
    }
    out: dict[str, Any] = {}
    for name, answer_of in (
        ("majority", lambda q: overall),
        (
            "majority_per_question_type",
            lambda q: by_type.get(qtype.get(q.question_id, ""), overall),
        ),
    ):
        path = atomic_write_json(
            run_dir / f"baseline_{name}.json",
            [{"question_id": int(q.question_id), "answer": answer_of(q)} for q in questions],
        )
        scored = score_vqa_files(path, cfg.data.annotations, partial=True, version=cfg.vqa_version)
        out[name] = {
            "accuracy": scored["metrics"]["accuracy"],
            "per_answer_type": scored["per_answer_type"],
        }
    out["majority"]["answer"] = overall
    out["source"] = str(source)
    out["source_is_evaluation_split"] = str(source) == str(cfg.data.annotations)
    return out


def _score_predictions(cfg: VQAConfig, run_dir: Path) -> dict[str, Any]:
    """Score ``cfg.predictions`` (no generation, no baselines); write ``results.json``."""
    scored = score_vqa_files(
        cfg.predictions, cfg.data.annotations, partial=cfg.partial, version=cfg.vqa_version  # type: ignore[arg-type]
    )
    return summary(finish(run_dir, scored, cfg), "per_answer_type", "num_questions")


def run_vqa(
    cfg: VQAConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate answers (or take ``cfg.predictions``), score VQA accuracy and the baselines;
    write ``run_dir/results.json``.

    The summary holds ``accuracy``, ``per_answer_type`` and ``baselines.majority.accuracy``,
    ``baselines.majority_per_question_type.accuracy``, ``num_questions`` (scoring
    ``predictions``: ``accuracy``, ``per_answer_type``, ``num_questions``).
    """
    run_dir = Path(run_dir)
    if cfg.predictions is not None:
        return _score_predictions(cfg, run_dir)
    registries = registries_or_active(registries)
    require_model(cfg.model, image_prompts="VQA prompts hold images (VQ tokenizer needed)")
    if cfg.data.questions is None:
        raise ConfigError("data.questions: required to generate answers")
    questions = read_vqa_questions(
        cfg.data.questions, cfg.data.images, pattern=cfg.data.image_pattern, limit=cfg.data.limit
    )
    entries = [
        {"id": q.question_id, "task": cfg.task, "output": cfg.output_field,
         "record": {"question": q.question, "image": str(q.image.resolve())},
         "max_new_tokens": cfg.decoding.max_new_tokens}
        for q in questions
    ]  # fmt: skip
    gen_cfg = generate_config(cfg.model, cfg.decoding, cfg.retrieval, output="text", num_candidates=1,
                              seed=cfg.seed, batch_size=cfg.batch_size)  # fmt: skip
    gen = run_generator(entries, gen_cfg, run_dir / "generation", runner=cfg.generator,
                        registries=registries, force=force)  # fmt: skip
    raw = {q.question_id: gen.best(q.question_id).get("text") or "" for q in questions}
    answers = {i: extract_short_answer(t) for i, t in raw.items()}
    path = atomic_write_json(
        run_dir / "answers.json", [{"question_id": int(i), "answer": a} for i, a in answers.items()]
    )
    scored = score_vqa_files(path, cfg.data.annotations, partial=True, version=cfg.vqa_version)
    baselines = _baselines(cfg, questions, run_dir)
    shown = questions[: cfg.grid_images]
    grid = save_captioned_grid(
        run_dir / "samples.png", [load_rgb(q.image) for q in shown],
        [f"{q.question} -> {answers[q.question_id] or '(empty)'}" for q in shown],
        ncols=min(4, len(shown)), cell=128,
    )  # fmt: skip
    per_q = scored.get("per_question", {})
    result = {
        "protocol": "vqa",
        "metrics": {"accuracy": scored["metrics"]["accuracy"]},
        "per_answer_type": scored["per_answer_type"],
        "per_question_type": scored["per_question_type"],
        "baselines": baselines,
        "num_questions": len(questions),
        "vqa_version": cfg.vqa_version,
        "task": cfg.task,
        "predictions": str(path),
        "grid": grid,
        "generation": generation_info(gen),
        "per_question": {
            q.question_id: {
                "question": q.question,
                "answer": answers[q.question_id],
                "raw": raw[q.question_id],
                "accuracy": per_q.get(q.question_id),
            }
            for q in questions
        },  # fmt: skip
    }
    return summary(finish(run_dir, result, cfg), "per_answer_type", "baselines", "num_questions")
