"""cm3leon.core.formats.vqa: VQA v2 / OK-VQA question and annotation files, VizWiz, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, FormatError
from cm3leon.core.formats.vqa import (
    VQA_FILES,
    VizWizQuestion,
    VQAAnnotation,
    VQAQuestion,
    coco_image_names,
    index_annotations,
    load_vizwiz,
    load_vqa_annotations,
    load_vqa_questions,
    parse_annotation,
    parse_vizwiz,
    read_vqa_annotations,
    read_vqa_results,
    write_vizwiz,
    write_vqa_results,
    write_vqa_split,
)

QUESTIONS = [VQAQuestion(1000, 1, "Is it red?"), VQAQuestion(2000, 2, "How many?")]
ANNOTATIONS = [VQAAnnotation(1000, 1, "is it", "yes/no", "yes", ("yes", "yes", "no"), ("yes", "maybe", "no")),
               VQAAnnotation(2000, 2, "how many", "number", "2", ("2",), ("yes",))]  # fmt: skip


@pytest.mark.parametrize("dataset", sorted(VQA_FILES))
def test_split_round_trip(tmp_path: Path, dataset: str) -> None:
    write_vqa_split(tmp_path, dataset, "val2014", questions=QUESTIONS, annotations=ANNOTATIONS,
                    info={"version": "1.0"}, license={"name": "x"})  # fmt: skip
    q_name, a_name = (n.format(subtype="val2014") for n in VQA_FILES[dataset])
    qfile = load_vqa_questions(tmp_path / q_name)
    assert qfile.subtype == "val2014" and qfile.questions() == QUESTIONS
    entries = load_vqa_annotations(tmp_path / a_name)
    rows = [parse_annotation(a, f"annotations[{k}]") for k, a in enumerate(entries)]
    assert rows == ANNOTATIONS
    assert set(index_annotations(tmp_path / a_name, entries)) == {1000, 2000}
    okvqa = dataset == "okvqa"
    assert ("raw_answer" in entries[0]["answers"][0]) is okvqa and ("confidence" in entries[0]) is okvqa
    assert [r["question_id"] for r in read_vqa_annotations(tmp_path / a_name)] == [1000, 2000]


def test_malformed_question_and_annotation(tmp_path: Path) -> None:
    file = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    file.write_text(json.dumps({"questions": [{"question_id": 1, "image_id": 1, "question": "ok?"},
                                              {"question_id": 2, "question": "where?"}]}))  # fmt: skip
    qfile = load_vqa_questions(file)
    assert qfile.subtype == "val2014"  # from the file name when data_subtype is absent
    with pytest.raises(EntryError, match=rf"{file}: questions\[1\]: missing key 'image_id'"):
        qfile.questions()
    assert [q.question_id for q in qfile.questions(lambda err: None)] == [1]
    bad = {"question_id": 3, "image_id": 1, "answers": [{"answer": "x"}, {"answer_id": 2}]}
    with pytest.raises(EntryError, match=r"a\.json: \[0\]: question_id 3\.answers\[1\]: missing key 'answer'"):
        parse_annotation(bad, "a.json: [0]")
    (tmp_path / "a.json").write_text(json.dumps({"annotations": [{"question_id": 1, "answers": [{"x": 1}]}]}))
    with pytest.raises(FormatError, match=r"a\.json: question 1: each answer must be a string or have 'answer'"):
        read_vqa_annotations(tmp_path / "a.json")
    (tmp_path / "q.json").write_text(json.dumps({"data_subtype": "val2014"}))
    with pytest.raises(FormatError, match=r"q\.json: needs a top-level 'questions' list"):
        load_vqa_questions(tmp_path / "q.json")


def test_vizwiz_round_trip_and_error(tmp_path: Path) -> None:
    rows = [VizWizQuestion("VizWiz_val_00000000.jpg", "What is this?", ("a cup", "cup"), ("yes", "maybe"),
                           "other", 1)]  # fmt: skip
    write_vizwiz(tmp_path / "val.json", rows)
    entries = load_vizwiz(tmp_path / "val.json")
    assert [parse_vizwiz(e, f"[{k}]") for k, e in enumerate(entries)] == rows
    with pytest.raises(EntryError, match=r"val\.json: \[0\]: missing key 'question'"):
        parse_vizwiz({"image": "x.jpg", "answers": []}, f"{tmp_path / 'val.json'}: [0]")


def test_results_round_trip_and_duplicates(tmp_path: Path) -> None:
    write_vqa_results(tmp_path / "r.json", {"1000": "yes", "2000": "2"})
    assert read_vqa_results(tmp_path / "r.json") == {"1000": "yes", "2000": "2"}
    (tmp_path / "d.json").write_text(json.dumps([{"question_id": 1, "answer": "a"}] * 2))
    with pytest.raises(FormatError, match=r"d\.json: question_id 1 is answered twice \(entry 1\)"):
        read_vqa_results(tmp_path / "d.json")


def test_image_names() -> None:
    assert coco_image_names("val2014", 42)[:2] == ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000042.png"]
