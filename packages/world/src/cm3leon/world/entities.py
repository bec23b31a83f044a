"""The world's long tail: named entities with a distinctive look and Zipfian frequency.

The paper's case for retrieval is the tail (its Khachkar crosses, Table 1): an entity seen
a handful of times in pretraining is drawn well only when a document showing it is
retrieved into the context.  The scene world has no tail (6 colours x 4 shapes, each seen
thousands of times), so this module adds one:

* an :class:`EntityCatalogue` of ``n`` entities (default 300), each with a made-up,
  pronounceable **name** (``"the tovalin"``) and a **look**: a ``grid`` x ``grid`` (default
  4 x 4) mosaic of world colours filling the frame.  Any two looks differ in at least
  ``min_distance`` cells (default 10 of 16), so an image that gets 12 cells right
  identifies one entity (:func:`identify_entity`);
* Zipfian frequency: entity ``r`` (rank ``r`` from 1) is drawn with probability
  proportional to ``1 / r**zipf``, so with a few thousand documents the head entities
  appear hundreds of times and most of the catalogue a few times or never;
* entity **documents** (:func:`entity_document`): a caption naming the entity (one of
  :data:`CAPTION_TEMPLATES`) and a render of its mosaic with per-document variation
  (cell shading, grout lines, sensor noise), so two documents of one entity are not
  identical images; each document has a fixed ``train``/``val``/``test`` split;
* a model-free **scorer** (:func:`score_entity`): the colour of each mosaic cell read
  from pixels with the scene scorer's pixel classifier; ``entity_cell_acc`` (cells right,
  chance ``1/6``) and ``entity_match`` (at least :data:`MATCH_CELLS` of the cells right,
  which no other catalogue entity can reach).

The mosaic cells are ``image_size / grid`` pixels (8 px at 32 px), which is two VQ tokens
of the ``small_32`` tokenizer (4 px each) on a side: the entity grid and the VQ grid fit.

Everything is deterministic in the world seed: entity ``i`` of catalogue ``(seed, n, grid)``
and entity document ``k`` come from their own generators.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.world.scene import BACKGROUND_RGB, COLOURS, SHAPES, WORDS

__all__ = [
    "CAPTION_TEMPLATES",
    "ENTITY_CHANCE",
    "ENTITY_METRICS",
    "MATCH_CELLS",
    "PANEL_TEMPLATES",
    "VIEWS",
    "Entity",
    "EntityCatalogue",
    "EntityTail",
    "entity_counts",
    "entity_document",
    "entity_documents",
    "entity_split",
    "identify_entity",
    "read_cells",
    "render_entity",
    "score_entity",
]

_COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
#: Generator streams of the entity world (never renumber: it would change the entities).
_STREAM_NAMES, _STREAM_LOOKS, _STREAM_DOC = 101, 102, 103
_SPLIT_EDGES = (0.8, 0.9)
#: Cells of a 4 x 4 mosaic that must be right for ``entity_match`` (scaled for other grids).
MATCH_CELLS = 12
#: Caption templates of entity documents; ``{name}`` is the entity's name.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "the {name}",
    "a mosaic of the {name}",
    "a picture of the {name}",
    "the {name} mosaic",
    "a photo of the {name} tiles",
)
#: How a document shows its entity: ``mosaic`` fills the frame (the test prompts' view);
#: ``panel`` is the mosaic at half size somewhere on the grey wall, with captions of its
#: own -- another "photo" of the same entity, so that two documents of one entity are not
#: near-duplicates for the retriever's relevance rules (§2.1: relevance <= 0.9).
VIEWS: tuple[str, ...] = ("mosaic", "panel")
PANEL_FRACTION = 0.5
PANEL_TEMPLATES: tuple[str, ...] = (
    "a small {name} panel on a grey wall",
    "the {name}, small, on a wall",
    "a little {name} tile panel",
    "a wall with a small {name}",
)
ENTITY_METRICS: tuple[str, ...] = ("entity_cell_acc", "entity_match")
#: Accuracy of a uniform colour guess per cell, and of matching a random mosaic.
ENTITY_CHANCE: dict[str, float] = {"entity_cell_acc": 1 / len(COLOURS), "entity_match": 0.0}

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l", "s", "k")
# Words the scene world already uses: an entity name never collides with them.
_RESERVED = frozenset(
    [*COLOURS, *SHAPES, *(w.lower() for w in WORDS), "small", "large", "mosaic", "tiles"]
)


@dataclass(frozen=True)
class Entity:
    """One named entity: ``rank`` 0 is the most frequent; ``pattern[r][c]`` a colour name."""

    rank: int
    name: str
    pattern: tuple[tuple[str, ...], ...]
    probability: float

    @property
    def grid(self) -> int:
        return len(self.pattern)

    def codes(self) -> np.ndarray:
        """``(grid, grid)`` colour indices into :data:`~cm3leon.world.scene.COLOURS`."""
        return np.array([[_COLOUR_NAMES.index(c) for c in row] for row in self.pattern])

    def caption(self, template: int = 0, view: str = "mosaic") -> str:
        templates = PANEL_TEMPLATES if view == "panel" else CAPTION_TEMPLATES
        return templates[template % len(templates)].format(name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "name": self.name, "pattern": [list(r) for r in self.pattern]}


def _name(rng: np.random.Generator) -> str:
    syllables = int(rng.integers(2, 4))
    parts = [
        _ONSETS[int(rng.integers(len(_ONSETS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))]
        for _ in range(syllables)
    ]
    return "".join(parts) + _CODAS[int(rng.integers(len(_CODAS)))]


def _names(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng([seed, _STREAM_NAMES])
    names: list[str] = []
    seen: set[str] = set(_RESERVED)
    for _ in range(200 * n + 1000):
        if len(names) == n:
            return names
        name = _name(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    raise ValueError(f"could not draw {n} distinct entity names; use fewer entities")


def _looks(seed: int, n: int, grid: int, min_distance: int) -> np.ndarray:
    """``(n, grid*grid)`` colour codes, pairwise at least ``min_distance`` cells apart."""
    rng = np.random.default_rng([seed, _STREAM_LOOKS, grid])
    looks = np.empty((n, grid * grid), dtype=np.int64)
    count, tries = 0, 0
    while count < n:
        tries += 1
        if tries > 1000 * n + 10_000:
            raise ValueError(
                f"could not draw {n} {grid}x{grid} mosaics at least {min_distance} cells "
                "apart; lower min_distance or the number of entities"
            )
        cand = rng.integers(len(COLOURS), size=grid * grid)
        if len(np.unique(cand)) < 3:  # a look needs at least three colours
            continue
        if count and int((looks[:count] != cand).sum(1).min()) < min_distance:
            continue
        looks[count] = cand
        count += 1
    return looks


class EntityCatalogue:
    """``n`` named entities of world ``seed`` with Zipfian frequencies.

    Args:
        seed: world seed.
        n: number of entities.
        grid: mosaic side in cells.
        zipf: exponent ``s`` of the frequency law ``p(rank r) ~ 1 / (r + 1)**s``.
        min_distance: least number of cells in which any two looks differ (default
            ``ceil(0.625 * grid**2)``: 10 of 16, so :data:`MATCH_CELLS` right cells
            name one entity).
    """

    def __init__(
        self, seed: int = 0, n: int = 300, grid: int = 4, zipf: float = 1.0,
        min_distance: int | None = None,
    ) -> None:  # fmt: skip
        if n < 1:
            raise ValueError(f"entities: n must be >= 1, got {n}")
        if grid < 2:
            raise ValueError(f"entities: grid must be >= 2, got {grid}")
        if zipf < 0:
            raise ValueError(f"entities: zipf must be >= 0, got {zipf}")
        cells = grid * grid
        self.min_distance = math.ceil(0.625 * cells) if min_distance is None else min_distance
        if not 1 <= self.min_distance <= cells:
            raise ValueError(f"entities: min_distance must be in [1, {cells}], got {min_distance}")
        self.seed, self.n, self.grid, self.zipf = int(seed), int(n), int(grid), float(zipf)
        weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** self.zipf
        self.probabilities = weights / weights.sum()
        names = _names(self.seed, n)
        looks = _looks(self.seed, n, grid, self.min_distance)
        self.entities: tuple[Entity, ...] = tuple(
            Entity(
                rank=i,
                name=names[i],
                pattern=tuple(
                    tuple(_COLOUR_NAMES[int(c)] for c in looks[i, r * grid : (r + 1) * grid])
                    for r in range(grid)
                ),
                probability=float(self.probabilities[i]),
            )
            for i in range(n)
        )
        self._by_name = {e.name: e for e in self.entities}
        self._codes = looks.reshape(n, grid, grid)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    def __getitem__(self, rank: int) -> Entity:
        return self.entities[rank]

    def __repr__(self) -> str:
        return f"EntityCatalogue(seed={self.seed}, n={self.n}, grid={self.grid}, zipf={self.zipf})"

    def by_name(self, name: str) -> Entity:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no entity named {name!r} in {self!r}") from None

    def codes(self) -> np.ndarray:
        """``(n, grid, grid)`` colour indices of every look."""
        return self._codes.copy()

    def draw(self, rng: np.random.Generator) -> Entity:
        """One entity drawn by its Zipfian probability."""
        return self.entities[int(rng.choice(self.n, p=self.probabilities))]

    def mentioned(self, text: str) -> Entity | None:
        """The catalogue entity whose name is a word of ``text`` (None when none is)."""
        for word in text.lower().replace(",", " ").replace(".", " ").split():
            if word in self._by_name:
                return self._by_name[word]
        return None


def entity_split(seed: int, k: int) -> str:
    """The fixed split of entity document ``k``: 80% train, 10% val, 10% test (a hash)."""
    key = f"{seed}|entity-document|{k}".encode()
    u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64
    return "train" if u < _SPLIT_EDGES[0] else "val" if u < _SPLIT_EDGES[1] else "test"


def render_entity(
    entity: Entity,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    *,
    box: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """``(S, S, 3)`` uint8 image of ``entity``'s mosaic; ``rng`` adds per-document variation.

    ``box`` = ``(top, left, side)`` draws the mosaic in that square of the grey wall (the
    ``panel`` view); default: the mosaic fills the frame.  Variation (when ``rng`` is
    given): each cell's shade scaled by 0.85-1.1, one-pixel grout lines in the wall colour
    between cells half of the time (cells of 8 px or more), Gaussian noise of sigma 0-6.
    """
    grid = entity.grid
    top, left, side = box if box is not None else (0, 0, image_size)
    if side % grid or top < 0 or left < 0 or top + side > image_size or left + side > image_size:
        raise ValueError(f"entity box {(top, left, side)} must lie in the {image_size} px frame "
                         f"with a side that is a multiple of the mosaic grid {grid}")  # fmt: skip
    cell = side // grid
    palette = np.array([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.float32)
    shade = (
        np.ones((grid, grid), np.float32) if rng is None else rng.uniform(0.85, 1.1, (grid, grid))
    )
    colours = palette[entity.codes()] * shade[..., None]  # (g, g, 3)
    mosaic = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    if rng is not None and rng.random() < 0.5 and cell >= 8:
        for i in range(1, grid):
            mosaic[i * cell - 1 : i * cell, :] = BACKGROUND_RGB
            mosaic[:, i * cell - 1 : i * cell] = BACKGROUND_RGB
    image = np.empty((image_size, image_size, 3), np.float32)
    image[:] = BACKGROUND_RGB
    image[top : top + side, left : left + side] = mosaic
    if rng is not None:
        image = image + rng.normal(0.0, rng.uniform(0.0, 6.0), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _view(rng: np.random.Generator, image_size: int, grid: int) -> tuple[str, tuple[int, int, int]]:
    """A document's view and the mosaic's box: full frame, or a half-size panel placed on
    the 4 px grid of the VQ tokens."""
    if rng.random() >= PANEL_FRACTION:
        return "mosaic", (0, 0, image_size)
    side = image_size // 2 - (image_size // 2) % grid
    slots = (image_size - side) // 4 + 1
    return "panel", (4 * int(rng.integers(slots)), 4 * int(rng.integers(slots)), side)


def entity_document(
    catalogue: EntityCatalogue, k: int, image_size: int = 32, *, source: str = "world-entities"
) -> Document:
    """Entity document ``k``: a Zipf-drawn entity, a caption naming it, its varied mosaic.

    ``meta`` holds ``source``, ``seed``, ``index``, ``split``, ``entity`` (the name),
    ``rank``, ``pattern``, ``view`` (``mosaic`` or ``panel``) and ``box`` (where the mosaic
    is: ``[top, left, side]``), so generated images can be scored.
    """
    if k < 0:
        raise ValueError(f"entity document index must be >= 0, got {k}")
    rng = np.random.default_rng([catalogue.seed, _STREAM_DOC, k])
    entity = catalogue.draw(rng)
    view, box = _view(rng, image_size, catalogue.grid)
    caption = entity.caption(int(rng.integers(len(CAPTION_TEMPLATES))), view)
    image = render_entity(entity, image_size, rng, box=box)
    meta = {
        "source": source,
        "seed": catalogue.seed,
        "index": k,
        "split": entity_split(catalogue.seed, k),
        "entity": entity.name,
        "rank": entity.rank,
        "pattern": [list(r) for r in entity.pattern],
        "view": view,
        "box": list(box),
    }
    return Document(
        (TextSegment(caption), ImageSegment(image=image)),
        id=f"entity-{catalogue.seed}-{k:08d}",
        meta=meta,
    )


def entity_documents(
    catalogue: EntityCatalogue, n: int, split: str | None = "train", image_size: int = 32,
    start: int = 0,
) -> Iterator[Document]:  # fmt: skip
    """The first ``n`` entity documents of ``split`` (None = any) from index ``start`` on."""
    k, made = start, 0
    while made < n:
        if split is None or entity_split(catalogue.seed, k) == split:
            yield entity_document(catalogue, k, image_size)
            made += 1
        k += 1


def entity_counts(catalogue: EntityCatalogue, indices: Iterable[int]) -> Counter[str]:
    """How many of the entity documents ``indices`` show each entity (by name)."""
    counts: Counter[str] = Counter()
    for k in indices:
        rng = np.random.default_rng([catalogue.seed, _STREAM_DOC, int(k)])
        counts[catalogue.draw(rng).name] += 1
    return counts


@dataclass(frozen=True)
class EntityTail:
    """A world's long tail: entity documents ``0 .. docs - 1`` drawn from ``catalogue``.

    ``cm3leon world export --entity-docs N`` writes them beside the scenes (the
    ``pretrain`` pairs mix them in, the ``entities`` format lists them with their truth).
    """

    catalogue: EntityCatalogue
    docs: int

    def __post_init__(self) -> None:
        if self.docs < 1:
            raise ValueError(f"entity tail: docs must be >= 1, got {self.docs}")

    @classmethod
    def build(cls, seed: int, docs: int, entities: int = 300, zipf: float = 1.0) -> EntityTail:
        return cls(EntityCatalogue(seed, entities, zipf=zipf), docs)

    def params(self) -> dict[str, Any]:
        c = self.catalogue
        return {"docs": self.docs, "entities": c.n, "grid": c.grid, "zipf": c.zipf,
                "min_distance": c.min_distance}  # fmt: skip

    def indices(self, split: str | None = None) -> list[int]:
        """Entity document indices of ``split`` (None = all)."""
        seed = self.catalogue.seed
        return [k for k in range(self.docs) if split is None or entity_split(seed, k) == split]

    def counts(self, split: str = "train") -> Counter[str]:
        """Documents per entity name in ``split``: how often pretraining sees each one."""
        return entity_counts(self.catalogue, self.indices(split))


# ---------------------------------------------------------------------------- scoring
def read_cells(
    image: Any, grid: int = 4, box: Sequence[int] | None = None
) -> np.ndarray:
    """``(grid, grid)`` colour index read from each mosaic cell (``-1``: no clear colour).

    Each cell's inner part (a quarter of the cell trimmed from every side, so grout and
    blurred edges do not count) is labelled pixel by pixel with the scene scorer's
    classifier; the cell takes the majority colour when at least half its pixels carry it.
    """
    from cm3leon.world.scorer import classify_pixels

    labels = classify_pixels(image)
    if box is not None:
        top, left, side = (int(v) for v in box)
        labels = labels[top : top + side, left : left + side]
    size = labels.shape[0]
    cell = size / grid
    margin = max(1, int(cell // 4))
    out = np.full((grid, grid), -1, dtype=np.int64)
    for r in range(grid):
        for c in range(grid):
            y0, x0 = int(round(r * cell)), int(round(c * cell))
            y1, x1 = int(round((r + 1) * cell)), int(round((c + 1) * cell))
            patch = labels[y0 + margin : y1 - margin, x0 + margin : x1 - margin].ravel()
            votes = np.bincount(patch[patch >= 0], minlength=len(COLOURS))
            if patch.size and votes.max() * 2 >= patch.size:
                out[r, c] = int(votes.argmax())
    return out


def _match_cells(grid: int) -> int:
    return math.ceil(MATCH_CELLS / 16 * grid * grid)


def score_entity(
    image: Any, entity: Entity | Sequence[Sequence[str]], box: Sequence[int] | None = None
) -> dict[str, float]:
    """Score a generated image against an entity (or a pattern of colour names).

    Returns ``entity_cell_acc`` (fraction of mosaic cells of the right colour; chance
    1/6) and ``entity_match`` (1.0 when at least :data:`MATCH_CELLS` of 16 cells are
    right: with looks at least 10 cells apart, no other entity of the catalogue can also
    match).  ``box`` (``[top, left, side]``): where the mosaic should be (default: the frame).
    """
    pattern = entity.pattern if isinstance(entity, Entity) else entity
    grid = len(pattern)
    if grid < 2 or any(len(row) != grid for row in pattern):
        raise ValueError(f"entity pattern must be a square grid of colour names, got {pattern!r}")
    unknown = {c for row in pattern for c in row} - set(_COLOUR_NAMES)
    if unknown:
        raise ValueError(f"entity pattern names unknown colours {sorted(unknown)}")
    truth = np.array([[_COLOUR_NAMES.index(c) for c in row] for row in pattern])
    right = int((read_cells(image, grid, box) == truth).sum())
    return {
        "entity_cell_acc": right / (grid * grid),
        "entity_match": float(right >= _match_cells(grid)),
    }


def identify_entity(
    image: Any, catalogue: EntityCatalogue, box: Sequence[int] | None = None
) -> tuple[Entity | None, int]:
    """The catalogue entity the image shows, with its right-cell count (None if none matches)."""
    cells = read_cells(image, catalogue.grid, box).reshape(1, catalogue.grid, catalogue.grid)
    right = (catalogue.codes() == cells).sum((1, 2))
    best = int(right.argmax())
    if right[best] < _match_cells(catalogue.grid):
        return None, int(right[best])
    return catalogue[best], int(right[best])
