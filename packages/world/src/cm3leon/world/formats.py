"""The world's export: its scenes turned into the rows of each public dataset format.

Each ``write_<format>(world, indices, root, progress)`` fills the directory ``root``
with the scenes ``indices``.  This module owns only the world-specific part (rendering
the scenes, numbering images, choosing splits, turning scenes into rows); the file
layouts are written by the writers of :mod:`cm3leon.core.formats`, beside the readers
that ``cm3leon.tasks`` and ``cm3leon.eval`` use for the real datasets.  Images are
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
``entities``                  ``documents.jsonl`` (``{"id", "index", "split", "image", "caption", "entity",
                              "rank", "pattern", "view", "box", "train_count"}``), ``images/entity-<k8>.png``,
                              ``catalogue.json`` (only with a long tail: ``--entity-docs N``)
``ground_truth``              ``scenes.jsonl``, ``edits.jsonl`` (the world's own ground truth)
============================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from cm3leon.core.formats import coco as coco_format
from cm3leon.core.formats import flickr30k as flickr30k_format
from cm3leon.core.formats import instruct_pix2pix as pix2pix_format
from cm3leon.core.formats import narratives as narratives_format
from cm3leon.core.formats import ocr as ocr_format
from cm3leon.core.formats import paragraph as paragraph_format
from cm3leon.core.formats import scienceqa as scienceqa_format
from cm3leon.core.formats import vqa as vqa_format
from cm3leon.core.formats.common import save_jpeg, save_png, write_jsonl, write_text
from cm3leon.core.formats.depth import write_depth_png
from cm3leon.core.io import atomic_write_json
from cm3leon.world.coco import (
    INFO,
    LICENSES,
    coco_annotations,
    coco_image,
    keypoint_categories,
)
from cm3leon.world.entities import entity_document
from cm3leon.world.records import World, interleave_evenly
from cm3leon.world.render import CATEGORIES, render_scene

__all__ = ["WRITERS", "image_id", "save_jpeg", "save_png"]

Progress = Callable[[Iterable[int], str], Iterable[int]]


def image_id(index: int) -> int:
    """Public image id of scene ``index`` (ids start at 1, as in COCO)."""
    return index + 1


def _two(split: str) -> str:
    return "train" if split == "train" else "val"


# Writers fill a temporary directory that is renamed into place only when complete
# (cm3leon.world.export), so single files need no fsync-and-rename of their own.


# --------------------------------------------------------------------- COCO
def write_coco(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """COCO 2017: captions, instances (polygons / RLE) and person keypoints."""
    data: dict[str, dict[str, list]] = {
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
            d["captions"].append(coco_format.CocoCaption(cap_id, iid, caption))
            cap_id += 1
        instances, person = coco_annotations(render, iid, ann_id)
        ann_id += len(instances)
        d["instances"] += instances
        if person is not None:
            d["keypoints"].append(person)
    for split, d in data.items():
        coco_format.write_coco_split(
            root, f"{split}2017", images=d["images"], captions=d["captions"], instances=d["instances"],
            keypoints=d["keypoints"], categories=list(CATEGORIES), keypoint_categories=keypoint_categories(),
            info=INFO, licenses=LICENSES,
        )  # fmt: skip
    return {"images": len(indices), "captions": cap_id - 1, "instances": ann_id - 1}


def write_depth(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """COCO captions with a 16-bit depth PNG per image in ``depth/`` next to them."""
    data: dict[str, dict[str, list]] = {s: {"images": [], "annotations": []} for s in ("train", "val")}
    cap_id = 1
    for index in progress(indices, "depth"):
        split, iid = _two(world.split(index)), image_id(index)
        scene = world.scene(index)
        render = render_scene(scene)
        stem = f"{iid:012d}"
        save_jpeg(root / f"{split}2017" / f"{stem}.jpg", render.image)
        write_depth_png(root / "depth" / f"{stem}.png", render.depth)
        data[split]["images"].append(coco_image(iid, f"{stem}.jpg", scene.image_size))
        for caption in world.captions(index, scene):
            data[split]["annotations"].append(coco_format.CocoCaption(cap_id, iid, caption).to_dict())
            cap_id += 1
    for split, d in data.items():
        coco_format.write_coco_file(root / f"captions_{split}2017.json", images=d["images"],
                                    annotations=d["annotations"], info=INFO, licenses=LICENSES)  # fmt: skip
    return {"images": len(indices), "captions": cap_id - 1}


# ----------------------------------------------------------------- captions
def write_flickr30k(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Karpathy's ``dataset_flickr30k.json`` with ``flickr30k-images/``."""
    images = []
    for index in progress(indices, "flickr30k"):
        scene = world.scene(index)
        name = f"{image_id(index)}.jpg"
        save_jpeg(root / "flickr30k-images" / name, render_scene(scene).image)
        images.append(flickr30k_format.KarpathyImage(name, world.split(index), tuple(world.captions(index, scene))))
    flickr30k_format.write_karpathy(root / "dataset_flickr30k.json", images)
    return {"images": len(images), "sentences": sum(len(i.sentences) for i in images)}


