"""The world: random access to scenes and every record derived from them.

``World(seed)`` is an infinite, deterministic sequence of scenes.  Scene ``i`` and each
kind of text about it come from their own generator (``numpy.random.default_rng([seed,
i, stream])``), so any record can be produced alone, in any order, in any process, and
adding a new kind of record never changes the existing ones.

Each scene also has a fixed split (80% ``train``, 10% ``val``, 10% ``test``), drawn
from a hash of the world seed and the scene's content (:meth:`Scene.signature`), so the
split of a scene does not depend on how many are exported, and scenes with the same
content always share a split: a ``val``/``test`` scene never repeats a training scene's
objects, figure and word (with a few hundred possible one-object scenes, a per-index
draw put about 13% of the held-out scenes' exact captions into training, and a
nearest-neighbour baseline scored them by memorisation).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.world import language, questions, scienceqa
from cm3leon.world.edits import Edit, sample_edit
from cm3leon.world.entities import EntityCatalogue, EntityTail, entity_documents
from cm3leon.world.render import Render, render_scene
from cm3leon.world.scene import Scene, WorldConfig, sample_scene, scene_rng

__all__ = [
    "SPLITS", "STREAMS", "Example", "World", "WorldSource", "interleave_evenly", "world_source",
]  # fmt: skip

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_EDGES = (0.8, 0.9)
#: Generator stream of each kind of record (never renumber: it would change the world).
#: ``split`` (1) is retired: splits are drawn from the scene's content, not a stream.
STREAMS: dict[str, int] = {
    "scene": 0, "split": 1, "captions": 2, "paragraph": 3, "narrative": 4, "vqa": 5,
    "okvqa": 6, "vizwiz": 7, "scienceqa": 8, "edit": 9, "document": 10, "ip2p_seed": 11,
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Example:
    """Everything the world knows about one scene (see :meth:`World.example`)."""

    index: int
    split: str
    scene: Scene
    render: Render
    captions: list[str]
    paragraph: str
    narrative: dict[str, Any]
    vqa: list[questions.Question]
    okvqa: list[questions.Question]
    vizwiz: questions.Question
    scienceqa: scienceqa.ScienceProblem
    edit: Edit
    edited: Render

    @property
    def image(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 pixels."""
        return self.render.image

    @property
    def ocr_text(self) -> str | None:
        """The painted word, or ``None``."""
        return self.scene.text.word if self.scene.text is not None else None

    def detections(self) -> list[dict[str, Any]]:
        """Visible objects (and the person) as ``{"label", "box", "category_id"}`` dicts.

        ``box`` is COCO ``[x, y, w, h]`` of the visible pixels; fully hidden elements are skipped.
        """
        from cm3leon.world.render import PERSON_CATEGORY_ID, category_id

        out = []
        for k, obj in enumerate(self.scene.objects):
            box = self.render.box(k)
            if box is not None:
                out.append(
                    {
                        "label": obj.label,
                        "box": box,
                        "category_id": category_id(obj.colour, obj.shape),
                    }
                )
        if self.scene.figure is not None:
            box = self.render.box(len(self.scene.objects))
            if box is not None:
                out.append({"label": "person", "box": box, "category_id": PERSON_CATEGORY_ID})
        return out


