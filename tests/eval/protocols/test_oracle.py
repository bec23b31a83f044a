"""Protocol scoring against hand-computed values, with an ``oracle`` generator.

The oracle generator (``_oracle.py``) writes the answers the test chooses in the
``generate`` runner's layout, so each protocol's numbers can be predicted exactly: real
images score 1 with the world scorer and FID 0 against themselves, reference captions
score the CIDEr-D that :func:`score_captions` gives them, and the VQA numbers below are
worked out by hand from the official leave-one-out rule.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.core.config import ConfigError, load_config
from cm3leon.eval.datasets import read_caption_dataset, read_edit_samples, read_world_scenes
from cm3leon.eval.formats import FormatError
from cm3leon.eval.metrics.cider import score_captions
from cm3leon.eval.metrics.features import resolve_document_encoder
from cm3leon.eval.metrics.vqa import vqa_evaluate
from cm3leon.eval.protocols import (
    CaptioningConfig,
    EditingConfig,
    TextToImageConfig,
    VQAConfig,
    run_captioning,
    run_editing,
    run_text_to_image,
    run_vqa,
)
from cm3leon.world import (
    CHANCE,
    COLOURS,
    SHAPES,
    Scene,
    WorldObject,
    object_chance,
    render_scene,
)
from cm3leon.world.scene import CELL_NAMES, SIZE_RADIUS, cell_center
from tests.eval.protocols._oracle import ORACLE, SEEN

MODEL = {"export": "unused", "text_tokenizer": "bytes", "image_tokenizer": "unused"}


def test_text_to_image_real_images_score_perfectly(
    world: Path, tiny, oracle, tmp_path: Path
) -> None:
    scenes = read_world_scenes(world / "ground_truth" / "scenes.jsonl", split="val")
    ids = sorted(scenes, key=int)[:4]
    for i in ids:
        path = tmp_path / "truth" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(render_scene(Scene.from_dict(scenes[i]["scene"])).image).save(path)
        ORACLE[i] = path
    cfg = load_config(TextToImageConfig, data={
        "model": MODEL, "generator": "oracle", "num_samples": 2,
        "data": {"ground_truth": str(world / "ground_truth" / "scenes.jsonl"), "limit": 4},
        "clip": {"options": {"path": tiny["clip"]}},
    })  # fmt: skip
    out = run_text_to_image(cfg, tmp_path / "run", registries=oracle)
    assert [e["text"] for e in SEEN] == [scenes[i]["captions"][0] for i in ids]
    assert all(e["task"] == "text_to_image" for e in SEEN)
    for key in (
        "object_acc",
        "object_precision",
        "object_recall",
        "object_f1",
        "scene_acc",
        "colour_acc",
        "shape_acc",
        "colour_shape_acc",
        "position_acc",
        "count_acc",
    ):
        assert out[key] == 1.0, key
    truths = [scenes[i]["scene"] for i in ids]
    assert out["baselines"]["chance"] == {**CHANCE, "object_acc": object_chance(truths)}
    assert out["baselines"]["shuffled"]["colour_shape_acc"] < 1.0
    # The chosen images are the renders: shuffled and other-scene floors coincide.
    assert out["baselines"]["other_scene"] == out["baselines"]["shuffled"]
    assert out["baselines"]["mean_image"]["object_acc"] == 0.0
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)  # the reference is the same images
    assert out["fid_features"] == "clip" and out["num_prompts"] == 4 and out["num_samples"] == 2
    enc = resolve_document_encoder("clip-image", {"path": tiny["clip"]})
    with Image.open(ORACLE[ids[0]]) as im:
        img = enc.encode_image([im.convert("RGB")]).double()
    txt = enc.encode_text([scenes[ids[0]]["captions"][0]]).double()
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    expected = 100 * max(float(img[0] @ txt[0] / img[0].norm() / txt[0].norm()), 0.0)
    assert result["per_prompt"][ids[0]]["clip_score"] == pytest.approx(expected, rel=1e-5)
    assert Image.open(tmp_path / "run" / "samples.png").size[0] > 2 * 96
    assert sorted(p.name for p in (tmp_path / "run" / "reference").glob("*.png")) == sorted(
        f"{i}.png" for i in ids
    )
    # The same protocol scores the written samples without generating: the same numbers.
    SEEN.clear()
    manifest = tmp_path / "run" / "generation" / "samples" / "manifest.json"
    rescored = run_text_to_image(
        dataclasses.replace(cfg, predictions=str(manifest)), tmp_path / "rescored", registries=oracle
    )
    assert SEEN == [] and rescored == out


def _clutter(path: Path) -> Path:
    """One image of nine small shapes in nine colour+shape pairs, one in every cell."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES][::2]
    objects = [
        WorldObject(shape=shape, colour=colour, size="small", cell=cell, z=z,
                    center=tuple(float(v) for v in cell_center(cell, 32)), radius=SIZE_RADIUS["small"] * 32)
        for z, (cell, (colour, shape)) in enumerate(zip(sorted(CELL_NAMES), pairs, strict=False))
    ]  # fmt: skip
    Image.fromarray(render_scene(Scene(32, tuple(objects))).image).save(path)
    return path


