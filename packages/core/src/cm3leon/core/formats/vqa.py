"""VQA v2, OK-VQA and VizWiz files, and VQA results -- read and written.

VQA v2 / OK-VQA (one schema, two file-name conventions, see :data:`VQA_FILES`)::

    v2_OpenEnded_mscoco_<subtype>_questions.json    {"info", "license", "task_type", "data_type",
        "data_subtype": "val2014", "questions": [{"image_id", "question", "question_id"}]}
    v2_mscoco_<subtype>_annotations.json            {"info", "license", "data_type", "data_subtype",
        "annotations": [{"question_id", "image_id", "question_type", "answer_type",
                         "multiple_choice_answer", "answers": [{"answer", "answer_confidence",
                         "answer_id"}, ...]}]}

with COCO-2014 images ``<subtype>/COCO_<subtype>_<image_id:012d>.jpg``.

VizWiz::

    <split>.json   [{"image": "VizWiz_val_00000000.jpg", "question", "answerable": 0 | 1,
                     "answer_type", "answers": [{"answer", "answer_confidence"}]}]

VQA results (what a model submits): ``[{"question_id": 1, "answer": "..."}]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import (
    EntryError,
    FormatError,
    OnError,
    checked,
    entry_field,
    entry_key,
    entry_list,
    load_json,
    write_json,
)
from cm3leon.core.io import read_json

__all__ = [
    "VQA_FILES",
    "VQAAnnotation",
    "VQAQuestion",
    "VQAQuestionFile",
    "VizWizQuestion",
    "coco_image_names",
    "index_annotations",
    "load_vizwiz",
    "load_vqa_annotations",
    "load_vqa_questions",
    "parse_annotation",
    "parse_answers",
    "parse_question",
    "parse_vizwiz",
    "read_vqa_annotations",
    "read_vqa_results",
    "write_vizwiz",
    "write_vqa_results",
    "write_vqa_split",
]

#: Dataset -> (questions file, annotations file) name templates, ``{subtype}`` e.g. ``val2014``.
VQA_FILES = {
    "vqa2": ("v2_OpenEnded_mscoco_{subtype}_questions.json", "v2_mscoco_{subtype}_annotations.json"),
    "okvqa": ("OpenEnded_mscoco_{subtype}_questions.json", "mscoco_{subtype}_annotations.json"),
}


@dataclass(frozen=True)
class VQAQuestion:
    """One question of a questions file."""

    question_id: int
    image_id: int
    question: str


@dataclass(frozen=True)
class VQAQuestionFile:
    """A parsed questions file: its ``data_subtype`` and the raw question entries."""

    path: Path
    subtype: str
    entries: list[Any]

    def questions(self, on_error: OnError | None = None) -> list[VQAQuestion]:
        """The questions (file order), each checked by :func:`parse_question`."""
        rows = (checked(lambda q=q, k=k: parse_question(q, f"{self.path}: questions[{k}]"), on_error)
                for k, q in enumerate(self.entries))  # fmt: skip
        return [r for r in rows if r is not None]


@dataclass(frozen=True)
class VQAAnnotation:
    """The annotation of one question: ten annotator answers with their confidences."""

    question_id: int
    image_id: int
    question_type: str
    answer_type: str
    multiple_choice_answer: str
    answers: tuple[str, ...]
    confidences: tuple[str, ...]

    def to_dict(self, dataset: str) -> dict[str, Any]:
        """The file entry; OK-VQA adds ``raw_answer`` to each answer and ``confidence``."""
        ok = dataset == "okvqa"
        answers = [{"answer": a, "answer_confidence": c, "answer_id": i + 1} | ({"raw_answer": a} if ok else {})
                   for i, (a, c) in enumerate(zip(self.answers, self.confidences, strict=True))]  # fmt: skip
        return {"question_type": self.question_type, "multiple_choice_answer": self.multiple_choice_answer,
                "answers": answers, "image_id": self.image_id, "answer_type": self.answer_type,
                "question_id": self.question_id} | ({"confidence": 3} if ok else {})  # fmt: skip


@dataclass(frozen=True)
class VizWizQuestion:
    """One VizWiz entry: image file name, question, annotator answers and confidences."""

    image: str
    question: str
    answers: tuple[str, ...]
    confidences: tuple[str, ...]
    answer_type: str | None = None
    answerable: int | None = None

    def to_dict(self) -> dict[str, Any]:
        answers = [{"answer": a, "answer_confidence": c} for a, c in zip(self.answers, self.confidences, strict=True)]
        return {"image": self.image, "question": self.question, "answers": answers,
                "answer_type": self.answer_type, "answerable": self.answerable}  # fmt: skip


def coco_image_names(subtype: str, image_id: int) -> list[str]:
    """File names a VQA image may have: ``COCO_<subtype>_<id12>``, ``<id12>``, ``<id>`` (.jpg/.png)."""
    stems = [f"COCO_{subtype}_{image_id:012d}", f"{image_id:012d}", str(image_id)]
    return [f"{s}{ext}" for s in stems for ext in (".jpg", ".png")]


def load_vqa_questions(path: Path, split: str | None = None) -> VQAQuestionFile:
    """A questions file; ``subtype`` is ``data_subtype``, else ``split``, else from the name.

    Raises:
        FormatError: not JSON, or no top-level ``questions`` list.
    """
    data = load_json(path)
    if not isinstance(data.get("questions"), list):
        raise FormatError(f"{path}: needs a top-level 'questions' list")
    parts = path.stem.split("_")  # v2_OpenEnded_mscoco_<subtype>_questions
    subtype = str(data.get("data_subtype") or split or (parts[-2] if len(parts) > 1 else ""))
    return VQAQuestionFile(path, subtype, data["questions"])


def parse_question(entry: Any, where: str) -> VQAQuestion:
    """``{"question_id", "image_id", "question"}`` checked (the question as written)."""
    qid = entry_field(entry, "question_id", int, where)
    image_id = entry_field(entry, "image_id", int, where)
    return VQAQuestion(qid, image_id, entry_field(entry, "question", str, where))


def load_vqa_annotations(path: Path) -> list[Any]:
    """The raw ``annotations`` list of an annotations file (checked by :func:`index_annotations`).

    Raises:
        FormatError: not JSON, or no top-level ``annotations`` list.
    """
    data = load_json(path)
    if not isinstance(data.get("annotations"), list):
        raise FormatError(f"{path}: needs a top-level 'annotations' list")
    return data["annotations"]


def index_annotations(path: Path, annotations: Iterable[Any], on_error: OnError | None = None) -> dict[int, Any]:
    """``question_id -> annotation`` (the last one wins); an entry without an int id is an error."""
    by_qid: dict[int, Any] = {}
    for k, ann in enumerate(annotations):
        qid = checked(lambda a=ann, w=f"{path}: annotations[{k}]": entry_field(a, "question_id", int, w), on_error)
        if qid is not None:
            by_qid[qid] = ann
    return by_qid


def parse_annotation(entry: Any, where: str) -> VQAAnnotation:
    """An annotation entry checked: ids, ``answers``; the rest as in the file (``""`` if absent)."""
    qid = entry_field(entry, "question_id", int, where)
    image_id = entry_field(entry, "image_id", int, where)
    answers = tuple(parse_answers(entry, f"{where}: question_id {qid}"))
    confidences = tuple(a.get("answer_confidence", "") for a in entry["answers"])
    return VQAAnnotation(qid, image_id, str(entry.get("question_type", "")), str(entry.get("answer_type", "")),
                         str(entry.get("multiple_choice_answer", "")), answers, confidences)  # fmt: skip


def parse_answers(entry: Any, where: str) -> list[str]:
    """The annotator answers of an annotation (or VizWiz entry), stripped; none is an error."""
    answers = entry_field(entry, "answers", list, where)
    out = [entry_field(a, "answer", str, f"{where}.answers[{k}]").strip() for k, a in enumerate(answers)]
    if not out:
        raise EntryError(f"{where}: no answers", reason="empty_text")
    return out


def write_vqa_split(
    root: Path,
    dataset: str,
    subtype: str,
    *,
    questions: Sequence[VQAQuestion],
    annotations: Sequence[VQAAnnotation],
    info: Mapping[str, Any],
    license: Mapping[str, Any],
) -> None:
    """The questions and annotations files of ``dataset`` (``vqa2`` / ``okvqa``) for ``subtype``."""
    q_name, a_name = VQA_FILES[dataset]
    rows = [{"image_id": q.image_id, "question": q.question, "question_id": q.question_id} for q in questions]
    write_json(root / q_name.format(subtype=subtype),
               {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": license,
                "data_subtype": subtype, "questions": rows})  # fmt: skip
    write_json(root / a_name.format(subtype=subtype),
               {"info": info, "license": license, "data_subtype": subtype, "data_type": "mscoco",
                "annotations": [a.to_dict(dataset) for a in annotations]})  # fmt: skip


# ------------------------------------------------------------------ VizWiz
def parse_vizwiz(entry: Any, where: str) -> VizWizQuestion:
    """A VizWiz entry checked: ``image``, ``question`` (as written) and ``answers`` (stripped)."""
    image = entry_field(entry, "image", str, where)
    question = entry_field(entry, "question", str, where)
    answers = tuple(parse_answers(entry, where))
    confidences = tuple(a.get("answer_confidence", "") for a in entry["answers"])
    return VizWizQuestion(image, question, answers, confidences, entry.get("answer_type"), entry.get("answerable"))


def load_vizwiz(path: Path) -> list[Any]:
    """The raw entries of a VizWiz ``<split>.json`` (checked by :func:`parse_vizwiz`)."""
    return load_json(path, list)


def write_vizwiz(path: Path, rows: Sequence[VizWizQuestion]) -> None:
    """A VizWiz ``<split>.json``."""
    write_json(path, [r.to_dict() for r in rows])


# ----------------------------------------------------------------- results
def read_vqa_results(path: str | Path) -> dict[str, str]:
    """``question_id -> answer`` from a VQA results file (ids as strings); duplicates are an error.

    Raises:
        FileNotFoundError: no such file (``cm3leon.core.io.read_json``, as every eval input).
        FormatError: not a list of ``{"question_id", "answer"}``, or a question answered twice.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for i, entry in enumerate(entry_list(path, read_json(path), "results")):
        qid = str(entry_key(path, entry, i, "question_id"))
        answer = entry_key(path, entry, i, "answer")
        if not isinstance(answer, str):
            raise EntryError(f"{path}: entry {i} (question_id {qid}): answer must be a string", reason="wrong_type")
        if qid in out:
            raise EntryError(f"{path}: question_id {qid} is answered twice (entry {i})", reason="duplicate")
        out[qid] = answer
    return out


def write_vqa_results(path: Path, answers: Mapping[str, str]) -> None:
    """``[{"question_id", "answer"}]`` (numeric ids written as numbers, in the given order)."""
    write_json(path, [{"question_id": int(q) if q.isdigit() else q, "answer": a} for q, a in answers.items()])


def read_vqa_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Annotation records (official layout, or the bare list) with their ``answers`` checked.

    Each answer is a string or an object with a string ``answer``.

    Raises:
        FileNotFoundError: no such file.
        FormatError: an entry without ``question_id`` or with empty or malformed ``answers``.
    """
    path = Path(path)
    records = entry_list(path, read_json(path), "annotations")
    for i, entry in enumerate(records):
        qid = entry_key(path, entry, i, "question_id")
        answers = entry_key(path, entry, i, "answers")
        if not isinstance(answers, list) or not answers:
            raise EntryError(f"{path}: question {qid}: 'answers' must be a non-empty list", reason="empty_text")
        if not all(isinstance(a, str) or (isinstance(a, dict) and isinstance(a.get("answer"), str))
                   for a in answers):  # fmt: skip
            raise EntryError(f"{path}: question {qid}: each answer must be a string or have 'answer'",
                             reason="wrong_type")  # fmt: skip
    return records


