"""Visual question answering from a checkpoint (paper §4.2, Table 2: VQA2 accuracy).

checkpoint + VQA v2 questions/annotations -> generated answer spans -> short answers
(:func:`cm3leon.eval.answers.extract_short_answer`, the Table 5 answer layouts) -> VQA
results JSON -> official VQA accuracy (per question and answer type), with the
majority-answer baselines (the most frequent training answer for every question, and per
question type) scored the same way.

The prompt is the fine-tuning layout of the registered SFT task ``task`` (default
``vqa2``) with exactly the answer field masked, e.g. ``Question: What colour is the
circle? The answer is<mask:0>. <break> [image] <break> <infill:0>`` -- what SFT trains
with ``CM3Config.target_prob`` -- so the generated infill is the bare answer (``" red"``).

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
from cm3leon.eval.answers import extract_short_answer
from cm3leon.eval.datasets import read_vqa_questions, sibling_split_file
from cm3leon.eval.generative.common import (
    finish,
    generation_info,
    load_rgb,
    registries_or_active,
    save_captioned_grid,
    summary,
)
from cm3leon.eval.generative.config import (
    DecodingChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.generative.generation import DEFAULT_GENERATOR, run_generator

__all__ = ["VQAData", "VQAEvalConfig", "run_vqa_eval"]


@dataclass
class VQAData:
    """Questions, annotations and images.

    Attributes:
        questions: VQA questions file (``v2_OpenEnded_mscoco_val2014_questions.json``).
        annotations: its annotations (``v2_mscoco_val2014_annotations.json``).
        images: image folder (default: ``<data_subtype>/`` next to the questions file).
        image_pattern: image file name, formatted with ``subtype`` and ``image_id``.
        train_annotations: annotations the majority answers are taken from (default: the
            ``val`` -> ``train`` sibling file; else the evaluation annotations, which the
            result then says).
        limit: first ``limit`` questions (by id).
    """

    questions: str = MISSING
    annotations: str = MISSING
    images: str | None = None
    image_pattern: str = "COCO_{subtype}_{image_id:012d}.jpg"
    train_annotations: str | None = None
    limit: int | None = None


@dataclass
class VQAEvalConfig:
    """Schema of the ``eval_vqa`` runner and ``cm3leon eval protocol vqa``.

    ``vqa_version`` picks the ``vqaEval.py`` normalisation the answers and the majority
    baselines are scored with: ``"2016"`` (default) or ``"current"``
    (:mod:`cm3leon.eval.vqa` says how they differ).
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: VQAData = field(default_factory=VQAData)
    decoding: DecodingChoice = field(
        default_factory=lambda: DecodingChoice(strategy="greedy", max_new_tokens=8)
    )
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    task: str = "vqa2"
    output_field: str = "answer"
    seed: int = 0
    batch_size: int = 8
    grid_images: int = 16
    generator: str = DEFAULT_GENERATOR
    vqa_version: str = "2016"


def _baselines(cfg: VQAEvalConfig, questions: list[Any], run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.baselines import majority_answer, majority_answers_by_type
    from cm3leon.eval.formats import read_vqa_annotations
    from cm3leon.eval.protocols import score_vqa_files

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


def run_vqa_eval(
    cfg: VQAEvalConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate answers, score VQA accuracy and the baselines; write ``run_dir/results.json``.

    The summary holds ``accuracy``, ``per_answer_type`` and ``baselines.majority.accuracy``,
    ``baselines.majority_per_question_type.accuracy``, ``num_questions``.
    """
    from cm3leon.eval.protocols import score_vqa_files
    from cm3leon.eval.vqa import check_vqa_version

    run_dir = Path(run_dir)
    registries = registries_or_active(registries)
    if cfg.model.image_tokenizer is None:
        raise ConfigError("model.image_tokenizer: VQA prompts hold images (VQ tokenizer needed)")
    try:
        check_vqa_version(cfg.vqa_version)  # before generating anything
    except ValueError as err:
        raise ConfigError(f"vqa_version: {err}") from None
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