class World:
    """A deterministic procedural world.

    Args:
        seed: world seed (>= 0).
        config: scene sampler knobs; keyword ``overrides`` replace single fields
            (``World(0, image_size=64)``).
        cache_size: how many recent scenes to keep in memory.
        tail: the world's long tail of named-entity documents (:mod:`.entities`), written
            by the export beside the scenes; None = scenes only.
    """

    def __init__(
        self,
        seed: int = 0,
        config: WorldConfig | None = None,
        *,
        cache_size: int = 1024,
        tail: EntityTail | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"world seed must be a non-negative integer, got {seed!r}")
        base = config or WorldConfig()
        if overrides:
            import dataclasses

            unknown = set(overrides) - {f.name for f in dataclasses.fields(WorldConfig)}
            if unknown:
                raise ValueError(f"unknown world option(s) {sorted(unknown)}; see WorldConfig")
            base = dataclasses.replace(base, **overrides)
        self.seed = int(seed)
        self.config = base
        if tail is not None and tail.catalogue.seed != self.seed:
            raise ValueError(
                f"the entity tail's catalogue has seed {tail.catalogue.seed}, the world {self.seed}"
            )
        if tail is not None and self.config.image_size % tail.catalogue.grid:
            raise ValueError(
                f"image_size {self.config.image_size} is not a multiple of the entity grid "
                f"{tail.catalogue.grid}"
            )
        self.tail = tail
        # Scenes are immutable, so the most recent ones are kept (exports visit each scene
        # once per format).
        self._scene_cache = functools.lru_cache(maxsize=cache_size)(self._sample)

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, config={self.config})"

    def rng(self, index: int, stream: str) -> np.random.Generator:
        """The generator of ``stream`` (a key of :data:`STREAMS`) for scene ``index``."""
        return scene_rng(self.seed, index, STREAMS[stream])

    # ---------------------------------------------------------------- scenes
    def scene(self, index: int) -> Scene:
        """Scene ``index`` (cached; see ``cache_size``)."""
        return self._scene_cache(int(index))

    def _sample(self, index: int) -> Scene:
        return sample_scene(self.rng(index, "scene"), self.config, index=index)

    def render(self, index: int) -> Render:
        return render_scene(self.scene(index))

    def split(self, index: int) -> str:
        """``train``, ``val`` or ``test``: a hash of the seed and the scene's content."""
        key = f"{self.seed}|{self.scene(index).signature()}".encode()
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64
        return SPLITS[0] if u < _SPLIT_EDGES[0] else SPLITS[1] if u < _SPLIT_EDGES[1] else SPLITS[2]

    def indices(self, n: int, split: str | None = None, start: int = 0) -> list[int]:
        """The first ``n`` scene indices from ``start`` on that belong to ``split`` (None = any)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        out, i = [], start
        while len(out) < n:
            if split is None or self.split(i) == split:
                out.append(i)
            i += 1
        return out

    # --------------------------------------------------------------- language
    def captions(self, index: int, scene: Scene | None = None) -> list[str]:
        return language.captions(scene or self.scene(index), self.rng(index, "captions"))

    def paragraph(self, index: int, scene: Scene | None = None) -> str:
        return language.paragraph(scene or self.scene(index), self.rng(index, "paragraph"))

    def narrative(self, index: int, scene: Scene | None = None) -> dict[str, Any]:
        return language.narrative(scene or self.scene(index), self.rng(index, "narrative"))

    def vqa(self, index: int, scene: Scene | None = None) -> list[questions.Question]:
        return questions.vqa_questions(scene or self.scene(index), self.rng(index, "vqa"))

    def okvqa(self, index: int, scene: Scene | None = None) -> list[questions.Question]:
        return questions.okvqa_questions(scene or self.scene(index), self.rng(index, "okvqa"))

    def vizwiz(self, index: int, scene: Scene | None = None) -> questions.Question:
        return questions.vizwiz_question(scene or self.scene(index), self.rng(index, "vizwiz"))

    def scienceqa(self, index: int, scene: Scene | None = None) -> scienceqa.ScienceProblem:
        return scienceqa.scienceqa_problem(scene or self.scene(index), self.rng(index, "scienceqa"))

    def edit(self, index: int, scene: Scene | None = None) -> Edit:
        return sample_edit(scene or self.scene(index), self.rng(index, "edit"), self.config)

    def example(self, index: int) -> Example:
        """Every record of scene ``index``."""
        scene = self.scene(index)
        edit = self.edit(index, scene)
        return Example(
            index=index,
            split=self.split(index),
            scene=scene,
            render=render_scene(scene),
            captions=self.captions(index, scene),
            paragraph=self.paragraph(index, scene),
            narrative=self.narrative(index, scene),
            vqa=self.vqa(index, scene),
            okvqa=self.okvqa(index, scene),
            vizwiz=self.vizwiz(index, scene),
            scienceqa=self.scienceqa(index, scene),
            edit=edit,
            edited=render_scene(edit.target),
        )

    # --------------------------------------------------------------- documents
    def document(self, index: int, caption: str = "random") -> Document:
        """The caption-image pair of scene ``index`` (``caption``: ``random`` or ``canonical``).

        ``meta`` holds ``source``, ``seed``, ``index``, ``split``, every caption and the
        scene ground truth (:meth:`Scene.to_dict`), so generated images can be scored.
        """
        if caption not in ("random", "canonical"):
            raise ValueError(f"caption must be 'random' or 'canonical', got {caption!r}")
        scene = self.scene(index)
        caps = self.captions(index, scene)
        text = (
            caps[0]
            if caption == "canonical"
            else caps[int(self.rng(index, "document").integers(len(caps)))]
        )
        meta = {
            "source": "world",
            "seed": self.seed,
            "index": index,
            "split": self.split(index),
            "captions": caps,
            "scene": scene.to_dict(),
        }
        image = ImageSegment(image=render_scene(scene).image)
        return Document((TextSegment(text), image), id=f"world-{self.seed}-{index:08d}", meta=meta)

    def documents(
        self, n: int, split: str | None = "train", caption: str = "random", start: int = 0
    ) -> Iterator[Document]:
        """``n`` caption-image documents of ``split`` (``None`` = every split), in index order."""
        for index in self.indices(n, split, start):
            yield self.document(index, caption)


class WorldSource:
    """The ``world`` source: ``n`` caption-image documents of one split, with a length.

    Args:
        world: the world to read.
        n: number of scene documents.
        split: ``train``/``val``/``test``, or ``None`` for every split.
        caption: ``random`` (one of the scene's captions) or ``canonical``.
        start: first scene index considered.
        entity_docs: number of long-tail entity documents (:mod:`.entities`) of the same
            split interleaved evenly with the scene documents (needs ``catalogue``).
        catalogue: the entity catalogue those documents draw from.
    """

    def __init__(
        self,
        world: World,
        n: int,
        split: str | None = "train",
        caption: str = "random",
        start: int = 0,
        entity_docs: int = 0,
        catalogue: EntityCatalogue | None = None,
    ) -> None:
        if n < 0:
            raise ValueError(f"world source: n must be >= 0, got {n}")
        if entity_docs < 0:
            raise ValueError(f"world source: entity_docs must be >= 0, got {entity_docs}")
        if entity_docs and catalogue is None:
            raise ValueError("world source: entity_docs > 0 needs an entity catalogue")
        if split is not None and split not in SPLITS:
            raise ValueError(
                f"world source: unknown split {split!r}; splits: {', '.join(SPLITS)}, all"
            )
        if caption not in ("random", "canonical"):
            raise ValueError(
                f"world source: caption must be 'random' or 'canonical', got {caption!r}"
            )
        self.world, self.n, self.split, self.caption, self.start = world, n, split, caption, start
        self.entity_docs, self.catalogue = entity_docs, catalogue

    def __len__(self) -> int:
        return self.n + self.entity_docs

    def __iter__(self) -> Iterator[Document]:
        scenes = self.world.documents(self.n, self.split, self.caption, self.start)
        if not self.entity_docs:
            return scenes
        assert self.catalogue is not None
        entities = entity_documents(
            self.catalogue, self.entity_docs, self.split, self.world.config.image_size
        )
        return interleave_evenly(scenes, self.n, entities, self.entity_docs)


def interleave_evenly(
    a: Iterator[Document], n_a: int, b: Iterator[Document], n_b: int
) -> Iterator[Document]:
    """``a`` and ``b`` merged so that ``b``'s items are spread evenly (deterministic)."""
    total, taken_b = n_a + n_b, 0
    for i in range(total):
        if taken_b < n_b and (i + 1) * n_b >= (taken_b + 1) * total:
            taken_b += 1
            yield next(b)
        else:
            yield next(a)


def world_source(
    path: Any = None,
    *,
    n: int = 1000,
    seed: int = 0,
    image_size: int = 32,
    split: str | None = "train",
    caption: str = "random",
    start: int = 0,
    skip_bad: bool = False,
    entity_docs: int = 0,
    entities: int = 300,
    entity_zipf: float = 1.0,
    **config: Any,
) -> WorldSource:
    """Factory of the ``world`` source: caption-image pairs for pretraining.

    ``cm3leon data prepare --source world - --out shards/world -o n=5000 -o seed=0``

    Args:
        path: unused -- the world is generated, not read; accepted (and ignored) because
            every source factory is called as ``factory(path, **options)``.
        n: number of documents.
        seed: world seed.
        image_size: image side in pixels.
        split: ``train``/``val``/``test``, or ``None``/``"all"`` for every split.
        caption: ``random`` (one of the scene's captions) or ``canonical``.
        start: first scene index considered.
        skip_bad: accepted for the source interface; generated documents are never bad.
        entity_docs: long-tail entity documents of the same split mixed in
            (:mod:`cm3leon.world.entities`; 0 = scenes only).
        entities: size of the entity catalogue (world seed, 4 x 4 mosaics).
        entity_zipf: exponent of the entities' Zipfian frequency.
        **config: other :class:`~cm3leon.world.scene.WorldConfig` fields.
    """
    del path, skip_bad
    world = World(int(seed), image_size=int(image_size), **config)
    catalogue = (
        EntityCatalogue(int(seed), int(entities), zipf=float(entity_zipf)) if entity_docs else None
    )
    return WorldSource(
        world, int(n), None if split in (None, "all") else str(split), caption, int(start),
        int(entity_docs), catalogue,
    )  # fmt: skip
