"""The §2.1 relevance rule on a bank built by ``cm3leon retrieval build``.

"We only use retrieved documents with relevance score <= 0.9": relevance is 1.0 for the
query itself, so the rule skips the query's own bank entry and its (near) copies, while
ordinary neighbours pass.  The expected numbers are computed here from the encoder alone
(document vectors, part vectors), independently of the retrieval code under test.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.documents import Document
from cm3leon.core.shards import DocumentShardWriter
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.dense import DenseSearcher, clip_retriever
from cm3leon.retrieval.encoder import combine_parts
from cm3leon.retrieval.retriever import StrategyRetriever
from cm3leon.retrieval.strategy import RetrievalStrategy
from tests.retrieval.synthetic import all_combinations

QUERY = "red-square-left"
COPIES = ("copy-exact", "copy-near")


def resaved(pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """The same picture slightly perturbed and re-saved as JPEG (a re-encoded upload)."""
    noise = np.random.default_rng(seed).integers(-6, 7, pixels.shape)
    noisy = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="JPEG", quality=85)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def bank(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path
) -> tuple[Path, list[Document]]:
    """36 distinct caption-image pairs plus an exact and a near copy of one of them."""
    root = tmp_path_factory.mktemp("relevance")
    docs = all_combinations()
    query = next(d for d in docs if d.id == QUERY)
    pixels = np.asarray(query.images[0].pil())
    docs += [
        Document.of(query.text, pixels.copy(), id="copy-exact"),
        Document.of(query.text, resaved(pixels), id="copy-near"),
    ]
    with DocumentShardWriter(root / "docs") as writer:
        for d in docs:
            writer.write(d)
    cfg = root / "bank.yaml"
    cfg.write_text(
        f"# cm3leon retrieval build {cfg}\n"
        f"bank:\n  output: {root / 'bank'}\n  data: {{shards: [{root / 'docs'}]}}\n  encoder: {tiny_encoder_dir}\n"
    )
    result = CliRunner().invoke(
        cli, ["retrieval", "build", str(cfg), "--no-progress"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return root / "bank", docs


def reference(
    encoder, query: Document, docs: list[Document]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Relevance (cosine of whole-document vectors) and per-part search scores, by document id."""
    bank_vectors = encoder.encode_documents(docs).numpy()  # (N, D)
    query_vector = encoder.encode_documents([query]).numpy()[0]  # (D,)
    text, image, has_text, has_image = encoder.encode_parts([query])
    parts = {"text": text[0].numpy(), "image": image[0].numpy()}
    present = {"text": bool(has_text[0]), "image": bool(has_image[0])}
    relevance = dict(zip([d.id for d in docs], (bank_vectors @ query_vector).tolist(), strict=True))
    by_part = {
        m: dict(zip([d.id for d in docs], (bank_vectors @ v).tolist(), strict=True))
        for m, v in parts.items()
        if present[m]
    }
    return relevance, by_part


def expected_hits(
    relevance, by_part, quotas: dict[str, int], *, exclude: str, max_score: float = 0.9
):
    """The rule applied by hand: per part, best first, skip relevance > max_score and taken ids."""
    taken = {exclude}
    picked: dict[str, list[str]] = {}
    for m, quota in quotas.items():
        picked[m] = []
        for doc_id in sorted(by_part[m], key=lambda i: -by_part[m][i]):
            if len(picked[m]) == quota:
                break
            if relevance[doc_id] > max_score or doc_id in taken:
                continue
            taken.add(doc_id)
            picked[m].append(doc_id)
    order = []
    for i in range(max(len(p) for p in picked.values())):
        order += [(p[i], m) for m, p in picked.items() if i < len(p)]
    return order


def test_the_query_and_its_copies_have_relevance_one(bank, tiny_encoder) -> None:
    path, docs = bank
    query = next(d for d in docs if d.id == QUERY)
    relevance, by_part = reference(tiny_encoder, query, docs)
    # The issue: searched by one part, the query's own entry scores well below 0.9 ...
    assert max(by_part["text"][QUERY], by_part["image"][QUERY]) < 0.9
    # ... but as a whole document it is the query itself: relevance 1.
    assert relevance[QUERY] == pytest.approx(1.0, abs=1e-5)
    retriever = clip_retriever(
        path, max_score=2.0, duplicate_threshold=2.0
    )  # every candidate passes
    hits = retriever.retrieve_hits([query.replace(id="")], k=len(docs))[0]
    got = {h.id: h.relevance for h in hits}
    for doc_id in (QUERY, *COPIES):
        assert got[doc_id] > 0.99
    assert got[QUERY] == pytest.approx(1.0, abs=1e-4)
    for doc_id, value in got.items():
        assert value == pytest.approx(relevance[doc_id], abs=1e-4)
    # Hit.score stays the search score of the part that found the document.
    for h in hits:
        assert h.score == pytest.approx(by_part[h.modality][h.id], abs=1e-4)


