"""Serialisation of documents (Figure 8) and training examples (Figure 9); ByteTokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.interfaces import ImageTokenizer, TextTokenizer
from cm3leon.core.serialize import DocumentTokenizer, join_documents, split_at_target
from cm3leon.core.tokenization import TOKENIZER_MARKER, ByteTokenizer, resolve_tokenizer
from cm3leon.core.vocab import Vocabulary

N_CODES = 4
VOCAB = Vocabulary(text_size=256, image_size=16, num_sentinels=4)


class PatchMeanTokenizer:
    """Test double of an image tokenizer: code of a 2x2 patch = its mean grey level / 16."""

    codebook_size = 16
    num_tokens = N_CODES
    image_size = 4

    def encode(self, images):
        out = []
        for im in images:
            arr = np.asarray(im.convert("L").resize((4, 4)), dtype=np.int64)
            patches = arr.reshape(2, 2, 2, 2).mean(axis=(1, 3)).ravel()
            out.append((patches // 16).astype(np.int64))
        return torch.as_tensor(np.stack(out))

    def decode(self, codes):
        raise NotImplementedError

    def save(self, directory):
        raise NotImplementedError


def tok(**kwargs) -> DocumentTokenizer:
    return DocumentTokenizer(VOCAB, ByteTokenizer(), tokens_per_image=N_CODES, **kwargs)


def names(ids) -> list[str]:
    return [VOCAB.token_name(int(i)) for i in ids]


def text_names(text: str) -> list[str]:
    return [f"text:{b}" for b in text.encode()]


def img(*codes: int) -> ImageSegment:
    return ImageSegment(codes=codes)


# ------------------------------------------------------------- ByteTokenizer
@given(st.text())
def test_byte_tokenizer_round_trip(text: str) -> None:
    t = ByteTokenizer()
    ids = t.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert t.decode(ids) == text


def test_byte_tokenizer_protocol_save_load_and_registry(tmp_path) -> None:
    t = ByteTokenizer()
    assert isinstance(t, TextTokenizer)
    assert isinstance(PatchMeanTokenizer(), ImageTokenizer)
    t.save(tmp_path / "tok")
    assert (tmp_path / "tok" / TOKENIZER_MARKER).is_file()
    assert isinstance(ByteTokenizer.load(tmp_path / "tok"), ByteTokenizer)
    for value in ("bytes", f"bytes:{tmp_path / 'tok'}", str(tmp_path / "tok")):
        assert isinstance(resolve_tokenizer(value, "text"), ByteTokenizer)
    with pytest.raises(ValueError, match="is a text tokenizer, not image"):
        resolve_tokenizer("bytes", "image")
    with pytest.raises(ValueError, match="registered text tokenizers: .*bytes"):
        resolve_tokenizer(str(tmp_path / "nowhere"), "text")
    with pytest.raises(ValueError, match="out of range"):
        t.decode([300])


# ------------------------------------------------------------ Figure 8 layout
def test_caption_image_pair_is_figure_8() -> None:
    doc = Document.of("a cat", img(1, 2, 3, 4), id="pair")
    assert names(tok().encode(doc)) == [
        *text_names("a cat"), "<break>", "img:1", "img:2", "img:3", "img:4", "<break>"
    ]


def test_breaks_between_modalities_and_text_segments() -> None:
    doc = Document((img(0, 0, 0, 0), TextSegment("hi"), TextSegment("yo"), img(1, 1, 1, 1), img(2, 2, 2, 2)))
    assert names(tok().encode(doc)) == [
        "<break>", *["img:0"] * 4, "<break>", *text_names("hi"), "<break>", *text_names("yo"),
        "<break>", *["img:1"] * 4, "<break>", *["img:2"] * 4, "<break>",
    ]


def test_empty_text_segments_are_skipped() -> None:
    doc = Document((TextSegment(""), img(1, 2, 3, 4), TextSegment("")))
    assert names(tok().encode(doc)) == ["<break>", "img:1", "img:2", "img:3", "img:4", "<break>"]


# ------------------------------------------------------------ Figure 9 layout
def test_training_example_is_figure_9() -> None:
    r1 = Document.of("dog", img(5, 5, 5, 5), id="r1")
    r2 = Document.of(img(6, 6, 6, 6), "cow", id="r2")  # image first, text last
    q = Document.of("cat", img(7, 7, 7, 7), id="q")
    ids = tok().encode_example(q, [r1, r2])
    assert names(ids) == [
        "<eos>",
        *text_names("dog"), "<break>", *["img:5"] * 4, "<break>",
        *["img:6"] * 4, "<break>", *text_names("cow"),
        "<break>",  # inserted: r2 ends with text, q starts with text
        *text_names("cat"), "<break>", *["img:7"] * 4, "<break>",
    ]
    # No retrieval: the zero-shot text-to-image prompt is a prefix of the example (§2.2).
    alone = tok().encode_example(q)
    prompt = [VOCAB.eos_id, *VOCAB.text_to_global(list(b"cat")), VOCAB.break_id]
    assert alone[: len(prompt)].tolist() == prompt


def test_query_loss_weight_off_by_default_and_on_request() -> None:
    r = Document.of("dog", img(5, 5, 5, 5), id="r")
    q = Document.of("cat", img(7, 7, 7, 7), id="q")
    ids, weights = tok().encode_example_with_weights(q, [r])
    assert weights is None
    ids_w, weights = tok(query_loss_weight=2.5).encode_example_with_weights(q, [r])
    assert np.array_equal(ids, ids_w)
    start = 1 + len(tok().encode(r))  # <eos> + retrieved (ends with <break>: no separator)
    assert weights is not None and weights.dtype == np.float32 and weights.shape == ids.shape
    assert np.all(weights[:start] == 1.0) and np.all(weights[start:] == 2.5)
    assert np.array_equal(ids[start:], tok().encode(q))


def test_join_documents_reports_starts() -> None:
    a, b = np.array([20, 21]), np.array([22])
    ids, starts = join_documents([a, b], VOCAB)
    assert ids.tolist() == [VOCAB.eos_id, 20, 21, VOCAB.break_id, 22] and starts == [1, 4]


# ---------------------------------------------------------------- images
def test_pixels_are_encoded_with_the_image_tokenizer() -> None:
    from PIL import Image

    pixels = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    dt = DocumentTokenizer(VOCAB, ByteTokenizer(), PatchMeanTokenizer())
    ids = dt.encode(Document.of("x", pixels, id="px"))
    assert names(ids) == [*text_names("x"), "<break>", *[f"img:{200 // 16}"] * 4, "<break>"]


# ------------------------------------------------------------- round trip
segment = st.one_of(
    st.text(min_size=1, max_size=12).map(TextSegment),
    st.lists(st.integers(0, VOCAB.image_size - 1), min_size=N_CODES, max_size=N_CODES).map(
        lambda c: ImageSegment(codes=tuple(c))
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, min_size=1, max_size=6), st.lists(st.lists(segment, min_size=1, max_size=3), max_size=2))
def test_round_trip_and_break_rules(segments, retrieved) -> None:
    dt = tok()
    doc = Document(tuple(segments), id="d")
    # Whitespace-only text makes an empty document (an error with its own test).
    assume(not doc.is_empty() and not any(Document(tuple(r)).is_empty() for r in retrieved))
    ids = dt.encode(doc)
    assert dt.decode(ids, id="d") == doc
    example = dt.encode_example(doc, [Document(tuple(r)) for r in retrieved])
    assert example[0] == VOCAB.eos_id and (example[1:] != VOCAB.eos_id).all()
    breaks = example == VOCAB.break_id
    assert not (breaks[1:] & breaks[:-1]).any(), "two <break> in a row"
    # Every image is bracketed by <break>: image runs are delimited by breaks on both sides.
    image = np.asarray(VOCAB.is_image(example))
    starts = np.flatnonzero(image[1:] & ~image[:-1]) + 1
    ends = np.flatnonzero(image[:-1] & ~image[1:]) + 1
    assert (example[starts - 1] == VOCAB.break_id).all() and (example[ends] == VOCAB.break_id).all()
    # Decoding an example yields all segments of all documents, in order.
    merged = [s for r in retrieved for s in r] + list(segments)
    assert dt.decode(example).segments == tuple(merged)


def test_decode_renders_sentinels_and_stops_at_eos() -> None:
    ids = [VOCAB.eos_id, *VOCAB.text_to_global(list(b"a ")), VOCAB.mask_id(0), VOCAB.break_id,
           *VOCAB.image_to_global([1, 2, 3, 4]), VOCAB.break_id, VOCAB.infill_id(0),
           *VOCAB.text_to_global(list(b"cat")), VOCAB.eos_id, *VOCAB.text_to_global(list(b"zz"))]
    doc = tok().decode(ids)
    assert doc.segments == (TextSegment("a <mask:0>"), img(1, 2, 3, 4), TextSegment("<infill:0>cat"))


# --------------------------------------------------------------- bad input
def test_empty_document_raises_naming_id() -> None:
    with pytest.raises(ValueError, match="document 'nothing' is empty"):
        tok().encode(Document((), id="nothing"))
    with pytest.raises(ValueError, match="document 'blank' is empty"):
        tok().encode(Document.of("   ", id="blank"))


def test_wrong_number_of_codes_names_document_and_segment() -> None:
    doc = Document.of("cat", img(1, 2, 3), id="short")
    with pytest.raises(ValueError, match=r"document 'short', segment 1: image has 3 codes, expected 4"):
        tok().encode(doc)


def test_codes_out_of_range_and_missing_tokenizer() -> None:
    with pytest.raises(ValueError, match=r"document 'big', segment 0 \(image\).*out of range"):
        tok().encode(Document.of(img(1, 2, 3, 99), id="big"))
    pixels = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="document 'px', segment 0: .*no image tokenizer"):
        tok().encode(Document.of(pixels, id="px"))


def test_decode_rejects_out_of_range_ids_and_mismatched_tokenizers() -> None:
    with pytest.raises(ValueError, match=f"token id {VOCAB.size} at position 1 out of range"):
        tok().decode([VOCAB.eos_id, VOCAB.size])
    with pytest.raises(ValueError, match="text_size"):
        DocumentTokenizer(Vocabulary(100, 16), ByteTokenizer())
    with pytest.raises(ValueError, match="num_tokens"):
        DocumentTokenizer(VOCAB, ByteTokenizer(), PatchMeanTokenizer(), tokens_per_image=9)


# ------------------------------------------------------------------- targets
def test_split_at_target_gives_the_space_to_the_output() -> None:
    text = "The answer is blue."
    assert split_at_target(text, 14, 18) == ("The answer is", " blue", ".")
    assert split_at_target("blue", 0, 4) == ("", "blue", "")
    assert split_at_target("a\nblue", 2, 6) == ("a\n", "blue", "")  # only a space moves
    with pytest.raises(ValueError, match="empty or outside"):
        split_at_target(text, 5, 5)


def test_text_target_tokens_are_the_field_tokenised_alone() -> None:
    text = "Q: what colour? The answer is blue."
    a = text.index("blue")
    doc = Document.of(text, img(1, 2, 3, 4), id="q", meta={"targets": [{"segment": 0, "start": a, "end": a + 4},
                                                                         {"segment": 1}]})  # fmt: skip
    ids, targets = tok().encode_with_targets(doc)
    assert np.array_equal(ids, tok().encode(doc))
    (s0, e0), (s1, e1) = targets.tolist()
    assert names(ids[s0:e0]) == text_names(" blue")
    assert names(ids[s1 - 1 : e1 + 1]) == ["<break>", "img:1", "img:2", "img:3", "img:4", "<break>"]
    assert tok().decode(ids).texts == [text]  # the pieces join back to the segment


class WordTokenizer:
    """A text tokenizer whose tokens depend on context: one id per whitespace-led word."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        import re

        return [sum(w.encode()) % 256 for w in re.findall(r" ?\S+|\s+", text)]

    def decode(self, ids):
        raise NotImplementedError


