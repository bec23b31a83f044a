"""Localized Narratives (Pont-Tuset et al., 2020) JSONL files -- read and written.

Each line of ``<dataset>_<split>_localized_narratives.jsonl``::

    {"dataset_id": "mscoco_val2017", "image_id": "137576", "annotator_id": 93,
     "caption": "In this image there are group of cows ...", "timed_caption": [...],
     "traces": [...], "voice_recording": "coco_val/coco_val_137576_93.ogg"}

The narratives only hold image ids; images are ``<image_id>.jpg`` or, for COCO,
``<image_id:012d>.jpg`` (``.png`` also accepted), see :func:`image_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import entry_field, write_jsonl

__all__ = ["Narrative", "image_names", "parse_narrative", "write_narratives"]


@dataclass(frozen=True)
class Narrative:
    """One narration of one image (``caption`` as written)."""

    image_id: str
    caption: str
    annotator_id: int | None = None
    dataset_id: str = ""
    timed_caption: list[Any] = field(default_factory=list)
    traces: list[Any] = field(default_factory=list)
    voice_recording: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "image_id": self.image_id, "annotator_id": self.annotator_id,
                "caption": self.caption, "timed_caption": self.timed_caption, "traces": self.traces,
                "voice_recording": self.voice_recording}  # fmt: skip


def parse_narrative(obj: Any, where: str) -> Narrative:
    """A line checked: ``image_id`` (str or int, kept as str) and a non-empty ``caption``."""
    image_id = str(entry_field(obj, "image_id", (str, int), where))
    caption = entry_field(obj, "caption", str, where)
    annotator = obj.get("annotator_id")
    return Narrative(image_id, caption, annotator if isinstance(annotator, int) else None,
                     str(obj.get("dataset_id", "")), list(obj.get("timed_caption") or []),
                     list(obj.get("traces") or []), str(obj.get("voice_recording", "")))  # fmt: skip


def image_names(image_id: str) -> list[str]:
    """File names an image id may have: ``<id>.jpg``, zero-padded COCO names, ``.png``."""
    stems = [image_id] + ([f"{int(image_id):012d}"] if image_id.isdigit() else [])
    return [f"{s}{ext}" for s in stems for ext in (".jpg", ".png")]


def write_narratives(path: Path, narratives: Sequence[Narrative]) -> None:
    """One JSONL file of narratives."""
    write_jsonl(path, [n.to_dict() for n in narratives])
