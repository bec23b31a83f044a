"""Prompts for every task, and their token streams (cond, uncond, no_text, no_image).

A :class:`Prompt` is an ordered list of segments -- text, images and exactly one
:class:`Hole` where the output goes.  Serialisation follows the documents' layout
(``docs/architecture.md``, Figures 8/9) plus the CM3 sentinels (§2.2)::

    text -> image        <eos> a red cube <break>                      -> c_1..c_N <break>
    image -> text        <eos> <mask:0> <break> c_1..c_N <break> <infill:0>        -> text
    VQA                  <eos> Q: what colour? A: <mask:0> . <break> c.. <break> <infill:0>
    text infilling       <eos> a <mask:0> on the table <infill:0>                 -> text
    image infilling      <eos> caption <break> c_1..c_a <mask:0> c_b..c_N <break> <infill:0>
                                                                         -> exactly b - a codes
    editing (§4.1)       <eos> Edit the image ... <break> c.. <break> make it winter <break>

* A hole at the very end is a **continuation** (an image hole opens with ``<break>``);
  anywhere else it is an **infill**: ``<mask:0>`` in place and ``<infill:0>`` at the end,
  as the CM3 transform writes training examples.  Text next to a text hole is part of the
  same text run (no ``<break>``).
* Retrieved documents go in front (Figure 9, :func:`cm3leon.core.serialize.join_documents`).
* **Streams** replace conditions by CM3 masks (eq. 1): ``uncond`` masks every condition,
  ``no_text`` the text conditions, ``no_image`` the image conditions.  A condition is a
  segment that is not ``fixed`` (a task prefix such as "Edit the image following the text
  instruction") and not text of the hole's own run (e.g. "Answer: ___.").  A masked text
  segment becomes ``<mask:k>``, a masked image ``<break> <mask:k> <break>`` (CM3 never
  masks across ``<break>``).  Numbering: an infill output always takes ``<mask:0>`` /
  ``<infill:0>`` (generation starts right after ``<infill:0>``, where the first infill
  block starts in training); the condition masks take the next numbers in position order.
  When the hole comes first (captioning, VQA) this is exactly the transform's numbering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.serialize import DocumentTokenizer, join_documents
from cm3leon.decoding.engine import SpanSpec

__all__ = ["STREAMS", "EncodedPrompt", "Hole", "Prompt", "PromptEncoder"]

#: Stream name -> which conditions it masks.
STREAMS: dict[str, tuple[str, ...]] = {
    "cond": (),
    "uncond": ("text", "image"),
    "no_text": ("text",),
    "no_image": ("image",),
}

#: The editing prefix of §4.1 (and of the instructpix2pix task's second template).
EDIT_PREFIX = "Edit the image following the text instruction"


@dataclass(frozen=True)
class Hole:
    """Where the output goes.

    Attributes:
        modality: ``"text"`` or ``"image"``.
        image: for image infilling, the image whose codes ``[start, end)`` are regenerated.
        start, end: raster range of codes to regenerate (``end=None``: to the last code).
    """

    modality: Literal["text", "image"]
    image: ImageSegment | None = None
    start: int = 0
    end: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in ("text", "image"):
            raise ValueError(f"Hole.modality must be 'text' or 'image', got {self.modality!r}")
        if self.image is not None and self.modality != "image":
            raise ValueError("Hole: only an image hole can carry an image to infill")

    @property
    def partial(self) -> bool:
        return self.image is not None


PromptSegment = TextSegment | ImageSegment | Hole


@dataclass(frozen=True)
class Prompt:
    """Segments with exactly one :class:`Hole`; see the module docstring.

    Attributes:
        segments: text / image segments and the hole, in reading order.
        id: name used in outputs and errors.
        fixed: indices of segments kept in every stream (task prefixes).
        retrieved: documents to put in front; ``None`` lets the generator retrieve
            (when ``k > 0``), ``()`` means none.
        max_new_tokens: text spans: overrides the options' limit.
        meta: free-form (ground truth, task name).
    """

    segments: tuple[PromptSegment, ...]
    id: str = ""
    fixed: frozenset[int] = frozenset()
    retrieved: tuple[Document, ...] | None = None
    max_new_tokens: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "fixed", frozenset(self.fixed))
        where = f"prompt {self.id!r}"
        holes = [i for i, s in enumerate(self.segments) if isinstance(s, Hole)]
        if len(holes) != 1:
            raise ValueError(f"{where}: needs exactly one Hole (the output), found {len(holes)}")
        for i, seg in enumerate(self.segments):
            if not isinstance(seg, (TextSegment, ImageSegment, Hole)):
                raise TypeError(f"{where}: segment {i} is {type(seg).__name__}, not text/image/Hole")
        bad = sorted(i for i in self.fixed if not 0 <= i < len(self.segments) or i == holes[0])
        if bad:
            raise ValueError(f"{where}: fixed indices {bad} are not condition segments")
        if self.retrieved is not None:
            object.__setattr__(self, "retrieved", tuple(self.retrieved))
        n = self.max_new_tokens
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"{where}: max_new_tokens must be a positive integer, got {n!r}")

    # ------------------------------------------------------------ structure
    @property
    def hole_index(self) -> int:
        return next(i for i, s in enumerate(self.segments) if isinstance(s, Hole))

    @property
    def hole(self) -> Hole:
        return self.segments[self.hole_index]  # type: ignore[return-value]

    @property
    def output(self) -> str:
        """``"image"`` or ``"text"``."""
        return self.hole.modality

    @property
    def is_infill(self) -> bool:
        return self.hole.partial or self.hole_index != len(self.segments) - 1

    def hole_run(self) -> set[int]:
        """Indices of text segments in the same text run as a text hole."""
        h = self.hole_index
        if self.output != "text":
            return set()
        return {i for i in (h - 1, h + 1) if 0 <= i < len(self.segments)
                and isinstance(self.segments[i], TextSegment)}  # fmt: skip

    def conditions(self) -> list[int]:
        """Indices of the segments that guidance streams may mask."""
        skip = self.fixed | self.hole_run() | {self.hole_index}
        return [i for i in range(len(self.segments)) if i not in skip]

    def query_document(self) -> Document:
        """The prompt's text and images as a document (retrieval query, no hole)."""
        segs = [s for s in self.segments if not isinstance(s, Hole)]
        if self.hole.partial:
            segs.append(self.hole.image)  # type: ignore[arg-type]
        return Document(tuple(segs), id=self.id)

    def rerank_text(self) -> str:
        """Text CLIP compares generated images with: the conditions' text, else all text."""
        texts = [self.segments[i].text for i in self.conditions() if isinstance(self.segments[i], TextSegment)]
        texts = texts or [s.text for s in self.segments if isinstance(s, TextSegment)]
        return " ".join(t.strip() for t in texts if t.strip())

    def rerank_image(self) -> ImageSegment | None:
        """Image CLIP compares generated text with: the first image of the prompt."""
        return next((s for s in self.segments if isinstance(s, ImageSegment)), None)

    # --------------------------------------------------------- constructors
    @classmethod
    def text_to_image(cls, caption: str, *, id: str = "", **kw: Any) -> Prompt:
        """``<eos> caption <break>`` -> an image (§2.2)."""
        return cls((TextSegment(caption), Hole("image")), id=id, **kw)

    @classmethod
    def image_to_text(
        cls, image: Any, *, prefix: str = "", suffix: str = "", layout: str = "infill", id: str = "", **kw: Any
    ) -> Prompt:
        """Captioning / VQA.

        ``layout="infill"`` is §2.2's "Image of <mask>: [image] <infill>": the text
        (``prefix`` + hole + ``suffix``) comes first, the image after, and the answer is
        infilled; ``"continuation"`` puts the image first and continues ``prefix``.
        """
        img = image if isinstance(image, ImageSegment) else ImageSegment(image=image)
        text = [TextSegment(prefix)] if prefix else []
        if layout == "infill":
            segs = [*text, Hole("text"), *([TextSegment(suffix)] if suffix else []), img]
        elif layout == "continuation":
            if suffix:
                raise ValueError("image_to_text: a continuation prompt has no suffix")
            segs = [img, *text, Hole("text")]
        else:
            raise ValueError(f"image_to_text: layout must be 'infill' or 'continuation', got {layout!r}")
        return cls(tuple(segs), id=id, **kw)

    @classmethod
    def text_infill(cls, before: str, after: str, *, id: str = "", **kw: Any) -> Prompt:
        """``before <mask:0> after <infill:0>`` -> the missing text."""
        segs = [*([TextSegment(before)] if before else []), Hole("text"), *([TextSegment(after)] if after else [])]
        return cls(tuple(segs), id=id, **kw)

    @classmethod
    def image_infill(
        cls, image: Any, start: int, end: int | None = None, *, caption: str = "", id: str = "", **kw: Any
    ) -> Prompt:
        """Regenerate codes ``[start, end)`` of ``image`` (pixels or an :class:`ImageSegment`)."""
        img = image if isinstance(image, ImageSegment) else ImageSegment(image=image)
        hole = Hole("image", image=img, start=start, end=end)
        return cls((*([TextSegment(caption)] if caption else []), hole), id=id, **kw)

    @classmethod
    def edit(cls, image: Any, instruction: str, *, prefix: str = EDIT_PREFIX, id: str = "", **kw: Any) -> Prompt:
        """Text-guided editing (§4.1): ``prefix <break> [image] <break> instruction <break>``."""
        img = image if isinstance(image, ImageSegment) else ImageSegment(image=image)
        segs = (TextSegment(prefix), img, TextSegment(instruction), Hole("image"))
        return cls(segs, id=id, fixed=frozenset({0}) if prefix else frozenset(), **kw)

    def with_retrieved(self, docs: Sequence[Document]) -> Prompt:
        return replace(self, retrieved=tuple(docs))


