"""`cm3leon world export`: every public format checked against its structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.io import is_complete
from cm3leon.world import formats as world_formats
from cm3leon.world.cli import world_command
from cm3leon.world.export import FORMATS, export_world, parse_formats, read_manifest
from cm3leon.world.records import World
from cm3leon.world.render import render_scene
from cm3leon.world.scene import COCO_KEYPOINTS, Scene
from cm3leon.world.scorer import aggregate, score_text_to_image

N, SEED = 40, 5


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world") / "export"
    export_world(root, n=N, seed=SEED, progress=False)
    return root


def load(path: Path):
    return json.loads(path.read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (32, 32), path
        return np.asarray(im)


def test_every_format_is_complete(out: Path) -> None:
    manifest = read_manifest(out)
    # Without a long tail (--entity-docs) "all" is every format but ``entities``.
    assert set(manifest["formats"]) == {"ground_truth", *FORMATS} - {"entities"}
    assert "tail" not in manifest["params"]  # exports made before the tail stay valid
    assert manifest["params"]["n"] == N and manifest["params"]["seed"] == SEED
    for name in manifest["formats"]:
        assert is_complete(out / name)
    assert not list(out.glob(".*partial"))


def test_coco(out: Path) -> None:
    world = World(SEED)
    seen_images = 0
    for split in ("train", "val"):
        caps = load(out / "coco" / "annotations" / f"captions_{split}2017.json")
        inst = load(out / "coco" / "annotations" / f"instances_{split}2017.json")
        kps = load(out / "coco" / "annotations" / f"person_keypoints_{split}2017.json")
        for data in (caps, inst, kps):
            assert {"info", "licenses", "images", "annotations"} <= set(data)
        ids = {im["id"] for im in caps["images"]}
        seen_images += len(ids)
        for im in caps["images"]:
            assert set(im) >= {"id", "file_name", "height", "width"}
            assert (out / "coco" / f"{split}2017" / im["file_name"]).is_file()
        per_image = {}
        for a in caps["annotations"]:
            assert set(a) == {"id", "image_id", "caption"} and a["image_id"] in ids
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        assert set(per_image.values()) == {5}
        cats = {c["id"]: c for c in inst["categories"]}
        assert cats[1]["name"] == "person" and all(
            {"id", "name", "supercategory"} <= set(c) for c in cats.values()
        )
        for a in inst["annotations"]:
            assert {
                "id",
                "image_id",
                "category_id",
                "segmentation",
                "area",
                "bbox",
                "iscrowd",
            } <= set(a)
            assert a["category_id"] in cats and a["image_id"] in ids and a["iscrowd"] == 0
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and x + w <= 32 and y >= 0 and y + h <= 32
            mask = _decode(a["segmentation"], 32, 32)
            assert mask.sum() == a["area"]
            scene = world.scene(a["image_id"] - 1)
            render = render_scene(scene)
            assert mask.any() and np.isin(render.instance_map[mask], np.arange(1, 5)).all()
        (kp_cat,) = kps["categories"]
        assert kp_cat["keypoints"] == list(COCO_KEYPOINTS) and len(kp_cat["skeleton"]) == 19
        for a in kps["annotations"]:
            assert a["category_id"] == 1 and len(a["keypoints"]) == 51
            v = a["keypoints"][2::3]
            assert set(v) <= {0, 1, 2} and a["num_keypoints"] == sum(x > 0 for x in v)
            assert all(
                a["keypoints"][3 * i] == a["keypoints"][3 * i + 1] == 0
                for i in range(17)
                if v[i] == 0
            )
    assert seen_images == N


def _decode(segmentation, h: int, w: int) -> np.ndarray:
    """Rasterise COCO polygons (even-odd at pixel centres) or uncompressed RLE."""
    if isinstance(segmentation, dict):
        assert segmentation["size"] == [h, w]
        flat = np.zeros(h * w, dtype=bool)
        pos, value = 0, False
        for run in segmentation["counts"]:
            flat[pos : pos + run] = value
            pos, value = pos + run, not value
        assert pos == h * w
        return flat.reshape((h, w), order="F")
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros((h, w), dtype=bool)
    for poly in segmentation:
        px, py = np.asarray(poly[0::2]), np.asarray(poly[1::2])
        inside = np.zeros((h, w), dtype=bool)
        for i in range(len(px)):
            x0, y0, x1, y1 = px[i], py[i], px[i - 1], py[i - 1]
            crosses = (y0 > ys) != (y1 > ys)
            x_at = x0 + (ys - y0) * (x1 - x0) / np.where(y1 == y0, 1, y1 - y0)
            inside ^= crosses & (xs < x_at)
        out |= inside
    return out


def test_coco_segmentations_are_exact_masks(out: Path) -> None:
    world = World(SEED)
    inst = load(out / "coco" / "annotations" / "instances_train2017.json")
    kinds = set()
    for a in inst["annotations"]:
        render = render_scene(world.scene(a["image_id"] - 1))
        kinds.add(type(a["segmentation"]).__name__)
        owner = np.bincount(render.instance_map[_decode(a["segmentation"], 32, 32)]).argmax()
        assert np.array_equal(_decode(a["segmentation"], 32, 32), render.instance_map == owner)
    assert "list" in kinds


def test_flickr30k(out: Path) -> None:
    data = load(out / "flickr30k" / "dataset_flickr30k.json")
    assert data["dataset"] == "flickr30k" and len(data["images"]) == N
    sentids = []
    for i, im in enumerate(data["images"]):
        assert im["imgid"] == i and im["split"] in ("train", "val", "test")
        assert (out / "flickr30k" / "flickr30k-images" / im["filename"]).is_file()
        assert len(im["sentences"]) == 5 and im["sentids"] == [s["sentid"] for s in im["sentences"]]
        for s in im["sentences"]:
            assert (
                s["imgid"] == i
                and s["tokens"]
                and all(t == t.lower() and t.isalnum() for t in s["tokens"])
            )
        sentids += im["sentids"]
    assert sentids == list(range(5 * N))


@pytest.mark.parametrize("name, prefix", [("vqa2", "v2_"), ("okvqa", "")])
def test_vqa_formats(out: Path, name: str, prefix: str) -> None:
    for sub in ("train2014", "val2014"):
        qs = load(out / name / f"{prefix}OpenEnded_mscoco_{sub}_questions.json")
        anns = load(out / name / f"{prefix}mscoco_{sub}_annotations.json")
        assert qs["task_type"] == "Open-Ended" and qs["data_subtype"] == sub == anns["data_subtype"]
        by_id = {q["question_id"]: q for q in qs["questions"]}
        assert len(by_id) == len(qs["questions"]) == len(anns["annotations"])
        for a in anns["annotations"]:
            q = by_id[a["question_id"]]
            assert a["image_id"] == q["image_id"] and q["question"].endswith(("?", "."))
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert all(x["answer_confidence"] in ("yes", "maybe", "no") for x in a["answers"])
            answers = [x["answer"] for x in a["answers"]]
            assert max(set(answers), key=answers.count) == a["multiple_choice_answer"]
            assert a["answer_type"] in ("yes/no", "number", "other") and a["question_type"]
            image = out / name / sub / f"COCO_{sub}_{a['image_id']:012d}.jpg"
            assert image.is_file()


def test_vizwiz(out: Path) -> None:
    total = 0
    for split in ("train", "val"):
        rows = load(out / "vizwiz" / f"{split}.json")
        total += len(rows)
        for r in rows:
            assert set(r) == {"image", "question", "answers", "answer_type", "answerable"}
            assert (
                r["image"].startswith(f"VizWiz_{split}_")
                and (out / "vizwiz" / split / r["image"]).is_file()
            )
            assert len(r["answers"]) == 10 and all(
                set(a) == {"answer", "answer_confidence"} for a in r["answers"]
            )
            assert r["answerable"] in (0, 1) and r["answer_type"] in (
                "yes/no",
                "number",
                "other",
                "unanswerable",
            )
            assert (r["answer_type"] == "unanswerable") == (r["answerable"] == 0)
    assert total == N


def test_scienceqa(out: Path) -> None:
    problems = load(out / "scienceqa" / "problems.json")
    splits = load(out / "scienceqa" / "pid_splits.json")
    assert sorted(pid for ids in splits.values() for pid in ids) == sorted(problems)
    keys = {"question", "choices", "answer", "hint", "image", "task", "grade", "subject", "topic",
            "category", "skill", "lecture", "solution", "split"}  # fmt: skip
    for pid, p in problems.items():
        assert set(p) == keys and isinstance(pid, str) and pid in splits[p["split"]]
        assert len(p["choices"]) >= 2 and 0 <= p["answer"] < len(p["choices"])
        assert rgb(out / "scienceqa" / "images" / p["split"] / pid / p["image"]).shape == (
            32,
            32,
            3,
        )


def test_image_paragraph(out: Path) -> None:
    rows = load(out / "image_paragraph" / "paragraphs_v1.json")
    assert len(rows) == N
    ids = set()
    for split in ("train", "val", "test"):
        ids |= set(load(out / "image_paragraph" / f"{split}_split.json"))
    assert ids == {r["image_id"] for r in rows}
    for r in rows:
        assert set(r) == {"url", "image_id", "paragraph"} and r["paragraph"].count(".") >= 2
        assert (out / "image_paragraph" / r["url"]).is_file()


def test_localized_narratives(out: Path) -> None:
    lines = []
    for split in ("train", "val"):
        rows = jsonl(out / "localized_narratives" / f"coco_{split}_localized_narratives.jsonl")
        lines += rows
        for r in rows:
            assert set(r) == {"dataset_id", "image_id", "annotator_id", "caption", "timed_caption", "traces",
                              "voice_recording"}  # fmt: skip
            assert r["dataset_id"] == f"mscoco_{split}2017" and isinstance(r["image_id"], str)
            assert all(
                set(u) == {"utterance", "start_time", "end_time"} for u in r["timed_caption"]
            )
            assert all(set(p) == {"x", "y", "t"} for tr in r["traces"] for p in tr)
            assert (out / "localized_narratives" / "images" / f"{r['image_id']}.jpg").is_file()
    assert len(lines) == N


def test_instruct_pix2pix(out: Path) -> None:
    folders = sorted(
        p for split in ("train", "val") for p in (out / "instruct_pix2pix" / split).iterdir()
    )
    assert len(folders) == N
    gt = {r["sample_id"]: r for r in jsonl(out / "ground_truth" / "edits.jsonl")}
    for folder in folders:
        prompt = load(folder / "prompt.json")
        assert set(prompt) == {"input", "edit", "output"}
        (meta,) = jsonl(folder / "metadata.jsonl")
        seed = meta["seed"]
        before, after = rgb(folder / f"{seed}_0.jpg"), rgb(folder / f"{seed}_1.jpg")
        edit = gt[folder.name]
        assert edit["seed"] == seed and edit["edit"]["instruction"] == prompt["edit"]
        target = Scene.from_dict(edit["edit"]["target"])
        assert score_text_to_image(after, target)["colour_shape_acc"] == 1.0
        assert not np.array_equal(before, after)


def test_ocr_and_depth(out: Path) -> None:
    world = World(SEED)
    rows = jsonl(out / "ocr" / "train" / "ocr.jsonl") + jsonl(out / "ocr" / "val" / "ocr.jsonl")
    assert rows and all(set(r) == {"image", "text"} for r in rows)
    assert len(rows) == sum(world.scene(i).text is not None for i in range(N))
    for split in ("train", "val"):
        for r in jsonl(out / "ocr" / split / "ocr.jsonl"):
            assert (out / "ocr" / split / r["image"]).is_file() and r["text"].isalpha()
    caps = load(out / "depth" / "captions_train2017.json")
    for im in caps["images"]:
        stem = Path(im["file_name"]).stem
        with Image.open(out / "depth" / "depth" / f"{stem}.png") as d:
            depth = np.asarray(d)
        assert depth.dtype == np.uint16 or d.mode.startswith("I")
        assert np.array_equal(depth.astype(np.int64), render_scene(world.scene(im["id"] - 1)).depth)


def test_pretrain_and_ground_truth(out: Path) -> None:
    rows = jsonl(out / "pretrain" / "train.jsonl")
    world = World(SEED)
    assert [r["id"] for r in rows] == [
        world.document(i).id for i in world.indices(len(rows), "train")
    ]
    for r in rows:
        assert set(r) == {"id", "image", "caption"}
        stem = out / "pretrain" / r["image"]
        assert stem.with_suffix(".txt").read_text().strip() == r["caption"]
    scenes = jsonl(out / "ground_truth" / "scenes.jsonl")
    assert [s["index"] for s in scenes] == list(range(N)) and all(
        s["image_id"] == s["index"] + 1 for s in scenes
    )


def test_exported_jpegs_are_read_by_the_scorer(out: Path) -> None:
    scenes = {
        s["image_id"]: Scene.from_dict(s["scene"])
        for s in jsonl(out / "ground_truth" / "scenes.jsonl")
    }
    scores = [
        score_text_to_image(rgb(p), scenes[int(p.stem)])
        for p in sorted((out / "coco" / "train2017").glob("*.jpg"))
    ]
    assert aggregate(scores)["scene_acc"] >= 0.95


def test_rerun_is_idempotent_and_other_params_are_refused(out: Path, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = export_world(out, n=N, seed=SEED, progress=False)
    assert again["written"] == [] and set(again["skipped"]) == {"ground_truth", *FORMATS} - {"entities"}
    assert {
        p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "world.json"
    } == {p: t for p, t in before.items() if p.name != "world.json"}
    with pytest.raises(FileExistsError, match="overwrite"):
        export_world(out, n=N + 1, seed=SEED, progress=False, formats="ocr")


def test_interrupted_export_leaves_no_partial_format_and_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "w"

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setitem(world_formats.WRITERS, "vqa2", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_world(root, n=6, seed=1, formats="coco,vqa2,ocr", progress=False)
    assert (
        is_complete(root / "coco") and not (root / "vqa2").exists() and not (root / "ocr").exists()
    )
    assert not list(root.glob(".vqa2*"))
    monkeypatch.undo()
    result = export_world(root, n=6, seed=1, formats="coco,vqa2,ocr", progress=False)
    assert result["skipped"] == ["ground_truth", "coco"] and result["written"] == ["vqa2", "ocr"]
    result = export_world(root, n=7, seed=1, formats="ocr", progress=False, overwrite=True)
    assert result["written"] == ["ground_truth", "ocr"] and not (root / "coco").exists()


def test_parse_formats() -> None:
    assert parse_formats("all") == ["ground_truth", *FORMATS]
    assert parse_formats("vqa2, coco") == ["ground_truth", "vqa2", "coco"]
    with pytest.raises(ValueError, match="unknown world format.*'vqa3'"):
        parse_formats("vqa3")


def test_cli_export_show_and_score(tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "w"
    res = runner.invoke(
        world_command,
        ["export", "--out", str(root), "--n", "8", "--formats", "coco", "--seed", "2"],
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and is_complete(root / "coco")
    res = runner.invoke(
        world_command,
        ["export", "--out", str(root), "--n", "8", "--formats", "coco", "--seed", "2"],
    )
    assert "skipped" in res.output
    res = runner.invoke(
        world_command, ["export", "--out", str(root), "--n", "8", "--formats", "nope"]
    )
    assert res.exit_code != 0 and "unknown world format" in res.output
    res = runner.invoke(
        world_command, ["show", "--index", "3", "--seed", "2", "--save", str(tmp_path / "s.png")]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["captions"] == World(2).captions(3)
    images = tmp_path / "generated"
    images.mkdir()
    for p in (root / "coco" / "train2017").glob("*.jpg"):
        Image.open(p).save(images / f"{p.stem}.png")
    res = runner.invoke(world_command, ["score", str(images), "--scenes", str(root / "ground_truth" / "scenes.jsonl"),
                                        "--out", str(tmp_path / "score.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    result = load(tmp_path / "score.json")
    assert (
        result["n"] == len(list(images.iterdir())) and result["scores"]["colour_shape_acc"] >= 0.95
    )
    assert result["chance"]["colour_shape_acc"] == pytest.approx(1 / 24)


def test_a_long_tail_is_mixed_into_pretrain_and_listed_with_its_truth(tmp_path: Path) -> None:
    from cm3leon.world.entities import EntityCatalogue, score_entity

    root = tmp_path / "tail"
    manifest = export_world(root, n=20, formats="pretrain,entities", entity_docs=60, entities=20,
                            progress=False)  # fmt: skip
    assert manifest["params"]["tail"]["docs"] == 60
    docs = jsonl(root / "entities" / "documents.jsonl")
    assert [d["index"] for d in docs] == list(range(60))
    catalogue = EntityCatalogue(0, 20)
    counts = {e["name"]: e["documents"] for e in load(root / "entities" / "catalogue.json")["entities"]}
    for d in docs:
        image = rgb(root / "entities" / d["image"])
        assert score_entity(image, catalogue.by_name(d["entity"]), d["box"])["entity_match"] == 1.0
        assert d["train_count"] == counts[d["entity"]]["train"]
    assert sum(c["train"] + c["val"] + c["test"] for c in counts.values()) == 60
    for split in ("train", "val", "test"):
        rows = jsonl(root / "pretrain" / f"{split}.jsonl")
        tail = [r for r in rows if r["id"].startswith("entity-")]
        assert len(tail) == sum(d["split"] == split for d in docs)
        for r in tail:
            assert (root / "pretrain" / r["image"]).is_file()
            assert (root / "pretrain" / r["image"]).with_suffix(".txt").read_text().strip() == r["caption"]
    # the same parameters resume; other tail parameters are another export
    assert export_world(root, n=20, formats="pretrain,entities", entity_docs=60, entities=20,
                        progress=False)["skipped"] == ["ground_truth", "pretrain", "entities"]  # fmt: skip
    with pytest.raises(FileExistsError, match="other parameters"):
        export_world(root, n=20, formats="pretrain", entity_docs=61, entities=20, progress=False)


def test_score_never_takes_a_non_id_file_for_a_scene_and_can_score_the_same_set(tmp_path: Path) -> None:
    """``entity-00000003.png`` is not scene 3 (it was scored against it: the VQ ceiling's
    originals then mixed long-tail mosaics into the head measure); ``--names-from`` scores
    exactly the images another folder names (originals vs their reconstructions)."""
    root = tmp_path / "w"
    runner = CliRunner()
    res = runner.invoke(world_command, ["export", "--out", str(root), "--n", "8", "--formats", "coco", "--seed", "2"])
    assert res.exit_code == 0, res.output
    images, subset = tmp_path / "generated", tmp_path / "subset"
    images.mkdir()
    subset.mkdir()
    jpgs = sorted((root / "coco" / "train2017").glob("*.jpg"))
    for p in jpgs:
        Image.open(p).save(images / f"{p.stem}.png")
    Image.new("RGB", (32, 32), "white").save(images / f"entity-{int(jpgs[0].stem):08d}.png")
    Image.open(jpgs[1]).save(subset / f"{jpgs[1].stem}.png")
    scenes = str(root / "ground_truth" / "scenes.jsonl")
    res = runner.invoke(world_command, ["score", str(images), "--scenes", scenes, "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    result = load(tmp_path / "a.json")
    assert result["n"] == len(jpgs) and result["unmatched_files"] == [f"entity-{int(jpgs[0].stem):08d}.png"]
    assert result["scores"]["colour_shape_acc"] >= 0.95
    res = runner.invoke(world_command, ["score", str(images), "--scenes", scenes, "--names-from", str(subset),
                                        "--out", str(tmp_path / "b.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "b.json")["n"] == 1
