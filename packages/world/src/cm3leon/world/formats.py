"""Writers of the world's records in the public dataset formats.

Each ``write_<format>(world, indices, root, progress)`` fills the directory ``root``
with the scenes ``indices`` laid out exactly like the public dataset, so the readers of
``cm3leon.tasks`` read world data through the same code as the real thing.  Images are
JPEG (quality 95, no chroma subsampling) where the public dataset ships JPEG, PNG where
it ships PNG.  The world's ``train`` split maps to the dataset's train split; ``val``
and ``test`` map to its val split, except where the dataset has a test split with
annotations (Flickr30k Karpathy, Image Paragraph, ScienceQA).

Layouts (``<id12>`` = 12-digit zero-padded image id; image id = scene index + 1):

============================  ===============================================================
``coco``                      ``annotations/{captions,instances,person_keypoints}_{train,val}2017.json``,
                              ``{train,val}2017/<id12>.jpg``
``flickr30k``                 ``dataset_flickr30k.json``, ``flickr30k-images/<id>.jpg``
``vqa2``                      ``v2_OpenEnded_mscoco_{train,val}2014_questions.json``,
                              ``v2_mscoco_{train,val}2014_annotations.json``,
                              ``{train,val}2014/COCO_{train,val}2014_<id12>.jpg``
``okvqa``                     ``OpenEnded_mscoco_{train,val}2014_questions.json``,
                              ``mscoco_{train,val}2014_annotations.json``, images as vqa2
``vizwiz``                    ``{train,val}.json``, ``{train,val}/VizWiz_<split>_<n8>.jpg``
``scienceqa``                 ``problems.json``, ``pid_splits.json``, ``images/<split>/<pid>/image.png``
``image_paragraph``           ``paragraphs_v1.json``, ``{train,val,test}_split.json``, ``images/<id>.jpg``
``localized_narratives``      ``coco_{train,val}_localized_narratives.jsonl``, ``images/<id>.jpg``
                              (the narratives only hold image ids; ``<id>.jpg`` is cm3leon's convention)
``instruct_pix2pix``          ``{train,val}/<id7>/prompt.json``, ``<seed>_0.jpg``, ``<seed>_1.jpg``,
                              ``metadata.jsonl``
``ocr``                       ``{train,val}/ocr.jsonl`` (``{"image", "text"}``), ``{train,val}/images/<id12>.jpg``
``depth``                     ``captions_{train,val}2017.json``, ``{train,val}2017/<id12>.jpg``,
                              ``depth/<id12>.png`` (16-bit, larger = farther, 0 = unknown)
``pretrain``                  ``{train,val,test}.jsonl`` (``{"id", "image", "caption"}``) and
                              ``{train,val,test}/<id12>.png`` + ``<id12>.txt`` (folder pairs)
``ground_truth``              ``scenes.jsonl``, ``edits.jsonl`` (the world's own ground truth)
============================  ===============================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cm3leon.world.coco import (
    INFO,
    LICENSES,
    coco_annotations,
    coco_image,
    keypoint_categories,
)
from cm3leon.world.records import World
from cm3leon.world.render import CATEGORIES, render_scene

__all__ = ["WRITERS", "image_id", "save_jpeg", "save_png"]

Progress = Callable[[Iterable[int], str], Iterable[int]]


def image_id(index: int) -> int:
    """Public image id of scene ``index`` (ids start at 1, as in COCO)."""
    return index + 1


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """Save uint8 RGB pixels as JPEG (quality 95, 4:4:4: colours stay readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="JPEG", quality=95, subsampling=0)