@dataclass
class EncodedPrompt:
    """Token streams of one prompt and the span to decode.

    Attributes:
        streams: stream name -> global ids (``<eos>`` first).
        span: the output span.
        image_codes: image infilling: the source codes (the span replaces ``[start, end)``).
        start, end: the infilled range.
    """

    streams: dict[str, np.ndarray]
    span: SpanSpec
    image_codes: np.ndarray | None = None
    start: int = 0
    end: int = 0


class PromptEncoder:
    """Serialise :class:`Prompt` objects with a :class:`DocumentTokenizer`.

    Args:
        tokenizer: text + image tokenizers and the unified vocabulary.
    """

    def __init__(self, tokenizer: DocumentTokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab = tokenizer.vocab

    # -------------------------------------------------------------- pieces
    def _text(self, seg: TextSegment, where: str) -> np.ndarray:
        ids = self.tokenizer.text_tokenizer.encode(seg.text)
        return self.vocab.text_to_global(ids, where=where)

    def _codes(self, seg: ImageSegment, where: str) -> np.ndarray:
        """Global image ids of one image (VQ-encoded if it carries pixels only)."""
        try:
            ids = self.tokenizer.encode(Document((seg,), id=where))  # <break> codes <break>
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        return ids[1:-1]

    def tokens_per_image(self) -> int:
        n = self.tokenizer.tokens_per_image
        if n is None:
            raise ValueError(
                "cannot generate images: the DocumentTokenizer knows no tokens_per_image "
                "(give it an image tokenizer or tokens_per_image=...)"
            )
        return int(n)

    def with_codes(self, prompts: Sequence[Prompt]) -> list[Prompt]:
        """VQ-encode every pixel-only image of ``prompts`` (and their retrieved documents) in one batch."""
        docs = [Document(tuple(s for s in p.segments if isinstance(s, ImageSegment))) for p in prompts]
        holes = [Document((p.hole.image,)) if p.hole.partial else Document(()) for p in prompts]
        retrieved = [d for p in prompts for d in (p.retrieved or ())]
        coded = self.tokenizer.with_codes([*docs, *holes, *retrieved])
        out, it_r = [], iter(coded[2 * len(prompts):])
        for p, d, h in zip(prompts, coded[: len(prompts)], coded[len(prompts): 2 * len(prompts)], strict=True):
            images = iter(d.segments)
            segs: list[Any] = []
            for s in p.segments:
                if isinstance(s, ImageSegment):
                    segs.append(next(images))
                elif isinstance(s, Hole) and s.partial:
                    segs.append(Hole("image", image=h.segments[0], start=s.start, end=s.end))  # type: ignore[arg-type]
                else:
                    segs.append(s)
            retr = None if p.retrieved is None else tuple(next(it_r) for _ in p.retrieved)
            out.append(replace(p, segments=tuple(segs), retrieved=retr))
        return out

    # ------------------------------------------------------------- streams
    def encode(
        self,
        prompt: Prompt,
        streams: Sequence[str],
        *,
        max_new_text_tokens: int = 32,
        retrieved_in_uncond: bool = True,
    ) -> EncodedPrompt:
        """Token streams ``streams`` (names of :data:`STREAMS`) and the output span.

        Raises:
            ValueError: an unknown stream, an empty prompt, an image infill range outside
                the image, or too many masks for the vocabulary's sentinels (all naming
                the prompt).
        """
        where = f"prompt {prompt.id!r}"
        unknown = [s for s in streams if s not in STREAMS]
        if unknown:
            raise ValueError(f"{where}: unknown stream(s) {unknown}; known: {sorted(STREAMS)}")
        vocab, hole = self.vocab, prompt.hole
        span, codes, start, end = self._span(prompt, max_new_text_tokens, where)
        retrieved = [self.tokenizer.encode(d) for d in (prompt.retrieved or ())]
        out: dict[str, np.ndarray] = {}
        for name in streams:
            masked = STREAMS[name]
            query = self._query(prompt, masked, codes, start, end, where)
            if prompt.is_infill:
                query = np.concatenate([query, [vocab.infill_id(0)]])
            elif hole.modality == "image" and (query.size == 0 or query[-1] != vocab.break_id):
                query = np.concatenate([query, [vocab.break_id]])
            context = retrieved if (not masked or retrieved_in_uncond) else []
            if query.size:
                out[name] = join_documents([*context, query], vocab)[0]
            elif context:  # unconditional text after the retrieved documents: a boundary <break>
                ids = join_documents(context, vocab)[0]
                out[name] = ids if ids[-1] == vocab.break_id else np.concatenate([ids, [vocab.break_id]])
            else:  # unconditional text: continue <eos>
                out[name] = np.array([vocab.eos_id], dtype=np.int64)
        return EncodedPrompt(out, span, codes, start, end)

    def _span(self, prompt: Prompt, max_text: int, where: str) -> tuple[SpanSpec, np.ndarray | None, int, int]:
        hole = prompt.hole
        if hole.modality == "text":
            return SpanSpec.text(self.vocab, prompt.max_new_tokens or max_text), None, 0, 0
        if not hole.partial:
            return SpanSpec.image(self.vocab, self.tokens_per_image(), close=not prompt.is_infill), None, 0, 0
        codes = self._codes(hole.image, f"{where}, image to infill")  # type: ignore[arg-type]
        end = codes.size if hole.end is None else hole.end
        if not 0 <= hole.start < end <= codes.size:
            raise ValueError(
                f"{where}: image infill range [{hole.start}, {end}) is not inside the image's "
                f"{codes.size} codes"
            )
        return SpanSpec.image(self.vocab, end - hole.start, close=False), codes, hole.start, end

    def _query(
        self, prompt: Prompt, masked: tuple[str, ...], codes: np.ndarray | None, start: int, end: int, where: str
    ) -> np.ndarray:
        """The query document's ids (no ``<eos>``) with ``masked`` condition kinds masked."""
        vocab = self.vocab
        conditions = set(prompt.conditions())
        next_mask = 1 if prompt.is_infill else 0
        out: list[int] = []
        prev = None  # "text", "hole" or "image"
        for i, seg in enumerate(prompt.segments):
            seg_where = f"{where}, segment {i}"
            kind = "image" if isinstance(seg, ImageSegment) or (isinstance(seg, Hole) and seg.modality == "image") else "text"
            mask_it = i in conditions and kind in masked
            if mask_it:
                if next_mask >= vocab.num_sentinels:
                    raise ValueError(f"{where}: more masked segments than the {vocab.num_sentinels} CM3 sentinels")
                ids = np.array([vocab.mask_id(next_mask)])
                next_mask += 1
            elif isinstance(seg, Hole):
                ids = self._hole_ids(prompt, seg, codes, start, end)
            elif isinstance(seg, TextSegment):
                ids = self._text(seg, seg_where)
                if ids.size == 0:
                    continue
            else:
                ids = self._codes(seg, seg_where)
            if kind == "image":
                if ids.size == 0:  # a trailing image hole: the caller opens it with <break>
                    continue
                if not out or out[-1] != vocab.break_id:
                    out.append(vocab.break_id)
                out += ids.tolist() + [vocab.break_id]
                prev = "image"
                continue
            this = "hole" if isinstance(seg, Hole) else "text"
            if prev == "text" and this == "text":
                out.append(vocab.break_id)  # two text segments: a <break> between them
            out += ids.tolist()
            prev = this
        return np.asarray(out, dtype=np.int64)

    def _hole_ids(self, prompt: Prompt, hole: Hole, codes: np.ndarray | None, start: int, end: int) -> np.ndarray:
        vocab = self.vocab
        if not prompt.is_infill:
            return np.zeros(0, dtype=np.int64)  # continuation: generated after the prompt
        if hole.partial:
            assert codes is not None
            return np.concatenate([codes[:start], [vocab.mask_id(0)], codes[end:]]).astype(np.int64)
        return np.array([vocab.mask_id(0)], dtype=np.int64)
