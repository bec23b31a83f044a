"""InstructPix2Pix-style edits of a scene: recolour, move, add, remove.

An :class:`Edit` changes the ground truth, not the pixels: the edited image is the
re-rendering of :attr:`Edit.target`, so every other element stays exactly where it
was, and :func:`cm3leon.world.scorer.score_edit` can check the change exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.world.geometry import colour_conflicts, touching
from cm3leon.world.language import (
    canonical_caption,
    object_phrase,
    position_phrase,
    referring_expression,
)
from cm3leon.world.scene import (
    CELL_NAMES,
    COLOURS,
    Scene,
    WorldConfig,
    cell_center,
    recolour_conflicts,
    sample_object,
)

__all__ = ["EDIT_KINDS", "Edit", "apply_edit", "sample_edit"]

EDIT_KINDS: tuple[str, ...] = ("recolour", "move", "add", "remove")

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make {ref} {colour}",
        "change the color of {ref} to {colour}",
        "turn {ref} {colour}",
        "paint {ref} {colour}",
    ),
    "move": (
        "move {ref} {where}",
        "put {ref} {where}",
        "place {ref} {where} instead",
    ),
    "add": (
        "add {obj} {where}",
        "put {obj} {where}",
        "draw {obj} {where}",
    ),
    "remove": (
        "remove {ref}",
        "delete {ref}",
        "take away {ref}",
        "get rid of {ref}",
    ),
}


@dataclass(frozen=True)
class Edit:
    """One edit instruction and its ground truth.

    Attributes:
        kind: one of :data:`EDIT_KINDS`.
        instruction: the instruction text (``"make the red circle blue"``).
        source: the scene before the edit.
        target: the scene after the edit (render it for the edited image).
        index: index in ``source.objects`` of the edited object (for ``add``: the new
            object's index in ``target.objects``).
        colour: the new colour (``recolour``).
        cell: the new ``(row, col)`` (``move``, ``add``).
    """

    kind: str
    instruction: str
    source: Scene
    target: Scene
    index: int
    colour: str | None = None
    cell: tuple[int, int] | None = None

    @property
    def input_caption(self) -> str:
        return canonical_caption(self.source)

    @property
    def output_caption(self) -> str:
        return canonical_caption(self.target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ground truth (the scenes as :meth:`Scene.to_dict`)."""
        return {
            "kind": self.kind,
            "instruction": self.instruction,
            "index": self.index,
            "colour": self.colour,
            "cell": list(self.cell) if self.cell is not None else None,
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<edit>") -> Edit:
        try:
            return cls(
                kind=str(data["kind"]),
                instruction=str(data["instruction"]),
                source=Scene.from_dict(data["source"], source=f"{source}: source"),
                target=Scene.from_dict(data["target"], source=f"{source}: target"),
                index=int(data["index"]),
                colour=data.get("colour"),
                cell=tuple(data["cell"]) if data.get("cell") is not None else None,  # type: ignore[arg-type]
            )
        except KeyError as err:
            raise ValueError(f"{source}: edit is missing key {err.args[0]!r}") from None


def apply_edit(
    scene: Scene,
    kind: str,
    index: int = -1,
    *,
    colour: str | None = None,
    cell: tuple[int, int] | None = None,
    new_object: Any = None,
) -> Scene:
    """The scene after one edit (pure ground-truth transformation).

    Args:
        scene: the scene to edit.
        kind: one of :data:`EDIT_KINDS`.
        index: object to recolour/move/remove.
        colour: new colour for ``recolour``.
        cell: destination cell for ``move``.
        new_object: the :class:`~cm3leon.world.scene.WorldObject` to ``add``.

    Raises:
        ValueError: the edit does not apply (unknown kind, bad index, occupied cell...).
    """
    objs = list(scene.objects)
    if kind != "add" and not 0 <= index < len(objs):
        raise ValueError(f"{kind}: object index {index} out of range for {len(objs)} objects")
    if kind == "recolour":
        if colour not in COLOURS or colour == objs[index].colour:
            raise ValueError(f"recolour needs a new world colour, got {colour!r}")
        objs[index] = objs[index].replace(colour=colour)
    elif kind == "move":
        if cell is None or tuple(cell) not in scene.free_cells:
            raise ValueError(f"move needs a free destination cell, got {cell!r}")
        obj = objs[index]
        ox, oy = cell_center(obj.cell, scene.image_size)
        nx, ny = cell_center(cell, scene.image_size)
        objs[index] = obj.replace(
            cell=tuple(cell), center=(obj.center[0] - ox + nx, obj.center[1] - oy + ny)
        )
    elif kind == "add":
        if new_object is None or tuple(new_object.cell) not in scene.free_cells:
            raise ValueError("add needs a new object in a free cell")
        objs.append(new_object)
    elif kind == "remove":
        del objs[index]
    else:
        raise ValueError(f"unknown edit kind {kind!r}; kinds: {', '.join(EDIT_KINDS)}")
    return scene.replace(objects=tuple(objs))


def _options(scene: Scene) -> dict[str, list[tuple[Any, ...]]]:
    """Every applicable ``(index, colour)`` recolour, ``(index, cell)`` move, free cell and
    removable index that keeps touching objects apart in colour."""
    n, free, size = len(scene.objects), scene.free_cells, scene.image_size
    options: dict[str, list[tuple[Any, ...]]] = {
        "recolour": [],
        "move": [],
        "add": [],
        "remove": [],
    }
    touch = touching(scene.objects, size)
    for k, obj in enumerate(scene.objects):
        near = {o.colour for j, o in enumerate(scene.objects) if touch[k, j]}
        options["recolour"] += [(k, c) for c in COLOURS if c != obj.colour and c not in near]
        for cell in free:
            if not colour_conflicts(apply_edit(scene, "move", k, cell=cell).objects, size):
                options["move"].append((k, cell))
    if n < 3:
        options["add"] = [(cell,) for cell in free]
    if n >= 2:
        options["remove"] = [(k,) for k in range(n)]
    return options


def sample_edit(scene: Scene, rng: np.random.Generator, config: WorldConfig | None = None) -> Edit:
    """A random applicable edit of ``scene`` with a natural-language instruction.

    The edit never makes two touching objects share a colour.
    """
    config = config or WorldConfig(image_size=scene.image_size)
    options = _options(scene)
    kinds = [k for k in EDIT_KINDS if options[k]]
    kind = kinds[int(rng.integers(len(kinds)))]
    template = _TEMPLATES[kind][int(rng.integers(len(_TEMPLATES[kind])))]
    choice = options[kind][int(rng.integers(len(options[kind])))]
    if kind == "add":
        (cell,) = choice
        obj = sample_object(rng, cell, config, z=scene.max_z() + 1)
        obj = recolour_conflicts([*scene.objects, obj], rng, scene.image_size)[-1]
        target = apply_edit(scene, "add", new_object=obj)
        text = template.format(obj=object_phrase(obj), where=position_phrase(obj.position))
        return Edit(kind, text, scene, target, len(target.objects) - 1, cell=cell)
    index = int(choice[0])
    ref = referring_expression(scene, index)
    if kind == "recolour":
        colour = choice[1]
        target = apply_edit(scene, kind, index, colour=colour)
        return Edit(
            kind, template.format(ref=ref, colour=colour), scene, target, index, colour=colour
        )
    if kind == "move":
        cell = choice[1]
        target = apply_edit(scene, kind, index, cell=cell)
        where = position_phrase(_cell_name(cell))
        return Edit(kind, template.format(ref=ref, where=where), scene, target, index, cell=cell)
    target = apply_edit(scene, "remove", index)
    return Edit(kind, template.format(ref=ref), scene, target, index)


def _cell_name(cell: tuple[int, int]) -> str:
    return CELL_NAMES[(int(cell[0]), int(cell[1]))]