def save_png(path: Path, image: np.ndarray) -> None:
    """Save pixels (uint8 RGB, or uint16 single channel) as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")


def _two(split: str) -> str:
    return "train" if split == "train" else "val"


# Writers fill a temporary directory that is renamed into place only when complete
# (cm3leon.world.export), so single files need no fsync-and-rename of their own.
def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _json(path: Path, obj: Any) -> None:
    _text(path, json.dumps(obj, sort_keys=True) + "\n")


def _jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    _text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


# --------------------------------------------------------------------- COCO
def write_coco(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """COCO 2017: captions, instances (polygons / RLE) and person keypoints."""
    data = {
        s: {"images": [], "captions": [], "instances": [], "keypoints": []}
        for s in ("train", "val")
    }
    cap_id = ann_id = 1
    for index in progress(indices, "coco"):
        split, iid = _two(world.split(index)), image_id(index)
        scene = world.scene(index)
        render = render_scene(scene)
        name = f"{iid:012d}.jpg"
        save_jpeg(root / f"{split}2017" / name, render.image)
        d = data[split]
        d["images"].append(coco_image(iid, name, scene.image_size))
        for caption in world.captions(index, scene):
            d["captions"].append({"id": cap_id, "image_id": iid, "caption": caption})
            cap_id += 1
        instances, person = coco_annotations(render, iid, ann_id)
        ann_id += len(instances)
        d["instances"] += instances
        if person is not None:
            d["keypoints"].append(person)
    for split, d in data.items():
        base = {"info": INFO, "licenses": LICENSES, "images": d["images"]}
        ann = root / "annotations"
        _json(ann / f"captions_{split}2017.json", base | {"annotations": d["captions"]})
        _json(
            ann / f"instances_{split}2017.json",
            base | {"annotations": d["instances"], "categories": list(CATEGORIES)},
        )
        _json(
            ann / f"person_keypoints_{split}2017.json",
            base | {"annotations": d["keypoints"], "categories": keypoint_categories()},
        )
    return {"images": len(indices), "captions": cap_id - 1, "instances": ann_id - 1}


def write_depth(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """COCO captions with a 16-bit depth PNG per image in ``depth/`` next to them."""
    data: dict[str, dict[str, list]] = {
        s: {"images": [], "annotations": []} for s in ("train", "val")
    }
    cap_id = 1
    for index in progress(indices, "depth"):
        split, iid = _two(world.split(index)), image_id(index)
        scene = world.scene(index)
        render = render_scene(scene)
        stem = f"{iid:012d}"
        save_jpeg(root / f"{split}2017" / f"{stem}.jpg", render.image)
        save_png(root / "depth" / f"{stem}.png", render.depth)
        data[split]["images"].append(coco_image(iid, f"{stem}.jpg", scene.image_size))
        for caption in world.captions(index, scene):
            data[split]["annotations"].append({"id": cap_id, "image_id": iid, "caption": caption})
            cap_id += 1
    for split, d in data.items():
        _json(root / f"captions_{split}2017.json", {"info": INFO, "licenses": LICENSES, **d})
    return {"images": len(indices), "captions": cap_id - 1}


# ----------------------------------------------------------------- captions
def write_flickr30k(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Karpathy's ``dataset_flickr30k.json`` with ``flickr30k-images/``."""
    images, sent_id = [], 0
    for imgid, index in enumerate(progress(indices, "flickr30k")):
        scene = world.scene(index)
        name = f"{image_id(index)}.jpg"
        save_jpeg(root / "flickr30k-images" / name, render_scene(scene).image)
        sentences = []
        for raw in world.captions(index, scene):
            tokens = re.findall(r"[a-z0-9]+", raw.lower())
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sent_id})
            sent_id += 1
        images.append(
            {
                "filename": name,
                "imgid": imgid,
                "split": world.split(index),
                "sentences": sentences,
                "sentids": [s["sentid"] for s in sentences],
            }
        )
    _json(root / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    return {"images": len(images), "sentences": sent_id}


def write_image_paragraph(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Stanford Image Paragraph: ``paragraphs_v1.json`` and the three split id lists."""
    rows, splits = [], {"train": [], "val": [], "test": []}
    for index in progress(indices, "image_paragraph"):
        scene, iid = world.scene(index), image_id(index)
        save_jpeg(root / "images" / f"{iid}.jpg", render_scene(scene).image)
        rows.append(
            {
                "url": f"images/{iid}.jpg",
                "image_id": iid,
                "paragraph": world.paragraph(index, scene),
            }
        )
        splits[world.split(index)].append(iid)
    _json(root / "paragraphs_v1.json", rows)
    for split, ids in splits.items():
        _json(root / f"{split}_split.json", ids)
    return {"images": len(rows)}


def write_localized_narratives(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Localized Narratives JSONL (COCO subset layout) with the images."""
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for index in progress(indices, "localized_narratives"):
        scene, iid, split = world.scene(index), image_id(index), _two(world.split(index))
        save_jpeg(root / "images" / f"{iid}.jpg", render_scene(scene).image)
        body = world.narrative(index, scene)
        annotator = 1 + index % 97
        rows[split].append(
            {
                "dataset_id": f"mscoco_{split}2017",
                "image_id": str(iid),
                "annotator_id": annotator,
                "caption": body["caption"],
                "timed_caption": body["timed_caption"],
                "traces": body["traces"],
                "voice_recording": f"coco_{split}/coco_{split}_{iid}_{annotator}.ogg",
            }
        )
    for split, lines in rows.items():
        _jsonl(root / f"coco_{split}_localized_narratives.jsonl", lines)
    return {"narratives": sum(len(v) for v in rows.values())}


# ---------------------------------------------------------------------- VQA
def _vqa_files(
    world: World, indices: list[int], root: Path, progress: Progress, *, ok: bool
) -> dict[str, int]:
    name = "okvqa" if ok else "vqa2"
    qs: dict[str, list] = {"train": [], "val": []}
    anns: dict[str, list] = {"train": [], "val": []}
    for index in progress(indices, name):
        scene, iid, split = world.scene(index), image_id(index), _two(world.split(index))
        sub = f"{split}2014"
        save_jpeg(root / sub / f"COCO_{sub}_{iid:012d}.jpg", render_scene(scene).image)
        questions = world.okvqa(index, scene) if ok else world.vqa(index, scene)
        for k, q in enumerate(questions):
            qid = iid * 1000 + k
            qs[split].append({"image_id": iid, "question": q.question, "question_id": qid})
            answers = [
                {"answer": a, "answer_confidence": c, "answer_id": i + 1}
                | ({"raw_answer": a} if ok else {})
                for i, (a, c) in enumerate(zip(q.answers, q.confidences, strict=True))
            ]
            anns[split].append(
                {
                    "question_type": q.question_type,
                    "multiple_choice_answer": q.answer,
                    "answers": answers,
                    "image_id": iid,
                    "answer_type": q.answer_type,
                    "question_id": qid,
                }
                | ({"confidence": 3} if ok else {})
            )
    info = {
        "description": f"cm3leon procedural world ({name} format)",
        "version": "1.0",
        "year": 2024,
    }
    lic = {"url": LICENSES[0]["url"], "name": LICENSES[0]["name"]}
    prefix = "" if ok else "v2_"
    for split in ("train", "val"):
        sub = f"{split}2014"
        _json(
            root / f"{prefix}OpenEnded_mscoco_{sub}_questions.json",
            {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": lic,
             "data_subtype": sub, "questions": qs[split]},
        )  # fmt: skip
        _json(
            root / f"{prefix}mscoco_{sub}_annotations.json",
            {
                "info": info,
                "license": lic,
                "data_subtype": sub,
                "data_type": "mscoco",
                "annotations": anns[split],
            },
        )
    return {"questions": sum(len(v) for v in qs.values())}


def write_vqa2(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """VQA v2 questions + annotations (ten answers each) with COCO-2014-named images."""
    return _vqa_files(world, indices, root, progress, ok=False)


def write_okvqa(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """OK-VQA (VQA v2 layout, outside-knowledge questions, OK-VQA file names)."""
    return _vqa_files(world, indices, root, progress, ok=True)


def write_vizwiz(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """VizWiz VQA: ``<split>.json`` lists and ``<split>/VizWiz_<split>_<n>.jpg``."""
    rows: dict[str, list] = {"train": [], "val": []}
    for index in progress(indices, "vizwiz"):
        scene, split = world.scene(index), _two(world.split(index))
        name = f"VizWiz_{split}_{len(rows[split]):08d}.jpg"
        save_jpeg(root / split / name, render_scene(scene).image)
        q = world.vizwiz(index, scene)
        rows[split].append(
            {
                "image": name,
                "question": q.question,
                "answers": [
                    {"answer": a, "answer_confidence": c}
                    for a, c in zip(q.answers, q.confidences, strict=True)
                ],
                "answer_type": q.answer_type,
                "answerable": int(q.answerable),
            }
        )
    for split, lines in rows.items():
        _json(root / f"{split}.json", lines)
    return {"questions": sum(len(v) for v in rows.values())}


def write_scienceqa(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """ScienceQA ``problems.json`` + ``pid_splits.json`` + ``images/<split>/<pid>/image.png``."""
    problems, splits = {}, {"train": [], "val": [], "test": []}
    for index in progress(indices, "scienceqa"):
        scene, split = world.scene(index), world.split(index)
        pid = str(image_id(index))
        save_png(root / "images" / split / pid / "image.png", render_scene(scene).image)
        p = world.scienceqa(index, scene)
        problems[pid] = {
            "question": p.question,
            "choices": list(p.choices),
            "answer": p.answer,
            "hint": p.hint,
            "image": "image.png",
            "task": "closed choice",
            "grade": p.grade,
            "subject": p.subject,
            "topic": p.topic,
            "category": p.category,
            "skill": p.skill,
            "lecture": p.lecture,
            "solution": p.solution,
            "split": split,
        }
        splits[split].append(pid)
    _json(root / "problems.json", problems)
    _json(root / "pid_splits.json", splits)
    return {"problems": len(problems)}


# -------------------------------------------------------------- image tasks
def _ip2p_seed(world: World, index: int) -> int:
    return int(world.rng(index, "ip2p_seed").integers(1, 2**31 - 1))


def write_instruct_pix2pix(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """InstructPix2Pix (released clip-filtered layout): one folder per sample."""
    count = 0
    for index in progress(indices, "instruct_pix2pix"):
        scene, split = world.scene(index), _two(world.split(index))
        edit = world.edit(index, scene)
        seed = _ip2p_seed(world, index)
        folder = root / split / f"{image_id(index):07d}"
        save_jpeg(folder / f"{seed}_0.jpg", render_scene(edit.source).image)
        save_jpeg(folder / f"{seed}_1.jpg", render_scene(edit.target).image)
        _json(
            folder / "prompt.json",
            {"input": edit.input_caption, "edit": edit.instruction, "output": edit.output_caption},
        )
        _jsonl(folder / "metadata.jsonl", [{"seed": seed}])
        count += 1
    return {"samples": count}


def write_ocr(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """``<split>/ocr.jsonl`` lines ``{"image": relative path, "text": word}`` (scenes with text)."""
    rows: dict[str, list] = {"train": [], "val": []}
    for index in progress(indices, "ocr"):
        scene = world.scene(index)
        if scene.text is None:
            continue
        split = _two(world.split(index))
        rel = f"images/{image_id(index):012d}.jpg"
        save_jpeg(root / split / rel, render_scene(scene).image)
        rows[split].append({"image": rel, "text": scene.text.word})
    for split, lines in rows.items():
        _jsonl(root / split / "ocr.jsonl", lines)
    return {"texts": sum(len(v) for v in rows.values())}


def write_pretrain(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Caption-image pairs: ``<split>.jsonl`` and ``<split>/`` folders of PNG + TXT."""
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    for index in progress(indices, "pretrain"):
        split = world.split(index)
        doc = world.document(index)
        stem = f"{image_id(index):012d}"
        save_png(root / split / f"{stem}.png", np.asarray(doc.images[0].image))
        _text(root / split / f"{stem}.txt", doc.texts[0] + "\n")
        rows[split].append({"id": doc.id, "image": f"{split}/{stem}.png", "caption": doc.texts[0]})
    for split, lines in rows.items():
        _jsonl(root / f"{split}.jsonl", lines)
    return {"pairs": sum(len(v) for v in rows.values())}


def write_ground_truth(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """The world's own ground truth: every scene and edit, keyed by index and image id."""
    scenes, edits = [], []
    for index in progress(indices, "ground_truth"):
        scene, iid, split = world.scene(index), image_id(index), world.split(index)
        scenes.append(
            {"index": index, "image_id": iid, "split": split, "captions": world.captions(index, scene),
             "scene": scene.to_dict()}
        )  # fmt: skip
        edits.append(
            {"index": index, "image_id": iid, "split": split, "sample_id": f"{iid:07d}",
             "seed": _ip2p_seed(world, index), "edit": world.edit(index, scene).to_dict()}
        )  # fmt: skip
    _jsonl(root / "scenes.jsonl", scenes)
    _jsonl(root / "edits.jsonl", edits)
    return {"scenes": len(scenes)}


#: Format name -> writer.  ``ground_truth`` is always written.
WRITERS: dict[str, Callable[[World, list[int], Path, Progress], dict[str, int]]] = {
    "coco": write_coco,
    "flickr30k": write_flickr30k,
    "vqa2": write_vqa2,
    "okvqa": write_okvqa,
    "vizwiz": write_vizwiz,
    "scienceqa": write_scienceqa,
    "image_paragraph": write_image_paragraph,
    "localized_narratives": write_localized_narratives,
    "instruct_pix2pix": write_instruct_pix2pix,
    "ocr": write_ocr,
    "depth": write_depth,
    "pretrain": write_pretrain,
    "ground_truth": write_ground_truth,
}