def test_text_to_image_one_image_for_every_prompt_scores_its_own_floor(
    world: Path, tiny, oracle, tmp_path: Path
) -> None:
    scenes = read_world_scenes(world / "ground_truth" / "scenes.jsonl", split="train")
    ids = sorted(scenes, key=int)[:16]
    clutter = _clutter(tmp_path / "clutter.png")
    ORACLE.update({i: clutter for i in ids})
    cfg = load_config(TextToImageConfig, data={
        "model": MODEL, "generator": "oracle", "num_samples": 1,
        "data": {"ground_truth": str(world / "ground_truth" / "scenes.jsonl"), "split": "train",
                 "limit": 16},
        "clip": {"options": {"path": tiny["clip"]}},
    })  # fmt: skip
    out = run_text_to_image(cfg, tmp_path / "run", registries=oracle)
    # An image that ignores its prompt scores, on every measure, exactly what it scores
    # against the other prompts: it can never clear a floor set above that baseline.
    for key, value in out["baselines"]["shuffled"].items():
        assert out[key] == pytest.approx(value), key
    # The old recall-only measure is fooled (several times its chance); the headline is not.
    assert out["colour_shape_acc"] > 3 * CHANCE["colour_shape_acc"]
    assert out["object_acc"] <= 1.5 * out["baselines"]["chance"]["object_acc"]
    assert out["object_precision"] < out["object_recall"]


def test_captioning_reference_captions_and_the_nearest_caption_baseline(
    world: Path, oracle, tmp_path: Path
) -> None:
    ann = world / "coco" / "annotations" / "captions_val2017.json"
    items = read_caption_dataset(ann, limit=5)
    for it in items:
        ORACLE[it.image_id] = " " + it.references[1] + "\nsecond line"
    cfg = load_config(CaptioningConfig, data={
        "model": MODEL, "generator": "oracle", "tokenizer": "whitespace",
        "data": {"annotations": str(ann), "limit": 5},
    })  # fmt: skip
    out = run_captioning(cfg, tmp_path / "run", registries=oracle)
    assert {e["task"] for e in SEEN} == {"coco_captioning"} and {e["output"] for e in SEEN} == {
        "caption"
    }
    assert [Path(e["record"]["image"]) for e in SEEN] == [it.image.resolve() for it in items]
    expected = score_captions([it.references[1] for it in items], [list(it.references) for it in items],
                              tokenizer="whitespace")  # fmt: skip
    assert out["cider_d"] == pytest.approx(expected.score, rel=1e-12)
    # The baseline: each image's nearest training image by pixel L2 at 8x8, first caption.
    train = read_caption_dataset(world / "coco" / "annotations" / "captions_train2017.json")

    def small(p: Path) -> np.ndarray:
        with Image.open(p) as im:
            return (
                np.asarray(im.convert("RGB").resize((8, 8), Image.Resampling.BOX), np.float64) / 255
            )

    picks = [
        train[int(np.argmin([((small(it.image) - small(t.image)) ** 2).sum() for t in train]))]
        for it in items
    ]
    baseline = score_captions([t.references[0] for t in picks], [list(it.references) for it in items],
                              tokenizer="whitespace")  # fmt: skip
    nn = out["baselines"]["nearest_caption"]
    assert nn["cider_d"] == pytest.approx(baseline.score, rel=1e-12)
    assert nn["num_train_images"] == len(train)
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [result["per_image"][it.image_id]["nearest_train_image"] for it in items] == [
        t.image_id for t in picks
    ]
    preds = json.loads((tmp_path / "run" / "captions.json").read_text())
    assert preds == [{"image_id": int(it.image_id), "caption": it.references[1]} for it in items]
    # Scoring the written captions (the predicted subset) gives the same CIDEr-D.
    scored = dataclasses.replace(cfg, predictions=str(tmp_path / "run" / "captions.json"), partial=True)
    again = run_captioning(scored, tmp_path / "scored", registries=oracle)
    assert again == {"cider_d": out["cider_d"], "num_images": 5}


