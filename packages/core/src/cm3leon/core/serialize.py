"""Documents <-> one token sequence in the unified vocabulary (Figures 8 and 9).

Layout (see ``docs/architecture.md``, "Token layout")::

    caption-image pair (Figure 8):   caption <break> c_1 ... c_N <break>
    training example (Figure 9):     <eos> doc_1 [<break>] doc_2 ... [<break>] query

* every image is bracketed by ``<break>``; a ``<break>`` also separates two adjacent text
  segments; two ``<break>`` never follow each other (an image's closing ``<break>`` is the
  next image's opening one);
* a document boundary inside an example is marked by one ``<break>``: the one that closes
  an image when the previous document ends with an image (or opens one when the next
  starts with an image), else an inserted ``<break>``;
* the example starts with ``<eos>`` (metaseq's begin-of-document), so zero-shot
  text-to-image continues from ``<eos> caption <break>`` (§2.2).

RA-CM3 up-weighted the query pair's loss; CM3Leon removed that weighting (§2.2) and so
does the default here (``query_loss_weight=None``).  When set, it comes back as a
per-token weight array from :meth:`DocumentTokenizer.encode_example_with_weights`.

**Targets.** A document may mark its task output (``Document.targets``, set by SFT
tasks).  :meth:`DocumentTokenizer.encode_with_targets` returns the token range of each:
an image target is its codes (never the ``<break>`` around them); a text target's
segment is tokenised in three pieces -- before, output, after (:func:`split_at_target`:
a single space before the output goes with it, as byte-level BPE attaches a space to the
word after it) -- so the output's tokens are exactly those the decoder generates after a
prompt that ends where the target starts (``cm3leon.decoding.tasks.prompt_from_task``
cuts its prompts with the same function).  :meth:`DocumentTokenizer.encode_example_with_targets`
carries the ranges into the Figure 9 example (they refer to the query document).

Decoding renders CM3 sentinels inside text as literal markers (``"<mask:0>"``) so that
a person reading a transformed example sees where spans went; run
:func:`cm3leon.core.objective.cm3_inverse` first to get the original document back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.interfaces import ImageTokenizer, TextTokenizer
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "DocumentTokenizer",
    "EncodedExample",
    "FittedExample",
    "document_ranges",
    "fit_example",
    "join_documents",
    "split_at_target",
]


class EncodedExample(NamedTuple):
    """One serialised training example (:meth:`DocumentTokenizer.encode_example_with_targets`)."""

    ids: np.ndarray  # (L,) int64
    weights: np.ndarray | None  # (L,) float32, or None (RA-CM3 weighting off)
    targets: np.ndarray  # (k, 2) int64 token ranges [start, end) of the query's task output
    parts: np.ndarray | None = None  # (D, 2) int64: each document's ranges (document_ranges)


def split_at_target(text: str, start: int, end: int) -> tuple[str, str, str]:
    """``(before, output, after)`` of ``text`` whose output is characters ``[start, end)``.

    A single space right before the output belongs to it: byte-level BPE attaches a space
    to the word after it (``" blue"`` is one token), so the output's tokens match the
    untokenised text and a prompt ending with ``before`` never ends in a lone space token.

    >>> split_at_target("The answer is blue.", 14, 18)
    ('The answer is', ' blue', '.')
    """
    if not 0 <= start < end <= len(text):
        raise ValueError(f"output range [{start}, {end}) is empty or outside the {len(text)} characters")
    if start > 0 and text[start - 1] == " ":
        start -= 1
    return text[:start], text[start:end], text[end:]


class DocumentTokenizer:
    """Serialise :class:`Document` objects to global token ids and back.

    Args:
        vocab: the unified vocabulary (``text_size`` must equal the text tokenizer's
            ``vocab_size``; ``image_size`` the image codebook size).
        text_tokenizer: any :class:`TextTokenizer` (BPE, :class:`ByteTokenizer`, ...).
        image_tokenizer: encodes pixels of image segments that carry no VQ codes; optional
            when every image carries precomputed codes.
        tokens_per_image: codes per image; defaults to ``image_tokenizer.num_tokens``.  When
            neither is known, any non-empty code sequence is accepted.
        query_loss_weight: RA-CM3's up-weighting of the query document's loss (``None`` =
            off, as in CM3Leon); see :meth:`encode_example_with_weights`.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        text_tokenizer: TextTokenizer,
        image_tokenizer: ImageTokenizer | None = None,
        *,
        tokens_per_image: int | None = None,
        query_loss_weight: float | None = None,
    ) -> None:
        if text_tokenizer.vocab_size != vocab.text_size:
            raise ValueError(
                f"text tokenizer vocab_size {text_tokenizer.vocab_size} != vocabulary "
                f"text_size {vocab.text_size}"
            )
        if image_tokenizer is not None:
            if image_tokenizer.codebook_size != vocab.image_size:
                raise ValueError(
                    f"image tokenizer codebook_size {image_tokenizer.codebook_size} != vocabulary "
                    f"image_size {vocab.image_size}"
                )
            if tokens_per_image is None:
                tokens_per_image = int(image_tokenizer.num_tokens)
            elif tokens_per_image != image_tokenizer.num_tokens:
                raise ValueError(
                    f"tokens_per_image {tokens_per_image} != image tokenizer num_tokens "
                    f"{image_tokenizer.num_tokens}"
                )
        if tokens_per_image is not None and tokens_per_image < 1:
            raise ValueError(f"tokens_per_image must be positive, got {tokens_per_image}")
        if query_loss_weight is not None and not query_loss_weight > 0:
            raise ValueError(f"query_loss_weight must be positive, got {query_loss_weight}")
        self.vocab = vocab
        self.text_tokenizer = text_tokenizer
        self.image_tokenizer = image_tokenizer
        self.tokens_per_image = tokens_per_image
        self.query_loss_weight = query_loss_weight

    # ------------------------------------------------------------------ encode
    def encode(self, doc: Document) -> np.ndarray:
        """Global ids ``(L,)`` int64 of one document (Figure 8; no leading ``<eos>``).

        Raises:
            ValueError: empty document, an image with the wrong number of codes or codes out
                of the codebook, or an image with pixels only and no image tokenizer; the
                message names the document id and the segment index.
        """
        return self.encode_with_targets(doc)[0]

    def encode_with_targets(self, doc: Document) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`encode`, plus the token ranges ``(k, 2)`` int64 of ``doc.targets``.

        Raises:
            ValueError: as :meth:`encode`; also malformed targets, or a target whose text
                encodes to no tokens (naming the document).
        """
        where = f"document {doc.id!r}"
        if doc.is_empty():
            raise ValueError(f"{where} is empty (no text and no image)")
        targets = doc.targets
        image_codes = self._image_codes(doc)
        vocab = self.vocab
        out: list[np.ndarray] = []
        spans: list[tuple[int, int]] = []
        length = 0
        last: str | None = None  # modality of the previous emitted segment
        for i, seg in enumerate(doc.segments):
            seg_targets = [t for t in targets if t.segment == i]
            if isinstance(seg, TextSegment):
                ranges = [t.char_range(seg) for t in seg_targets]
                pieces = self._text_pieces(seg, ranges, f"{where}, segment {i} (text)")
                if not pieces:
                    continue
                if last is not None and not _ends_with_break(out, vocab):
                    out.append(np.array([vocab.break_id], dtype=np.int64))
                    length += 1
                for ids, is_target in pieces:
                    if is_target:
                        spans.append((length, length + ids.size))
                    out.append(ids)
                    length += ids.size
                last = "text"
            else:
                if not _ends_with_break(out, vocab):
                    out.append(np.array([vocab.break_id], dtype=np.int64))
                    length += 1
                codes = vocab.image_to_global(image_codes[i], where=f"{where}, segment {i} (image)")
                if seg_targets:
                    spans.append((length, length + codes.size))
                out += [codes, np.array([vocab.break_id], dtype=np.int64)]
                length += codes.size + 1
                last = "image"
        if not out:
            raise ValueError(f"{where} is empty (its text encodes to no tokens)")
        return np.concatenate(out).astype(np.int64, copy=False), np.array(spans, dtype=np.int64).reshape(-1, 2)

    def _text_pieces(self, seg: TextSegment, ranges: list[Any], where: str) -> list[tuple[np.ndarray, bool]]:
        """Global ids of a text segment, split at its targets: ``[(ids, is_target), ...]``."""
        cuts: list[tuple[str, bool]] = []
        cursor = 0
        for start, end in sorted(ranges):
            begin = max(len(split_at_target(seg.text, start, end)[0]), cursor)
            cuts += [(seg.text[cursor:begin], False), (seg.text[begin:end], True)]
            cursor = end
        cuts.append((seg.text[cursor:], False))
        pieces = []
        for text, is_target in cuts:
            ids = self.vocab.text_to_global(self.text_tokenizer.encode(text), where=where) if text else None
            if ids is not None and ids.size:
                pieces.append((ids, is_target))
            elif is_target:
                raise ValueError(f"{where}: target {text!r} encodes to no tokens")
        return pieces

    def encode_example(self, query: Document, retrieved: Sequence[Document] = ()) -> np.ndarray:
        """``<eos>`` + retrieved documents + query document (Figure 9), int64 ``(L,)``."""
        return self.encode_example_with_weights(query, retrieved)[0]

    def encode_example_with_weights(
        self, query: Document, retrieved: Sequence[Document] = ()
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Like :meth:`encode_example`, plus per-token loss weights when enabled.

        Returns:
            ``(ids, weights)``: ``weights`` is ``None`` when ``query_loss_weight`` is off;
            otherwise float32 ``(L,)`` with ``query_loss_weight`` on the query document's
            tokens and 1.0 on ``<eos>``, the retrieved documents and the separators.
        """
        example = self.encode_example_with_targets(query, retrieved)
        return example.ids, example.weights

    def encode_example_with_targets(self, query: Document, retrieved: Sequence[Document] = ()) -> EncodedExample:
        """The Figure 9 example, its loss weights, and the query's target token ranges in it.

        Targets of retrieved documents are not carried (they are context, not the task).
        """
        parts = [self.encode(d) for d in retrieved]
        query_ids, targets = self.encode_with_targets(query)
        ids, starts, ranges = _join([*parts, query_ids], self.vocab)
        targets = targets + ranges[-1, 0]  # the query's own first token (a shared <break>, maybe)
        if self.query_loss_weight is None:
            return EncodedExample(ids, None, targets, ranges)
        weights = np.ones(ids.shape[0], dtype=np.float32)
        weights[starts[-1] :] = self.query_loss_weight
        return EncodedExample(ids, weights, targets, ranges)

    def with_codes(self, docs: Sequence[Document]) -> list[Document]:
        """Fill in the VQ codes of pixel-only images, encoding all of them in one batch.

        Pixels are kept next to the codes.  Used by ``cm3leon data prepare`` so that the image
        tokenizer sees batches instead of one image at a time; documents without such images
        are returned unchanged.
        """
        where = [(d, i) for d, doc in enumerate(docs) for i, seg in enumerate(doc.segments)
                 if isinstance(seg, ImageSegment) and seg.codes is None]
        if not where or self.image_tokenizer is None:
            return list(docs)
        images = [docs[d].segments[i].pil() for d, i in where]  # type: ignore[union-attr]
        codes = _to_numpy(self.image_tokenizer.encode(images))  # (B, N)
        segments = [list(doc.segments) for doc in docs]
        for (d, i), row in zip(where, codes, strict=True):
            old = segments[d][i]
            segments[d][i] = ImageSegment(image=old.image, codes=tuple(int(c) for c in row))  # type: ignore[union-attr]
        return [doc.replace(segments=tuple(segs)) for doc, segs in zip(docs, segments, strict=True)]

    def _image_codes(self, doc: Document) -> dict[int, np.ndarray]:
        """Codes of every image segment (precomputed or encoded in one batch), checked."""
        codes: dict[int, np.ndarray] = {}
        pending: list[int] = []
        for i, seg in enumerate(doc.segments):
            if isinstance(seg, ImageSegment):
                if seg.codes is not None:
                    codes[i] = np.asarray(seg.codes, dtype=np.int64)
                else:
                    pending.append(i)
        if pending:
            if self.image_tokenizer is None:
                raise ValueError(
                    f"document {doc.id!r}, segment {pending[0]}: image has pixels but no VQ codes "
                    "and no image tokenizer was given"
                )
            try:
                images = [doc.segments[i].pil() for i in pending]  # type: ignore[union-attr]
                array = _to_numpy(self.image_tokenizer.encode(images))  # (B, N)
            except Exception as err:
                raise ValueError(
                    f"document {doc.id!r}, segment(s) {pending}: image tokenizer failed: {err}"
                ) from err
            for row, i in zip(array, pending, strict=True):
                codes[i] = row.astype(np.int64).ravel()
        for i, c in codes.items():
            expected = self.tokens_per_image
            if c.size == 0 or (expected is not None and c.size != expected):
                want = expected if expected is not None else "at least 1"
                raise ValueError(
                    f"document {doc.id!r}, segment {i}: image has {c.size} codes, expected {want}"
                )
        return codes

    # ------------------------------------------------------------------ decode
    def decode(self, ids: Sequence[int] | np.ndarray, *, id: str = "") -> Document:
        """Inverse of :meth:`encode` (and of :meth:`encode_example`, as one document).

        A leading ``<eos>`` is skipped and a later ``<eos>`` ends the document; ``<pad>`` is
        ignored.  Text runs are decoded with the text tokenizer; image runs become
        :class:`ImageSegment` objects carrying codes (decode pixels with an image tokenizer).
        ``<mask:i>``, ``<infill:i>`` and ``<unk>`` are rendered as literal text markers.
        Document boundaries inside an example are not recoverable from tokens (the model
        sees one stream), so an example decodes to one document with all segments.

        Raises:
            ValueError: an id outside the vocabulary (naming the position).
        """
        vocab = self.vocab
        arr = vocab.check_ids(ids, where=f"decode {id!r}" if id else "decode")
        if arr.ndim != 1:
            raise ValueError(f"decode expects a 1-D id sequence, got shape {arr.shape}")
        if arr.size and arr[0] == vocab.eos_id:
            arr = arr[1:]
        segments: list[TextSegment | ImageSegment] = []
        run: list[int] = []
        kind: str | None = None  # "text" (text ids + markers) or "image"

        def flush() -> None:
            nonlocal run, kind
            if run and kind == "image":
                segments.append(ImageSegment(codes=tuple(c - vocab.image_offset for c in run)))
            elif run and kind == "text":
                segments.append(TextSegment(self._decode_text_run(run)))
            run, kind = [], None

        for token in arr.tolist():
            if token == vocab.eos_id:
                break
            if token == vocab.pad_id:
                continue
            if token == vocab.break_id:
                flush()
                continue
            token_kind = "image" if vocab.image_offset <= token else "text"
            if kind is not None and token_kind != kind:
                flush()
            kind = token_kind
            run.append(token)
        flush()
        return Document(tuple(segments), id=id)

    def _decode_text_run(self, run: list[int]) -> str:
        vocab = self.vocab
        names = vocab.special_tokens()
        pieces: list[str] = []
        text_ids: list[int] = []
        for token in run:
            if token >= vocab.text_offset:
                text_ids.append(token - vocab.text_offset)
                continue
            if text_ids:
                pieces.append(self.text_tokenizer.decode(text_ids))
                text_ids = []
            pieces.append(names[token])
        if text_ids:
            pieces.append(self.text_tokenizer.decode(text_ids))
        return "".join(pieces)