def test_target_pieces_are_tokenised_separately_at_its_boundaries() -> None:
    """'is blue.' as one string gives ' blue.' one token; the target must be ' blue' alone."""
    doc = Document.of("is blue.", id="w", meta={"targets": [{"segment": 0, "start": 3, "end": 7}]})
    dt = DocumentTokenizer(VOCAB, WordTokenizer())
    ids, targets = dt.encode_with_targets(doc)
    word = WordTokenizer().encode
    assert (ids - VOCAB.text_offset).tolist() == word("is") + word(" blue") + word(".")
    assert targets.tolist() == [[1, 2]]


def test_example_targets_follow_the_query_into_the_figure_9_layout() -> None:
    retrieved = [Document.of("r", img(1, 1, 1, 1))]
    for query in (Document.of(img(5, 6, 7, 8), "cap", meta={"targets": [{"segment": 1}]}),
                  Document.of("cap", img(5, 6, 7, 8), meta={"targets": [{"segment": 0}]})):  # fmt: skip
        ex = tok(query_loss_weight=2.0).encode_example_with_targets(query, retrieved)
        assert np.array_equal(ex.ids, tok().encode_example(query, retrieved))
        (s, e), = ex.targets.tolist()
        assert names(ex.ids[s:e]) == text_names("cap") and ex.weights[s] == 2.0
    ex = tok().encode_example_with_targets(Document.of("no targets", img(1, 2, 3, 4)))
    assert ex.targets.shape == (0, 2) and ex.weights is None


def test_malformed_targets_name_the_document() -> None:
    cases = [
        ({"segment": 5}, "segment 5 of 2 segments"),
        ({"segment": 1, "start": 0, "end": 2}, "is an image"),
        ({"segment": 0, "start": 2, "end": 99}, "outside"),
        ({"segment": "0"}, "must be integers"),
        ({"segment": 0, "start": 1}, "'start' with 'end'"),
    ]
    for target, message in cases:
        doc = Document.of("caption", img(1, 2, 3, 4), id="bad", meta={"targets": [target]})
        with pytest.raises(ValueError, match=f"document 'bad'.*{message}"):
            tok().encode(doc)
    overlap = Document.of("caption", id="o", meta={"targets": [{"segment": 0, "start": 0, "end": 4},
                                                              {"segment": 0, "start": 2, "end": 6}]})  # fmt: skip
    with pytest.raises(ValueError, match="overlap"):
        _ = overlap.targets
    assert Document.from_json(overlap.to_json()).meta["targets"] == overlap.meta["targets"]  # JSON round trip
