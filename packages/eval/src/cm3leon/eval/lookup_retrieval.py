"""Oracle and control retrieval for measuring in-context use (issue 15, Table 1's mechanism).

Retrieval-augmented generation can only help if the model *uses* what is in its context.
The ``lookup`` retriever isolates that from the retriever's quality: its "bank" is the
evaluation's own ground truth, and it returns

* ``mode: own`` -- the prompt's target document itself (its caption and its real image):
  the best any retriever could do (oracle retrieval);
* ``mode: other`` -- the document ``shift`` places further in the same file: unrelated
  content in the same layout, the control (what a context that says nothing about the
  prompt does to the model).

A prompt is matched to its document by its text: one of the row's captions.  Banks:

* the world's ``ground_truth/scenes.jsonl`` (rows with ``captions`` and ``scene``; the
  image is rendered from the scene);
* the world's ``entities/documents.jsonl`` or any JSONL of ``{"caption", "image"}`` rows
  (``image`` relative to the file).

Registered as the ``lookup`` retriever:
``retrieval: {k: 1, retriever: lookup, bank: .../scenes.jsonl, options: {mode: own}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.formats.common import FormatError, iter_jsonl

__all__ = ["LookupRetriever", "lookup_retriever"]

MODES = ("own", "other")


def _captions(row: dict[str, Any], where: str) -> list[str]:
    caps = row.get("captions") if "captions" in row else [row.get("caption")]
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
        raise FormatError(f"{where}: a lookup document needs 'captions' (a list) or 'caption'")
    return caps


class LookupRetriever:
    """Returns each prompt's own document (``own``) or an unrelated one (``other``).

    Args:
        bank: JSONL of the documents (see the module docstring).
        mode: ``own`` (oracle) or ``other`` (control).
        shift: how far ``other`` looks from the prompt's own row (>= 1).
    """

    def __init__(self, bank: str | Path, mode: str = "own", shift: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"lookup retriever: mode must be one of {MODES}, got {mode!r}")
        if shift < 1:
            raise ValueError(f"lookup retriever: shift must be >= 1, got {shift}")
        self.path, self.mode, self.shift = Path(bank), mode, int(shift)
        self.rows: list[dict[str, Any]] = []
        self.by_text: dict[str, int] = {}
        for n, row in iter_jsonl(self.path):
            if "scene" not in row and "image" not in row:
                raise FormatError(f"{self.path}:{n}: a lookup document needs 'scene' or 'image'")
            for caption in _captions(row, f"{self.path}:{n}"):
                self.by_text.setdefault(caption.strip(), len(self.rows))
            self.rows.append(row)
        if len(self.rows) < 2:
            raise FormatError(f"{self.path}: a lookup bank needs at least two documents")

    def __repr__(self) -> str:
        return f"LookupRetriever({str(self.path)!r}, mode={self.mode!r}, shift={self.shift})"

    def _document(self, index: int) -> Document:
        row = self.rows[index]
        if "scene" in row:
            from cm3leon.world import Scene, render_scene

            image = ImageSegment(image=render_scene(Scene.from_dict(row["scene"])).image)
        else:
            from cm3leon.core.images import load_image

            image = ImageSegment(image=load_image(self.path.parent / str(row["image"])))
        text = _captions(row, str(self.path))[0]
        return Document((TextSegment(text), image), id=f"lookup-{index}")

    def retrieve(
        self, queries: Sequence[Document], k: int, *, training: bool = False
    ) -> list[list[Document]]:
        """One document per query (``k`` >= 1): its own, or the one ``shift`` rows on."""
        del training
        out = []
        for query in queries:
            text = " ".join(query.texts).strip()
            if text not in self.by_text:
                raise KeyError(f"{self.path}: no document has the caption {text!r} (lookup retriever)")
            index = self.by_text[text]
            if self.mode == "other":
                index = (index + self.shift) % len(self.rows)
            out.append([self._document(index)] if k >= 1 else [])
        return out


def lookup_retriever(bank: str | Path | None = None, **options: Any) -> LookupRetriever:
    """Factory of the registered ``lookup`` retriever (``bank``: the documents' JSONL)."""
    if bank is None:
        raise ValueError("lookup retriever: give bank (a JSONL of the evaluation's documents)")
    return LookupRetriever(bank, **options)
