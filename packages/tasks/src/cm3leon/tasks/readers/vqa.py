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
answer (VQA's ``multiple_choice_answer`` when present).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.tasks.builtin.vqa import majority_answer
from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    RecordError,
    entry_field,
    find_annotation_file,
    first_existing,
    load_image,
    load_json,
    pick_image_dir,
    reader,
)

__all__ = ["read_okvqa", "read_vizwiz", "read_vqa2"]


def _answers(entry: Any, where: str) -> list[str]:
    answers = entry_field(entry, "answers", list, where)
    out = [entry_field(a, "answer", str, f"{where}.answers[{k}]").strip() for k, a in enumerate(answers)]
    if not out:
        raise RecordError(f"{where}: no answers", reason="empty_text")
    return out


def _coco_names(subtype: str, image_id: int) -> list[str]:
    stems = [f"COCO_{subtype}_{image_id:012d}", f"{image_id:012d}", str(image_id)]
    return [f"{s}{ext}" for s in stems for ext in (".jpg", ".png")]


def _read_coco_vqa(path: Path, split: str | None, ctx: ReadContext, image_dir: Any,
                   q_patterns: tuple[str, ...], a_patterns: tuple[str, ...]) -> Iterator[dict]:  # fmt: skip
    if path.is_file():
        q_file, a_file = path, find_annotation_file(path.parent, a_patterns, split, "VQA annotations")
    else:
        q_file = find_annotation_file(path, q_patterns, split, "VQA questions")
        a_file = find_annotation_file(path, a_patterns, split, "VQA annotations")
    qdata, adata = load_json(q_file), load_json(a_file)
    if not isinstance(qdata.get("questions"), list):
        raise FormatError(f"{q_file}: needs a top-level 'questions' list")
    if not isinstance(adata.get("annotations"), list):
        raise FormatError(f"{a_file}: needs a top-level 'annotations' list")
    subtype = str(qdata.get("data_subtype") or split or q_file.stem.split("_")[-2])
    by_qid: dict[int, Any] = {}
    for k, ann in enumerate(adata["annotations"]):
        qid = ctx.attempt(lambda a=ann, w=f"{a_file}: annotations[{k}]": entry_field(a, "question_id", int, w))
        if qid is not None:
            by_qid[qid] = ann
    questions = qdata["questions"]
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here, up = q_file.parent, q_file.parent.parent
        probes = [_coco_names(subtype, q["image_id"]) for q in questions[:8]
                  if isinstance(q, dict) and isinstance(q.get("image_id"), int)]  # fmt: skip
        folder = pick_image_dir([here / subtype, up / subtype, here / "images" / subtype,
                                 up / "images" / subtype, here / "images", here], probes, q_file)  # fmt: skip
    for k, question in enumerate(questions):
        where = f"{q_file}: questions[{k}]"

        def make(q: Any = question, w: str = where) -> dict:
            qid = entry_field(q, "question_id", int, w)
            image_id = entry_field(q, "image_id", int, w)
            text = entry_field(q, "question", str, w).strip()
            if qid not in by_qid:
                raise RecordError(f"{w}: question_id {qid} has no entry in {a_file}", reason="missing_answer")
            ann = by_qid[qid]
            answers = _answers(ann, f"{a_file}: question_id {qid}")
            mc = ann.get("multiple_choice_answer")
            answer = mc.strip() if isinstance(mc, str) and mc.strip() else majority_answer(answers)
            image = load_image(first_existing(folder, _coco_names(subtype, image_id)), w)
            return {"id": str(qid), "image": image, "question": text, "answer": answer, "answers": answers}

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
    entries = load_json(ann_file, list)
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
            file_name = entry_field(e, "image", str, w)
            text = entry_field(e, "question", str, w).strip()
            answers = _answers(e, w)
            image = load_image(folder / file_name, w)
            return {"id": file_name, "image": image, "question": text,
                    "answer": majority_answer(answers), "answers": answers}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record