def join_documents(parts: Sequence[np.ndarray], vocab: Vocabulary) -> tuple[np.ndarray, list[int]]:
    """Concatenate serialised documents into one example (Figure 9).

    Args:
        parts: serialised documents (from :meth:`DocumentTokenizer.encode`), query last.
        vocab: the unified vocabulary.

    Returns:
        ``(ids, starts)``: ``<eos>`` + documents with exactly one ``<break>`` at each boundary
        (an image's own ``<break>`` when a neighbour is an image, else an inserted one);
        ``starts[i]`` is where part ``i`` begins (after that boundary ``<break>``).
    """
    ids, starts, _ = _join(parts, vocab)
    return ids, starts


def document_ranges(parts: Sequence[np.ndarray], vocab: Vocabulary) -> np.ndarray:
    """Where each serialised document lies in its :func:`join_documents` example, ``(D, 2)``.

    Range ``i`` is ``[start, end)`` with ``ids[start:end] == parts[i]`` exactly: a document
    that opens with an image starts at the ``<break>`` it shares with the document before
    (ranges then overlap by that one token).  Token shards store these ranges (``parts``
    column) so that :func:`fit_example` can drop retrieved documents later.
    """
    return _join(parts, vocab)[2]


def _join(parts: Sequence[np.ndarray], vocab: Vocabulary) -> tuple[np.ndarray, list[int], np.ndarray]:
    """``join_documents`` (ids, starts) plus :func:`document_ranges`."""
    if not parts:
        raise ValueError("join_documents needs at least one document")
    out: list[np.ndarray] = [np.array([vocab.eos_id], dtype=np.int64)]
    ranges = np.zeros((len(parts), 2), dtype=np.int64)
    starts: list[int] = []
    length = 1
    for i, part in enumerate(parts):
        part = np.asarray(part, dtype=np.int64)
        if part.size == 0:
            raise ValueError(f"join_documents: document {i} is empty")
        ends_with_break = out[-1][-1] == vocab.break_id
        start = length
        if i > 0 and ends_with_break and part[0] == vocab.break_id:
            start -= 1  # image after image: the closing <break> opens the next one
            part = part[1:]
        elif i > 0 and not ends_with_break and part[0] != vocab.break_id:
            out.append(np.array([vocab.break_id], dtype=np.int64))
            length += 1
            start += 1
        starts.append(length)
        out.append(part)
        length += part.size
        ranges[i] = (start, length)
    return np.concatenate(out), starts, ranges


