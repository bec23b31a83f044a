"""The ``lookup`` retriever: oracle (the prompt's own document) and control (another one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.documents import Document, TextSegment
from cm3leon.core.formats.common import FormatError
from cm3leon.eval.lookup_retrieval import LookupRetriever
from cm3leon.world import Scene, export_world, render_scene


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lookup") / "world"
    export_world(root, n=12, formats="entities", entity_docs=20, entities=10, progress=False)
    return root


def _query(text: str) -> Document:
    return Document((TextSegment(text),))


def test_own_returns_the_prompts_document_and_other_an_unrelated_one(world: Path) -> None:
    scenes = [json.loads(line) for line in (world / "ground_truth" / "scenes.jsonl").read_text().splitlines()]
    own = LookupRetriever(world / "ground_truth" / "scenes.jsonl", mode="own")
    other = LookupRetriever(world / "ground_truth" / "scenes.jsonl", mode="other", shift=3)
    first = {}
    for i, row in enumerate(scenes):  # a caption shared by scenes names the first of them
        for caption in row["captions"]:
            first.setdefault(caption, i)
    for row in scenes:
        for prompt in (row["captions"][0], row["captions"][3]):
            i = first[prompt]
            (doc,), = own.retrieve([_query(prompt)], k=2)
            truth = render_scene(Scene.from_dict(scenes[i]["scene"])).image
            assert np.array_equal(np.asarray(doc.images[0].image), truth)
            assert doc.texts[0] == scenes[i]["captions"][0]
            (ctl,), = other.retrieve([_query(prompt)], k=1)
            assert ctl.texts[0] == scenes[(i + 3) % len(scenes)]["captions"][0]
    assert own.retrieve([_query(scenes[0]["captions"][0])], k=0) == [[]]


def test_entity_documents_come_back_with_their_image_file(world: Path) -> None:
    from PIL import Image

    path = world / "entities" / "documents.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    own = LookupRetriever(path)
    (doc,), = own.retrieve([_query(rows[4]["caption"])], k=1)
    with Image.open(path.parent / rows[4]["image"]) as im:
        expected = np.asarray(im.convert("RGB"))
    assert np.array_equal(np.asarray(doc.images[0].image), expected)


def test_bad_use_is_named(world: Path, tmp_path: Path) -> None:
    from cm3leon.core.config import build_component
    from cm3leon.core.plugin_manager import get_registries

    scenes = world / "ground_truth" / "scenes.jsonl"
    with pytest.raises(KeyError, match="no document has the caption 'a purple moon'"):
        LookupRetriever(scenes).retrieve([_query("a purple moon")], k=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        LookupRetriever(scenes, mode="best")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"caption": "x"}\n')
    with pytest.raises(FormatError, match="bad.jsonl:1: a lookup document needs 'scene' or 'image'"):
        LookupRetriever(bad)
    built = build_component(get_registries().retrievers,
                            {"name": "lookup", "options": {"bank": str(scenes), "mode": "other"}},
                            where="retrieval.retriever")  # fmt: skip
    assert isinstance(built, LookupRetriever) and built.mode == "other"
