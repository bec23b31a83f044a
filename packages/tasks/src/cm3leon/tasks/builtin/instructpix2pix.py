"""InstructPix2Pix text-guided editing (Brooks et al., 2023), Table 5: 127k examples.

Templates: Table 5's, and the same layout with the task prefix of §4.1 ("we
precede every text-guided editing example with the phrase, 'Edit the image
following the text instruction'")::

    Edit first image following the instruction <break> {image1} <break> {instruction} <break> {image2}
    Edit the image following the text instruction <break> {image1} <break> {instruction} <break> {image2}

``{image1}`` is the input image, ``{image2}`` the edited one.  Rendered record
``{"instruction": "make it winter"}`` with template 1::

    Edit the image following the text instruction <break> [input image] <break> make it winter <break> [edited image]

Reader: :func:`cm3leon.tasks.readers.pix2pix.read_instructpix2pix` (folders of
``prompt.json`` + ``<seed>_0.jpg``/``<seed>_1.jpg``, or the parquet release).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import EditRecord, record_id, require_image, require_str
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["TEMPLATES", "EditTask", "instructpix2pix"]

TEMPLATES = (
    "Edit first image following the instruction <break> {image1} <break> {instruction} "
    "<break> {image2}",
    "Edit the image following the text instruction <break> {image1} <break> {instruction} "
    "<break> {image2}",
)


@dataclass(frozen=True)
class EditTask:
    """Render an :class:`~cm3leon.tasks.records.EditRecord`."""

    name: str = "instructpix2pix"
    templates: tuple[str, ...] = TEMPLATES
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_set", TemplateSet(self.name, tuple(self.templates), ("image1", "image2"), outputs=("image2",))
        )

    def render(self, record: EditRecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record`` (``image``, ``instruction``, ``edited_image``)."""
        rid = record_id(record, task=self.name)
        instruction = require_str(record, "instruction", task=self.name)
        return self._set.render(
            record_id=rid,
            values={"instruction": instruction},
            images={
                "image1": require_image(record, "image", task=self.name),
                "image2": require_image(record, "edited_image", task=self.name),
            },
            rng=rng,
            meta={"instruction": instruction},
        )

    def example(self, rng: np.random.Generator) -> EditRecord:
        """A synthetic edit: flip the scene left to right."""
        scene = synthetic_scene(rng)
        from PIL import ImageOps

        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": scene["image"],
                "instruction": "mirror the picture", "edited_image": ImageOps.mirror(scene["image"])}  # fmt: skip


def instructpix2pix() -> EditTask:
    """The text-guided image editing task."""
    return EditTask()
