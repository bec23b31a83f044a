"""Typed multimodal documents: an ordered list of text and image segments.

A :class:`Document` is what every stage passes around before tokenization:
raw pairs, world scenes, SFT task renderings and retrieved neighbours are all
documents.  An image segment holds pixels (``PIL.Image``/``numpy``), VQ codes,
or both; serialisation to token ids (Figure 8) lives in
:mod:`cm3leon.core.serialize`.

Documents are JSON-serialisable (images as PNG bytes, base64) so they can be
stored in MDS shards and moved between processes.

**Targets.** An SFT task marks where its output lies in the rendered document:
``meta["targets"]`` holds one :class:`TargetSpan` (as JSON) per output part -- a whole
segment (an image; a text segment that is only the output), or the exact character range
of a template field inside a templated text segment (``{answer}`` inside ``"Question: ...
The answer is {answer}."``).  :attr:`Document.targets` reads and checks them;
serialisation turns them into token ranges (:mod:`cm3leon.core.serialize`) and the CM3
objective can mask exactly them (:mod:`cm3leon.core.objective`).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "TARGETS_KEY",
    "Document",
    "ImageSegment",
    "Segment",
    "TargetSpan",
    "TextSegment",
    "image_from_png",
    "image_to_png",
]

#: UTF-16 surrogate code points: a Python ``str`` can hold them alone (JSON ``"\\ud800"``,
#: ``surrogateescape``), but they are not Unicode text and cannot be encoded as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")

#: The ``Document.meta`` key holding the task's output spans (a list of TargetSpan JSON).
TARGETS_KEY = "targets"


@dataclass(frozen=True)
class TextSegment:
    """A run of text."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"TextSegment.text must be str, got {type(self.text).__name__}")

    @property
    def modality(self) -> str:
        return "text"


@dataclass(frozen=True, eq=False)
class ImageSegment:
    """An image, as pixels and/or VQ codes.

    Attributes:
        image: ``PIL.Image.Image`` or ``(H, W, 3)`` uint8 array, or ``None``.
        codes: VQ codebook indices ``(N,)`` (not global ids), or ``None``.
    """

    image: Any = None
    codes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.image is None and self.codes is None:
            raise ValueError("ImageSegment needs pixels (image=...) or VQ codes (codes=...)")
        if self.codes is not None:
            arr = np.asarray(self.codes)
            if arr.size and arr.dtype.kind not in "iu":
                raise ValueError(f"ImageSegment codes must be integers, got dtype {arr.dtype}")
            # Plain Python ints, whatever came in (numpy scalars, tensors, lists).
            object.__setattr__(self, "codes", tuple(int(c) for c in arr.ravel()))

    @property
    def modality(self) -> str:
        return "image"

    def pil(self) -> Any:
        """The pixels as an RGB ``PIL.Image`` (raises if only codes are present)."""
        from PIL import Image

        if self.image is None:
            raise ValueError("ImageSegment has only VQ codes; decode them with an image tokenizer")
        if isinstance(self.image, Image.Image):
            return self.image if self.image.mode == "RGB" else self.image.convert("RGB")
        arr = np.asarray(self.image)
        if arr.dtype != np.uint8:
            raise ValueError(f"ImageSegment array must be uint8, got {arr.dtype}")
        return Image.fromarray(arr).convert("RGB")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageSegment):
            return NotImplemented
        if self.codes != other.codes:
            return False
        if (self.image is None) != (other.image is None):
            return False
        if self.image is None:
            return True
        return np.array_equal(np.asarray(self.pil()), np.asarray(other.pil()))

    def __hash__(self) -> int:
        return hash(self.codes)


Segment = TextSegment | ImageSegment


@dataclass(frozen=True)
class TargetSpan:
    """Where (part of) a task's output lies in a document.

    Attributes:
        segment: index of the segment in ``Document.segments``.
        start, end: character range ``[start, end)`` of the output inside a text segment;
            both ``None`` for a whole segment (always so for an image).
    """

    segment: int
    start: int | None = None
    end: int | None = None

    def to_json(self) -> dict[str, int]:
        """``{"segment": i}`` or ``{"segment": i, "start": a, "end": b}``."""
        out = {"segment": self.segment}
        if self.start is not None and self.end is not None:
            out.update(start=self.start, end=self.end)
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> TargetSpan:
        """Parse one ``meta["targets"]`` entry (errors name ``where``)."""
        if not isinstance(data, Mapping) or set(data) - {"segment", "start", "end"}:
            raise ValueError(f"{where}: expected {{'segment', 'start', 'end'}}, got {data!r}")
        values = [data.get(k) for k in ("segment", "start", "end")]
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            raise ValueError(f"{where}: segment/start/end must be integers, got {dict(data)!r}")
        segment, start, end = values
        if segment is None or (start is None) != (end is None):
            raise ValueError(f"{where}: needs 'segment', and 'start' with 'end' (or neither), got {dict(data)!r}")
        return cls(segment, start, end)

    def char_range(self, segment: Segment) -> tuple[int, int] | None:
        """``(start, end)`` inside a text segment (the whole text by default); ``None`` for an image."""
        if isinstance(segment, ImageSegment):
            return None
        if self.start is None or self.end is None:
            return 0, len(segment.text)
        return self.start, self.end