def _vqa_files(tmp_path: Path) -> tuple[Path, Path]:
    """Three questions and a training split whose majority answers are known."""
    folder = tmp_path / "vqa" / "val2014"
    folder.mkdir(parents=True)
    for image_id in (1, 2):
        Image.new("RGB", (32, 32), (200, 0, 0)).save(folder / f"COCO_val2014_{image_id:012d}.jpg")
    questions = [
        {"question_id": 10, "image_id": 1, "question": "Is there a circle?"},
        {"question_id": 11, "image_id": 1, "question": "Is there a square?"},
        {"question_id": 20, "image_id": 2, "question": "What color is the shape?"},
    ]

    def ann(qid: int, qtype: str, answers: list[str], mca: str) -> dict:
        return {"question_id": qid, "image_id": qid // 10, "question_type": qtype, "answer_type": "other",
                "multiple_choice_answer": mca, "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}  # fmt: skip

    val = [ann(10, "is there", ["yes"] * 10, "yes"), ann(11, "is there", ["no"] * 10, "no"),
           ann(20, "what color", ["yes"] * 2 + ["red"] * 8, "red")]  # fmt: skip
    train = [ann(1, "is there", ["yes"], "yes"), ann(2, "is there", ["yes"], "yes"), ann(3, "is there", ["no"], "no"),
             ann(4, "what color", ["red"], "red"), ann(5, "what color", ["red"], "red"), ann(6, "what color", ["x"], "blue")]  # fmt: skip
    qfile = tmp_path / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
    qfile.write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    (tmp_path / "vqa" / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": val})
    )
    (tmp_path / "vqa" / "v2_mscoco_train2014_annotations.json").write_text(
        json.dumps({"annotations": train})
    )
    return qfile, tmp_path / "vqa" / "v2_mscoco_val2014_annotations.json"


def test_vqa_short_answers_accuracy_and_majority_baselines(oracle, tmp_path: Path) -> None:
    qfile, afile = _vqa_files(tmp_path)
    ORACLE.update({"10": "yes. Question: what?", "11": "The answer is yes.", "20": " Red \nmore"})
    cfg = load_config(VQAConfig, data={
        "model": MODEL, "generator": "oracle", "data": {"questions": str(qfile), "annotations": str(afile)},
    })  # fmt: skip
    out = run_vqa(cfg, tmp_path / "run", registries=oracle)
    assert [e["record"]["question"] for e in SEEN] == ["Is there a circle?", "Is there a square?",
                                                       "What color is the shape?"]  # fmt: skip
    assert {e["task"] for e in SEEN} == {"vqa2"} and SEEN[0]["max_new_tokens"] == 8
    # answers yes / yes / red: 100 + 0 + 100 (8 of 10 humans said red)
    assert out["accuracy"] == pytest.approx(200 / 3)
    # majority of the training split: "yes" (2 votes, seen before "red" with 2): 100 + 0 +
    # leave-one-out of 2 "yes" in 10: (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    assert out["baselines"]["majority"]["answer"] == "yes"
    assert out["baselines"]["majority"]["accuracy"] == pytest.approx((100 + 0 + 60) / 3)
    # per question type: "is there" -> yes, "what color" -> red
    assert out["baselines"]["majority_per_question_type"]["accuracy"] == pytest.approx(200 / 3)
    assert out["baselines"]["source_is_evaluation_split"] is False
    answers = json.loads((tmp_path / "run" / "answers.json").read_text())
    assert answers == [{"question_id": 10, "answer": "yes"}, {"question_id": 11, "answer": "yes"},
                       {"question_id": 20, "answer": "Red"}]  # fmt: skip
    official = vqa_evaluate(
        {"10": "yes", "11": "yes", "20": "Red"}, json.loads(afile.read_text())["annotations"]
    )
    assert out["accuracy"] == pytest.approx(official.overall)


@pytest.mark.parametrize(("version", "expected"), [("2016", 100.0), ("current", 200 / 3)])
def test_vqa_version_selects_the_normalisation(
    oracle, tmp_path: Path, version: str, expected: float
) -> None:
    qfile, afile = _vqa_files(tmp_path)
    ORACLE.update({"10": "Yes", "11": "no", "20": "Red"})
    cfg = load_config(VQAConfig, data={
        "model": MODEL, "generator": "oracle", "vqa_version": version,
        "data": {"questions": str(qfile), "annotations": str(afile)},
    })  # fmt: skip
    out = run_vqa(cfg, tmp_path / "run", registries=oracle)
    # 2016: "Yes" -> "yes" against ten "yes" (100), "no" (100), "Red" -> "red" (8 of 10: 100).
    # current: ten "yes" are unanimous, so "Yes" is compared as is (0); the other two agree.
    assert out["accuracy"] == pytest.approx(expected)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["vqa_version"] == version
    # the majority baseline ("yes": 100 + 0 + 60) is scored with the same version
    assert out["baselines"]["majority"]["accuracy"] == pytest.approx((100 + 0 + 60) / 3)


def test_vqa_unknown_version_fails_before_generating(oracle, tmp_path: Path) -> None:
    qfile, afile = _vqa_files(tmp_path)
    with pytest.raises(ConfigError, match=r"vqa_version: .*valid versions: '2016', 'current'"):
        load_config(VQAConfig, data={
            "model": MODEL, "generator": "oracle", "vqa_version": "latest",
            "data": {"questions": str(qfile), "annotations": str(afile)},
        })  # fmt: skip
    assert SEEN == []


def test_editing_target_scores_like_the_target_baseline(
    world: Path, oracle, tmp_path: Path
) -> None:
    root = world / "instruct_pix2pix"
    items = read_edit_samples(root, "val", limit=4)
    for it in items:
        ORACLE[it.sample_id] = it.target
    cfg = load_config(EditingConfig, data={
        "model": MODEL, "generator": "oracle",
        "data": {"root": str(root), "ground_truth": str(world / "ground_truth" / "edits.jsonl"), "limit": 4},
    })  # fmt: skip
    out = run_editing(cfg, tmp_path / "run", registries=oracle)
    assert [e["record"]["instruction"] for e in SEEN] == [it.instruction for it in items]
    assert {e["task"] for e in SEEN} == {"instructpix2pix"} and {e["output"] for e in SEEN} == {
        "edited_image"
    }
    assert out["mse_to_target"] == 0.0
    target = out["baselines"]["target"]
    for key in ("edit_acc", "preserve_acc", "success", "after_colour_shape_acc"):
        assert out[key] == target[key] == 1.0
    assert out["baselines"]["identity"]["edit_acc"] == 0.0  # every world edit changes something
    assert out["num_edits"] == 4
    # A folder of edited images (<sample id>.png) is scored the same way, without generating.
    folder = tmp_path / "edited"
    folder.mkdir()
    for it in items:
        Image.open(it.target).convert("RGB").save(folder / f"{it.sample_id}.png")
    SEEN.clear()
    scored = dataclasses.replace(cfg, predictions=str(folder))
    assert run_editing(scored, tmp_path / "scored", registries=oracle) == out and SEEN == []
    (folder / f"{items[0].sample_id}.png").unlink()
    with pytest.raises(FormatError, match="no edited image for sample"):
        run_editing(scored, tmp_path / "scored", registries=oracle)


@pytest.mark.slow  # Inception-v3 at 299 px on one CPU thread: ~40 s
@pytest.mark.filterwarnings("ignore::cm3leon.eval.metrics.frechet.RankDeficientWarning")
def test_text_to_image_inception_features_when_weights_are_configured(
    world: Path, tiny, oracle, tmp_path: Path
) -> None:
    import torch

    from tests.eval.metrics.test_inception import _reference_layout

    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_reference_layout(), weights)
    ann = world / "coco" / "annotations" / "captions_val2017.json"
    items = read_caption_dataset(ann, limit=3)
    for it in items:
        ORACLE[it.image_id] = it.image  # the real JPEG: generated == reference
    cfg = load_config(TextToImageConfig, data={
        "model": MODEL, "generator": "oracle", "num_samples": 1,
        "data": {"captions": str(ann), "limit": 3, "caption_index": 2},
        "clip": {"options": {"path": tiny["clip"]}}, "fid": {"weights_path": str(weights)},
    })  # fmt: skip
    out = run_text_to_image(cfg, tmp_path / "run", registries=oracle)
    assert [e["text"] for e in SEEN] == [it.references[2] for it in items]
    assert out["fid_features"] == "inception" and out["fid"] == pytest.approx(0.0, abs=1e-3)
    assert "colour_acc" not in out and out["baselines"] == {}  # no ground truth given