def test_copies_are_skipped_by_the_relevance_rule_and_neighbours_pass(bank, tiny_encoder) -> None:
    path, docs = bank
    query = next(d for d in docs if d.id == QUERY)
    relevance, by_part = reference(tiny_encoder, query, docs)
    # The near-duplicate rule is switched off: only max_score can skip the copies.
    retriever = clip_retriever(path, duplicate_threshold=2.0, max_score_at="always")
    hits = retriever.retrieve_hits([query], k=4)[0]  # pretraining: the query is in the bank
    ids = [h.id for h in hits]
    assert not set(ids) & {QUERY, *COPIES}
    assert len(hits) == 4 and all(h.relevance <= 0.9 for h in hits)
    expected = expected_hits(relevance, by_part, {"text": 2, "image": 2}, exclude=QUERY)
    assert [(h.id, h.modality) for h in hits] == expected
    # The ordinary neighbours that pass include documents that are close to the query.
    assert max(relevance[i] for i in ids) > 0.8
    # With the defaults (the near-duplicate rule on as well) the copies stay out too.
    default = clip_retriever(path, max_score_at="always").retrieve_hits([query], k=4)[0]
    assert len(default) == 4 and not {h.id for h in default} & {QUERY, *COPIES}
    # A copy that arrives as a query without an id is just as "the query itself".
    anonymous = retriever.retrieve_hits([query.replace(id="")], k=4)[0]
    assert not {h.id for h in anonymous} & {QUERY, *COPIES}


def test_a_text_prompt_retrieves_the_documents_carrying_its_caption(bank, tiny_encoder) -> None:
    path, docs = bank
    caption = next(d for d in docs if d.id == QUERY).text
    prompt = Document.of(caption)  # text-to-image at inference: no image, not in the bank
    relevance, by_part = reference(tiny_encoder, prompt, docs)
    # A caption-image document is not the text-only prompt itself: relevance < 1.
    assert relevance[QUERY] < 0.9
    retriever = clip_retriever(path, duplicate_threshold=2.0, max_score_at="always")
    hits = retriever.retrieve_hits([prompt], k=2)[0]
    assert [h.modality for h in hits] == ["text", "text"]  # the image quota goes to the text part
    assert {h.id for h in hits} <= {QUERY, *COPIES}
    for h in hits:
        assert h.relevance == pytest.approx(relevance[h.id], abs=1e-4)
        assert h.relevance == pytest.approx(h.score, abs=1e-5)  # a text-only query is its text part


class PartTable:
    """An encoder stand-in mapping each caption / image colour to a chosen unit part vector."""

    def __init__(self, text: dict[str, np.ndarray], image: dict[int, np.ndarray]) -> None:
        self.text, self.image = text, image
        self.dim = len(next(iter(text.values())))

    def encode_parts(self, docs, *, code_decoder=None):
        n = len(docs)
        text, image = torch.zeros(n, self.dim), torch.zeros(n, self.dim)
        has_text = torch.tensor([bool(d.text) for d in docs])
        has_image = torch.tensor([bool(d.images) for d in docs])
        for i, d in enumerate(docs):
            if d.text:
                text[i] = torch.from_numpy(self.text[d.text])
            if d.images:
                image[i] = torch.from_numpy(self.image[int(np.asarray(d.images[0].pil())[0, 0, 0])])
        return text, image, has_text, has_image

    def encode_documents(self, docs, *, code_decoder=None):
        return combine_parts(*self.encode_parts(docs))

    def tokenize(self, texts):
        return list(texts)

    def encode_tokens(self, texts):
        return torch.stack([torch.from_numpy(self.text[t]) for t in texts])


def test_sharing_one_part_with_the_query_is_not_being_the_query() -> None:
    """Same caption + another image, or same image + another caption: ordinary neighbours.

    Normalising a part's score by the query's own score for that part would give both
    about 1 (too similar); the whole-document relevance gives them about (1 + 0) / 2.
    """
    e = np.eye(4, dtype=np.float32)
    table = PartTable(
        {"cap a": e[0], "cap b": e[1]}, {10: e[2], 20: e[3], 30: (e[2] + e[3]) / np.sqrt(2)}
    )

    def picture(value: int) -> np.ndarray:
        return np.full((4, 4, 3), value, dtype=np.uint8)

    docs = [
        Document.of("cap a", picture(10), id="query"),
        Document.of("cap a", picture(20), id="same-caption"),
        Document.of("cap b", picture(10), id="same-image"),
        Document.of("cap b", picture(30), id="other"),
    ]
    searcher = DenseSearcher(MemoryBank.build(table.encode_documents(docs).numpy(), docs), table)
    retriever = StrategyRetriever(searcher, RetrievalStrategy(num_by_text=1, num_by_image=1))
    hits = retriever.retrieve_hits([docs[0]], k=2)[0]
    assert [(h.id, h.modality) for h in hits] == [("same-caption", "text"), ("same-image", "image")]
    assert [h.relevance for h in hits] == pytest.approx([0.5, 0.5])
    assert [h.score for h in hits] == pytest.approx([np.sqrt(0.5)] * 2)