def write_image_paragraph(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Stanford Image Paragraph: ``paragraphs_v1.json`` and the three split id lists."""
    rows, splits = [], {"train": [], "val": [], "test": []}
    for index in progress(indices, "image_paragraph"):
        scene, iid = world.scene(index), image_id(index)
        save_jpeg(root / "images" / f"{iid}.jpg", render_scene(scene).image)
        rows.append(paragraph_format.Paragraph(iid, f"images/{iid}.jpg", world.paragraph(index, scene)))
        splits[world.split(index)].append(iid)
    paragraph_format.write_image_paragraph(root, rows, splits)
    return {"images": len(rows)}


def write_localized_narratives(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Localized Narratives JSONL (COCO subset layout) with the images."""
    rows: dict[str, list[narratives_format.Narrative]] = {"train": [], "val": []}
    for index in progress(indices, "localized_narratives"):
        scene, iid, split = world.scene(index), image_id(index), _two(world.split(index))
        save_jpeg(root / "images" / f"{iid}.jpg", render_scene(scene).image)
        body = world.narrative(index, scene)
        annotator = 1 + index % 97
        rows[split].append(narratives_format.Narrative(
            str(iid), body["caption"], annotator, f"mscoco_{split}2017", body["timed_caption"],
            body["traces"], f"coco_{split}/coco_{split}_{iid}_{annotator}.ogg",
        ))  # fmt: skip
    for split, lines in rows.items():
        narratives_format.write_narratives(root / f"coco_{split}_localized_narratives.jsonl", lines)
    return {"narratives": sum(len(v) for v in rows.values())}


# ---------------------------------------------------------------------- VQA
def _vqa_files(
    world: World, indices: list[int], root: Path, progress: Progress, *, ok: bool
) -> dict[str, int]:
    name = "okvqa" if ok else "vqa2"
    qs: dict[str, list[vqa_format.VQAQuestion]] = {"train": [], "val": []}
    anns: dict[str, list[vqa_format.VQAAnnotation]] = {"train": [], "val": []}
    for index in progress(indices, name):
        scene, iid, split = world.scene(index), image_id(index), _two(world.split(index))
        sub = f"{split}2014"
        save_jpeg(root / sub / f"COCO_{sub}_{iid:012d}.jpg", render_scene(scene).image)
        questions = world.okvqa(index, scene) if ok else world.vqa(index, scene)
        for k, q in enumerate(questions):
            qid = iid * 1000 + k
            qs[split].append(vqa_format.VQAQuestion(qid, iid, q.question))
            anns[split].append(vqa_format.VQAAnnotation(
                qid, iid, q.question_type, q.answer_type, q.answer, tuple(q.answers), tuple(q.confidences),
            ))  # fmt: skip
    info = {"description": f"cm3leon procedural world ({name} format)", "version": "1.0", "year": 2024}
    lic = {"url": LICENSES[0]["url"], "name": LICENSES[0]["name"]}
    for split in ("train", "val"):
        vqa_format.write_vqa_split(root, name, f"{split}2014", questions=qs[split], annotations=anns[split],
                                   info=info, license=lic)  # fmt: skip
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
    rows: dict[str, list[vqa_format.VizWizQuestion]] = {"train": [], "val": []}
    for index in progress(indices, "vizwiz"):
        scene, split = world.scene(index), _two(world.split(index))
        name = f"VizWiz_{split}_{len(rows[split]):08d}.jpg"
        save_jpeg(root / split / name, render_scene(scene).image)
        q = world.vizwiz(index, scene)
        rows[split].append(vqa_format.VizWizQuestion(
            name, q.question, tuple(q.answers), tuple(q.confidences), q.answer_type, int(q.answerable),
        ))  # fmt: skip
    for split, lines in rows.items():
        vqa_format.write_vizwiz(root / f"{split}.json", lines)
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
        problems[pid] = scienceqa_format.Problem(
            question=p.question, choices=tuple(p.choices), answer=p.answer, split=split, image="image.png",
            hint=p.hint, lecture=p.lecture, solution=p.solution, task="closed choice", grade=p.grade,
            subject=p.subject, topic=p.topic, category=p.category, skill=p.skill,
        )  # fmt: skip
        splits[split].append(pid)
    scienceqa_format.write_scienceqa(root, problems, splits)
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
        pix2pix_format.write_sample(
            root / split / f"{image_id(index):07d}", seed, render_scene(edit.source).image,
            render_scene(edit.target).image, pix2pix_format.Prompt(edit.input_caption, edit.instruction, edit.output_caption),
        )  # fmt: skip
        count += 1
    return {"samples": count}


def write_ocr(world: World, indices: list[int], root: Path, progress: Progress) -> dict[str, int]:
    """``<split>/ocr.jsonl`` lines ``{"image": relative path, "text": word}`` (scenes with text)."""
    rows: dict[str, list[ocr_format.OCRLine]] = {"train": [], "val": []}
    for index in progress(indices, "ocr"):
        scene = world.scene(index)
        if scene.text is None:
            continue
        split = _two(world.split(index))
        rel = f"images/{image_id(index):012d}.jpg"
        save_jpeg(root / split / rel, render_scene(scene).image)
        rows[split].append(ocr_format.OCRLine(rel, scene.text.word))
    for split, lines in rows.items():
        ocr_format.write_ocr(root / split / "ocr.jsonl", lines)
    return {"texts": sum(len(v) for v in rows.values())}


def write_pretrain(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """Caption-image pairs: ``<split>.jsonl`` and ``<split>/`` folders of PNG + TXT.

    With a long tail (``world.tail``) its entity documents of each split are spread evenly
    among the scene pairs (``<split>/entity-<k8>.png``)."""
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    for index in progress(indices, "pretrain"):
        split = world.split(index)
        doc = world.document(index)
        stem = f"{image_id(index):012d}"
        save_png(root / split / f"{stem}.png", np.asarray(doc.images[0].image))
        write_text(root / split / f"{stem}.txt", doc.texts[0] + "\n")
        rows[split].append({"id": doc.id, "image": f"{split}/{stem}.png", "caption": doc.texts[0]})
    tail_rows = _entity_rows(world, root, progress, prefix="{split}/entity-")
    for split, lines in rows.items():
        extra = [r for r in tail_rows if r["split"] == split]
        merged = interleave_evenly(iter(lines), len(lines), iter(extra), len(extra))
        write_jsonl(
            root / f"{split}.jsonl",
            [{"id": r["id"], "image": r["image"], "caption": r["caption"]} for r in merged],
        )
    return {"pairs": sum(len(v) for v in rows.values()) + len(tail_rows)}


def _entity_rows(world: World, root: Path, progress: Progress, prefix: str) -> list[dict]:
    """Write the images of the world's entity documents; their rows (empty without a tail)."""
    if world.tail is None:
        return []
    out = []
    for k in progress(range(world.tail.docs), "entities"):
        doc = entity_document(world.tail.catalogue, k, world.config.image_size)
        rel = prefix.format(split=doc.meta["split"]) + f"{k:08d}.png"
        save_png(root / rel, np.asarray(doc.images[0].image))
        write_text((root / rel).with_suffix(".txt"), doc.texts[0] + "\n")
        out.append({"id": doc.id, "index": k, "split": doc.meta["split"], "image": rel,
                    "caption": doc.texts[0], "entity": doc.meta["entity"],
                    "rank": doc.meta["rank"], "pattern": doc.meta["pattern"],
                    "view": doc.meta["view"], "box": doc.meta["box"]})  # fmt: skip
    return out


def write_entities(
    world: World, indices: list[int], root: Path, progress: Progress
) -> dict[str, int]:
    """The long tail: ``documents.jsonl`` (caption, entity, its pattern, how many training
    documents show it), ``images/``, and ``catalogue.json`` (every entity, its
    probability and its document count per split)."""
    del indices
    if world.tail is None:
        raise ValueError(
            "the entities format needs a long tail: export with entity_docs > 0 (--entity-docs)"
        )
    rows = _entity_rows(world, root, progress, prefix="images/entity-")
    train = world.tail.counts("train")
    for r in rows:
        r["train_count"] = train.get(r["entity"], 0)
    write_jsonl(root / "documents.jsonl", rows)
    per_split = {sp: world.tail.counts(sp) for sp in ("train", "val", "test")}
    catalogue = world.tail.catalogue
    atomic_write_json(root / "catalogue.json", {
        "params": world.tail.params(), "seed": catalogue.seed,
        "entities": [e.to_dict() | {"probability": e.probability,
                                    "documents": {sp: c.get(e.name, 0) for sp, c in per_split.items()}}
                     for e in catalogue],
    })  # fmt: skip
    return {"documents": len(rows), "entities_in_train": len(train)}


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
    write_jsonl(root / "scenes.jsonl", scenes)
    write_jsonl(root / "edits.jsonl", edits)
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
    "entities": write_entities,
    "ground_truth": write_ground_truth,
}