class FittedExample(NamedTuple):
    """:func:`fit_example`'s result: the example, its weights and targets, what was dropped."""

    ids: np.ndarray  # (L',) int64, L' <= budget
    weights: np.ndarray | None  # (L',) float32
    targets: np.ndarray | None  # (k, 2) int64, shifted with the query
    dropped: int  # retrieved documents dropped


def fit_example(ids: np.ndarray, parts: np.ndarray, budget: int, vocab: Vocabulary, *,
                weights: np.ndarray | None = None, targets: np.ndarray | None = None,
                where: str = "example") -> FittedExample:
    """Drop retrieved documents, last first, until a Figure 9 example fits ``budget`` tokens.

    The query (the last document) is never cut: CM3 moves its masked spans to the end, so
    cutting an over-long example loses exactly the infill blocks.  The shortened example is
    what :func:`join_documents` gives for the kept documents; loss weights travel with
    their tokens (an inserted boundary ``<break>`` weighs 1.0, as in
    :meth:`DocumentTokenizer.encode_example_with_weights`) and the query's target ranges
    move with it.

    Args:
        ids: the example ``(L,)``.
        parts: its documents' ranges ``(D, 2)`` (:func:`document_ranges`), query last.
        budget: the most tokens the example may have.
        vocab: the unified vocabulary.
        weights / targets: per-token loss weights, the query's target ranges.
        where: prefix of error messages (the sample).

    Raises:
        ValueError: ranges that do not describe ``ids``, or a query that alone (with its
            ``<eos>``) is longer than ``budget``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    parts = np.asarray(parts, dtype=np.int64).reshape(-1, 2)
    if ids.size <= budget:
        return FittedExample(ids, weights, targets, 0)
    pieces = [ids[s:e] for s, e in parts]
    # The ranges describe the example exactly when its documents, re-joined, give it back.
    if not pieces or any(p.size == 0 for p in pieces) or not np.array_equal(_join(pieces, vocab)[0], ids):
        raise ValueError(f"{where}: document ranges {parts.tolist()} do not describe its {ids.size} tokens")
    keep = len(pieces) - 1
    while True:
        kept = [*range(keep), len(pieces) - 1]
        new_ids, _, new_ranges = _join([pieces[i] for i in kept], vocab)
        if new_ids.size <= budget or keep == 0:
            break
        keep -= 1
    if new_ids.size > budget:
        raise ValueError(
            f"{where}: the query document alone is {new_ids.size} tokens (with <eos>), more than the "
            f"budget of {budget}; raise seq_len or shorten the document"
        )
    new_weights = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float32)
        new_weights = np.ones(new_ids.size, dtype=np.float32)
        new_weights[0] = w[0]
        for (s, e), (ns, ne) in zip(parts[kept], new_ranges, strict=True):
            new_weights[ns:ne] = w[s:e]  # a shared <break> takes the later document's weight
    new_targets = None if targets is None else np.asarray(targets, np.int64) + (new_ranges[-1, 0] - parts[-1, 0])
    return FittedExample(new_ids, new_weights, new_targets, len(pieces) - len(kept))


def _ends_with_break(out: list[np.ndarray], vocab: Vocabulary) -> bool:
    return bool(out) and int(out[-1][-1]) == vocab.break_id


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"image tokenizer returned codes of shape {arr.shape}, expected (B, N)")
    return arr
