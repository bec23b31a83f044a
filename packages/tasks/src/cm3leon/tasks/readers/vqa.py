"""VQA readers: VQA v2 and OK-VQA (questions + annotations JSON), and VizWiz.

VQA v2 / OK-VQA (the same schema)::

    v2_OpenEnded_mscoco_<split>_questions.json   (OK-VQA: OpenEnded_mscoco_<split>_questions.json)
        {"data_subtype": "train2014", "questions": [{"image_id": 9, "question": "...", "question_id": 9000}]}
    v2_mscoco_<split>_annotations.json           (OK-VQA: mscoco_<split>_annotations.json)
        {"annotations": [{"question_id": 9000, "image_id": 9, "multiple_choice_answer": "yes",
                          "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": 1}, ...]}]}

Images are COCO's ``COCO_<data_subtype>_<image_id:012d>.jpg`` (also accepted:
``<image_id:012d>.jpg`` and ``.png``) in ``<data_subtype>/`` next to or above the
question file, or in ``images/``; ``image_dir=`` overrides.  ``path`` is the questions
file or the folder holding both files.

VizWiz::

    <split>.json   [{"image": "VizWiz_train_00000000.jpg", "question": "...", "answerable": 1,
                     "answer_type": "other", "answers": [{"answer": "...", "answer_confidence": "yes"}]}]

with images in ``<split>/`` (beside or above the JSON, or ``images/<split>/``).

Every record keeps all annotator answers (``answers``) and trains on the majority
answer (VQA's ``multiple_choice_answer`` when present).  The files are parsed by
:mod:`cm3leon.core.formats.vqa`; this module finds them and their images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats import vqa as vqa_format
from cm3leon.tasks.builtin.vqa import majority_answer
from cm3leon.tasks.readers.common import (
    ReadContext,
    RecordError,
    find_annotation_file,
    first_existing,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = ["read_okvqa", "read_vizwiz", "read_vqa2"]


def _read_coco_vqa(path: Path, split: str | None, ctx: ReadContext, image_dir: Any,
                   q_patterns: tuple[str, ...], a_patterns: tuple[str, ...]) -> Iterator[dict]:  # fmt: skip
    if path.is_file():
        q_file, a_file = path, find_annotation_file(path.parent, a_patterns, split, "VQA annotations")
    else:
        q_file = find_annotation_file(path, q_patterns, split, "VQA questions")
        a_file = find_annotation_file(path, a_patterns, split, "VQA annotations")
    qfile = vqa_format.load_vqa_questions(q_file, split)
    by_qid = vqa_format.index_annotations(a_file, vqa_format.load_vqa_annotations(a_file), ctx.reject)
    subtype, questions = qfile.subtype, qfile.entries
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here, up = q_file.parent, q_file.parent.parent
        probes = [vqa_format.coco_image_names(subtype, q["image_id"]) for q in questions[:8]
                  if isinstance(q, dict) and isinstance(q.get("image_id"), int)]  # fmt: skip
        folder = pick_image_dir([here / subtype, up / subtype, here / "images" / subtype,
                                 up / "images" / subtype, here / "images", here], probes, q_file)  # fmt: skip
    for k, question in enumerate(questions):
        where = f"{q_file}: questions[{k}]"

        def make(q: Any = question, w: str = where) -> dict:
            row = vqa_format.parse_question(q, w)
            if row.question_id not in by_qid:
                raise RecordError(f"{w}: question_id {row.question_id} has no entry in {a_file}",
                                  reason="missing_answer")  # fmt: skip
            ann = by_qid[row.question_id]
            answers = vqa_format.parse_answers(ann, f"{a_file}: question_id {row.question_id}")
            mc = ann.get("multiple_choice_answer")
            answer = mc.strip() if isinstance(mc, str) and mc.strip() else majority_answer(answers)
            image = load_image(first_existing(folder, vqa_format.coco_image_names(subtype, row.image_id)), w)
            return {"id": str(row.question_id), "image": image, "question": row.question.strip(), "answer": answer,
                    "answers": answers}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record


@reader
def read_vqa2(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None) -> Iterator[dict]:
    """One :class:`VQARecord` per VQA v2 question: ``{"id": "<question_id>", "image", "question", "answer", "answers"}``."""
    yield from _read_coco_vqa(path, split, ctx, image_dir,
                              ("v2_OpenEnded_mscoco_*_questions.json", "*_questions.json"),
                              ("v2_mscoco_*_annotations.json", "*_annotations.json"))  # fmt: skip


@reader
def read_okvqa(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None) -> Iterator[dict]:
    """One :class:`VQARecord` per OK-VQA question (same files and record as VQA v2)."""
    yield from _read_coco_vqa(path, split, ctx, image_dir,
                              ("OpenEnded_mscoco_*_questions.json", "*_questions.json"),
                              ("mscoco_*_annotations.json", "*_annotations.json"))  # fmt: skip


@reader
def read_vizwiz(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None) -> Iterator[dict]:
    """One :class:`VQARecord` per VizWiz question: ``{"id": "<image file>", ...}``."""
    patterns = (f"{split}.json",) if split else ("train.json", "val.json", "test.json")
    ann_file = find_annotation_file(path, patterns, None, "VizWiz annotations")
    name = split or ann_file.stem
    entries = vqa_format.load_vizwiz(ann_file)
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here, up = ann_file.parent, ann_file.parent.parent
        probes = [[e["image"]] for e in entries[:8] if isinstance(e, dict) and isinstance(e.get("image"), str)]
        folder = pick_image_dir([here / name, up / name, here / "images" / name, up / "images" / name,
                                 here / "images", here], probes, ann_file)  # fmt: skip
    for k, entry in enumerate(entries):
        where = f"{ann_file}: [{k}]"

        def make(e: Any = entry, w: str = where) -> dict:
            row = vqa_format.parse_vizwiz(e, w)
            image = load_image(folder / row.image, w)
            return {"id": row.image, "image": image, "question": row.question.strip(),
                    "answer": majority_answer(list(row.answers)), "answers": list(row.answers)}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record