@dataclass(frozen=True)
class Document:
    """An ordered multimodal document.

    Attributes:
        segments: text and image segments in reading order.
        id: stable identifier (used by retrieval to map index rows back to documents).
        meta: free-form JSON-serialisable metadata (task name, ground truth, ...).
    """

    segments: tuple[Segment, ...]
    id: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.segments, tuple):
            object.__setattr__(self, "segments", tuple(self.segments))
        for i, seg in enumerate(self.segments):
            if not isinstance(seg, (TextSegment, ImageSegment)):
                raise TypeError(f"document {self.id!r}: segment {i} is {type(seg).__name__}")
            if isinstance(seg, TextSegment) and (bad := _SURROGATE.search(seg.text)):
                raise ValueError(f"document {self.id!r}: segment {i}: lone surrogate U+{ord(bad.group()):04X} at "
                                 f"character {bad.start()} (not valid Unicode text, cannot be encoded as UTF-8)")

    @classmethod
    def of(cls, *parts: str | Any, id: str = "", meta: Mapping[str, Any] | None = None) -> Document:
        """Build from parts: ``str`` -> text, anything else -> image (pixels or segment)."""
        segs: list[Segment] = []
        for p in parts:
            if isinstance(p, (TextSegment, ImageSegment)):
                segs.append(p)
            elif isinstance(p, str):
                segs.append(TextSegment(p))
            else:
                segs.append(ImageSegment(image=p))
        return cls(tuple(segs), id=id, meta=dict(meta or {}))

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.segments if isinstance(s, TextSegment)]

    @property
    def images(self) -> list[ImageSegment]:
        return [s for s in self.segments if isinstance(s, ImageSegment)]

    @property
    def text(self) -> str:
        """All text segments joined by a space (what a text encoder sees)."""
        return " ".join(self.texts)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(s.modality for s in self.segments)

    def is_empty(self) -> bool:
        return not self.segments or all(
            isinstance(s, TextSegment) and not s.text.strip() for s in self.segments
        )

    @property
    def targets(self) -> tuple[TargetSpan, ...]:
        """The task output spans of ``meta["targets"]``, in document order (empty if none).

        Raises:
            ValueError: a malformed entry, a segment index out of range, a character range
                on an image or outside/empty in its text, or overlapping targets; the
                message names the document id.
        """
        raw = self.meta.get(TARGETS_KEY) if isinstance(self.meta, Mapping) else None
        if raw is None:
            return ()
        where = f"document {self.id!r}: meta[{TARGETS_KEY!r}]"
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {type(raw).__name__}")
        spans = [TargetSpan.from_json(item, where=f"{where}[{i}]") for i, item in enumerate(raw)]
        for i, t in enumerate(spans):
            if not 0 <= t.segment < len(self.segments):
                raise ValueError(f"{where}[{i}]: segment {t.segment} of {len(self.segments)} segments")
            seg = self.segments[t.segment]
            if isinstance(seg, ImageSegment) and t.start is not None:
                raise ValueError(f"{where}[{i}]: segment {t.segment} is an image; a character range needs text")
            rng = t.char_range(seg)
            size = len(seg.text) if isinstance(seg, TextSegment) else 0
            if rng is not None and not 0 <= rng[0] < rng[1] <= size:
                raise ValueError(f"{where}[{i}]: character range {list(rng)} is empty or outside the "
                                 f"{size} characters of segment {t.segment}")  # fmt: skip
        ordered = sorted(spans, key=lambda t: (t.segment, t.start or 0))
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a.segment == b.segment and (a.end is None or b.start is None or b.start < a.end):
                raise ValueError(f"{where}: targets {a.to_json()} and {b.to_json()} overlap")
        return tuple(ordered)

    def replace(self, **changes: Any) -> Document:
        data = {"segments": self.segments, "id": self.id, "meta": self.meta} | changes
        return Document(**data)

    # ----------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        """JSON-able dict; images are PNG (base64), codes are lists."""
        segs: list[dict[str, Any]] = []
        for s in self.segments:
            if isinstance(s, TextSegment):
                segs.append({"type": "text", "text": s.text})
            else:
                item: dict[str, Any] = {"type": "image"}
                if s.image is not None:
                    item["png"] = base64.b64encode(image_to_png(s.pil())).decode("ascii")
                if s.codes is not None:
                    item["codes"] = list(s.codes)
                segs.append(item)
        return {"id": self.id, "meta": dict(self.meta), "segments": segs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "<json>") -> Document:
        """Inverse of :meth:`to_json`; errors name ``source`` and the segment."""
        if not isinstance(data, Mapping) or "segments" not in data:
            raise ValueError(f"{source}: document JSON needs a 'segments' list")
        segs: list[Segment] = []
        for i, item in enumerate(_as_list(data["segments"], source)):
            kind = item.get("type") if isinstance(item, Mapping) else None
            if kind == "text":
                if not isinstance(item.get("text"), str):
                    raise ValueError(f"{source}: segment {i}: 'text' must be a string")
                segs.append(TextSegment(item["text"]))
            elif kind == "image":
                image = None
                if "png" in item:
                    try:
                        image = image_from_png(base64.b64decode(item["png"]))
                    except Exception as err:
                        raise ValueError(f"{source}: segment {i}: bad PNG payload: {err}") from None
                codes = tuple(int(c) for c in item["codes"]) if "codes" in item else None
                try:
                    segs.append(ImageSegment(image=image, codes=codes))
                except ValueError as err:
                    raise ValueError(f"{source}: segment {i}: {err}") from None
            else:
                raise ValueError(f"{source}: segment {i}: unknown type {kind!r}")
        return cls(tuple(segs), id=str(data.get("id", "")), meta=dict(data.get("meta") or {}))


def _as_list(value: Any, source: str) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{source}: 'segments' must be a list")
    return value


def image_to_png(image: Any) -> bytes:
    """Encode a PIL image (or uint8 array) as PNG bytes."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_from_png(data: bytes) -> Any:
    """Decode PNG (or any PIL-readable) bytes to an RGB ``PIL.Image``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")


def concat_texts(docs: Iterable[Document]) -> list[str]:
    """The text of each document (helper for text encoders)."""
    return [d.text for d in docs]
