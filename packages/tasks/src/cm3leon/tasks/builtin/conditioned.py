"""Shared ControlNet-style task: condition image + caption -> image (§4.1, Table 5).

The seven image-to-image grounded tasks (edge, seg, hed, pose, depth, norm,
scribble) share one layout::

    <task phrase> <break> {<kind> image} <break> {caption} <break> {image}

The condition image comes from the record's ``condition`` field when a reader or
generator precomputed it, and otherwise from a *condition extractor* looked up by
name in the ``condition_extractors`` registry (the ``cm3leon_register_condition_extractors``
hook).  Choosing another extractor -- for instance a learned HED network shipped in
a plugin -- is a task option: ``hed_to_image(extractor="my_hed")`` or, in a mixture
YAML, ``options: {extractor: my_hed}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import (
    ConditionRecord,
    RecordError,
    record_id,
    require_image,
    require_str,
)
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["ConditionTask"]


@dataclass(frozen=True)
class ConditionTask:
    """Render a :class:`~cm3leon.tasks.records.ConditionRecord`.

    Args:
        name: registry name (``edge_to_image``).
        templates: Table 5 strings with ``{<slot>}``, ``{caption}`` and ``{image}``.
        slot: the condition image's placeholder (``"edge image"``).
        extractor: registered condition extractor used when the record has no ``condition``.
        extractor_options: keyword options for the extractor's factory.
    """

    name: str
    templates: tuple[str, ...]
    slot: str
    extractor: str
    extractor_options: Mapping[str, Any] = field(default_factory=dict)
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_set", TemplateSet(self.name, tuple(self.templates), (self.slot, "image"), outputs=("image",))
        )

    @functools.cached_property
    def extract(self) -> Callable[[Any, Mapping[str, Any]], Any]:
        """The condition extractor, built from the registry on first use."""
        from cm3leon.core.plugin_manager import get_registries

        registry = get_registries().condition_extractors
        where = f"task {self.name!r} option 'extractor'"
        return registry.build(self.extractor, where=where, **dict(self.extractor_options))

    def condition(self, record: Mapping[str, Any], image: Any) -> Any:
        """The record's condition image (precomputed or extracted), RGB, same size as ``image``."""
        if record.get("condition") is not None:
            cond = require_image(record, "condition", task=self.name)
        else:
            cond = self.extract(image, record)
            if not hasattr(cond, "convert") or not hasattr(cond, "size"):
                raise TypeError(
                    f"condition extractor {self.extractor!r} returned {type(cond).__name__}, "
                    "expected a PIL image"
                )
            cond = cond.convert("RGB")
        if cond.size != image.size:
            raise RecordError(
                f"task {self.name!r}: record {record.get('id')!r}: condition image is "
                f"{cond.size}, source image is {image.size}"
            )
        return cond

    def render(self, record: ConditionRecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record`` (``image``, ``caption`` and what the extractor needs)."""
        rid = record_id(record, task=self.name)
        image = require_image(record, "image", task=self.name)
        caption = require_str(record, "caption", task=self.name)
        return self._set.render(
            record_id=rid,
            values={"caption": caption},
            images={self.slot: self.condition(record, image), "image": image},
            rng=rng,
            meta={"caption": caption, "condition": self.extractor},
        )

    def example(self, rng: np.random.Generator) -> ConditionRecord:
        """A synthetic scene with objects, keypoints and depth (every extractor's input)."""
        scene = synthetic_scene(rng)
        return {"id": f"example-{int(rng.integers(1 << 30))}", **scene}
