"""The one-API generator: every task, retrieval, CLIP re-ranking, exports, plugins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.core.documents import Document
from cm3leon.core.exported import save_exported
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.plugin_manager import registries_with
from cm3leon.core.registry import DecodingSpec, FeatureExtractorSpec
from cm3leon.decoding.generator import CM3LeonGenerator
from cm3leon.decoding.options import GenerationOptions
from cm3leon.decoding.prompts import Prompt
from cm3leon.decoding.rerank import ClipReranker, load_reranker
from tests.decoding._helpers import (
    ColourEncoder,
    FakeImageTokenizer,
    ListRetriever,
    colour_image,
    random_model,
    setup,
)

VOCAB, DT = setup()
MODEL = random_model(VOCAB, dtype=torch.float32, seed=1)
RED, BLUE = colour_image((255, 0, 0)), colour_image((0, 0, 255))
HOT = GenerationOptions.from_dict(
    {"image": {"pipelines": [{"guidance": {"name": "cfg", "options": {"scale": 1.0}},
                              "processors": [{"name": "temperature", "options": {"temperature": 3.0}}]}]}}
)  # fmt: skip


def test_every_task_through_one_call_in_input_order() -> None:
    gen = CM3LeonGenerator(MODEL, DT)
    prompts = [
        Prompt.text_to_image("a red cube", id="t2i"),
        Prompt.image_to_text(RED, prefix="Image of ", suffix=":", id="cap", max_new_tokens=6),
        Prompt.text_infill("a ", " cube", id="fill", max_new_tokens=4),
        Prompt.image_infill(BLUE, 3, 7, caption="blue", id="patch"),
        Prompt.edit(RED, "make it blue", id="edit"),
        "a blue ball",
    ]
    results = gen.generate(prompts, num_candidates=2, seed=0)
    assert [r.prompt.id for r in results] == ["t2i", "cap", "fill", "patch", "edit", "5"]
    for r in results:
        assert len(r.candidates) == 2 and r.streams["cond"][0] == VOCAB.eos_id
        for c in r.candidates:
            if r.prompt.output == "image":
                assert c.codes.shape == (9,) and c.image.size == (12, 12) and c.text is None
            else:
                assert isinstance(c.text, str) and len(c.tokens) <= r.prompt.max_new_tokens
                assert c.stop in ("length", "<eos>", "<break>") or c.stop.startswith("<infill:")
    source = DT.image_tokenizer.encode([BLUE])[0].numpy()
    for c in results[3].candidates:  # image infilling keeps everything outside [3, 7)
        assert np.array_equal(c.codes[:3], source[:3]) and np.array_equal(c.codes[7:], source[7:])
        assert [t - VOCAB.image_offset for t in c.tokens] == c.codes[3:7].tolist()
    assert set(results[0].streams) == {"cond", "uncond"}  # CFG: two streams in one batch


def test_seed_makes_generation_deterministic() -> None:
    gen = CM3LeonGenerator(MODEL, DT)
    run = lambda seed: [c.codes.tolist() for c in gen.generate(["a red cube"], HOT, num_candidates=4, seed=seed)[0].candidates]  # noqa: E731
    assert run(3) == run(3) and run(3) != run(4)


def test_clip_reranking_puts_the_best_candidate_first() -> None:
    encoder = ColourEncoder()
    gen = CM3LeonGenerator(MODEL, DT, reranker=ClipReranker(encoder))
    (result,) = gen.generate([Prompt.text_to_image("something red", id="r")], HOT, num_candidates=8, seed=1)
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    direct = (encoder.encode_image([result.best.image]) @ encoder.encode_text(["something red"]).T).item()
    assert result.best.score == pytest.approx(direct)
    assert sorted(c.index for c in result.candidates) == list(range(8))
    text_opts = GenerationOptions.from_dict({"text": {"pipelines": [{"selector": {"name": "sample"}}]}})
    (cap,) = gen.generate([Prompt.image_to_text(BLUE, id="c", max_new_tokens=8)], text_opts, num_candidates=4)
    assert [c.score for c in cap.candidates] == sorted((c.score for c in cap.candidates), reverse=True)


def test_reranker_from_the_registry_with_a_stand_in_encoder() -> None:
    class Plugin:
        @hookimpl
        def cm3leon_register_feature_extractors(self):
            return [FeatureExtractorSpec("colour-clip", ColourEncoder, "stand-in CLIP")]

    reranker = load_reranker("colour-clip", registries=registries_with(Plugin()))
    assert reranker.order(reranker.score_images("blue", [RED, BLUE])) == [1, 0]
    with pytest.raises(TypeError, match="needs a DocumentEncoder"):
        ClipReranker(object())


def test_retrieved_documents_are_prepended() -> None:
    bank = [Document.of("a red thing", RED, id="r1"), Document.of("a blue thing", BLUE, id="r2")]
    retriever = ListRetriever(bank)
    gen = CM3LeonGenerator(MODEL, DT, retriever=retriever)
    for k in (0, 1, 2):
        (res,) = gen.generate([Prompt.text_to_image("a red cube", id="q")], num_candidates=1, k=k)
        assert [d.id for d in res.retrieved] == [d.id for d in bank[:k]]
        expected = DT.encode_example(Document.of("a red cube"), bank[:k]).tolist() + [VOCAB.break_id]
        assert res.streams["cond"] == expected
    assert retriever.queries[-1].text == "a red cube"
    with pytest.raises(ValueError, match=r"prompt 'q': the retriever returned 2 document\(s\) but k=3"):
        gen.generate([Prompt.text_to_image("a red cube", id="q")], k=3)
    with pytest.raises(ValueError, match="has no retriever"):
        CM3LeonGenerator(MODEL, DT).generate(["x"], k=1)
    # a prompt's own retrieved documents win over the retriever
    (own,) = gen.generate([Prompt.text_to_image("x", retrieved=(bank[1],))], k=2)
    assert [d.id for d in own.retrieved] == ["r2"]


def test_k_larger_than_a_registered_retrievers_bank() -> None:
    from cm3leon.core.plugin_manager import get_registries

    if "bm25" not in get_registries().retrievers:
        pytest.skip("cm3leon-retrieval is not installed")
    bank = [Document.of("a red cube", id="d1"), Document.of("a blue ball", id="d2"), Document.of("green tree", id="d3")]
    retriever = get_registries().retrievers.build("bm25", documents=bank)  # matching documents only
    gen = CM3LeonGenerator(MODEL, DT, retriever=retriever)
    (res,) = gen.generate([Prompt.text_to_image("red cube", id="q")], k=1)
    assert [d.id for d in res.retrieved] == ["d1"]
    with pytest.raises(ValueError, match=r"prompt 'q': the retriever returned \d document\(s\) but k=3"):
        gen.generate([Prompt.text_to_image("red cube", id="q")], k=3)


def test_cdk_and_top_p_candidates_combined() -> None:
    opts = GenerationOptions.from_dict({"image": {"pipelines": [
        {"guidance": {"name": "cfg"}, "processors": [{"name": "top_p", "options": {"p": 0.9}}]},
        {"guidance": {"name": "cdk", "options": {"k": 5, "alpha": 0.5}}},
    ]}})  # fmt: skip
    (res,) = CM3LeonGenerator(MODEL, DT).generate(["a red cube"], opts, num_candidates=8)
    names = [c.pipeline for c in sorted(res.candidates, key=lambda c: c.index)]
    assert names == ["cfg+top_p/sample"] * 4 + ["cdk/sample"] * 4
    with pytest.raises(ValueError, match="2 pipelines but num_candidates=1"):
        CM3LeonGenerator(MODEL, DT).generate(["a red cube"], opts, num_candidates=1)


def test_a_third_party_processor_is_used_by_name() -> None:
    class NoRepeat:
        """Forbid the previous token (a plugin's processor)."""

        def __init__(self, options=None) -> None:
            pass

        def __call__(self, logits, state):
            if state.step == 0:
                return logits
            prev = state.generated[:, -1:] - state.offset  # (B, 1) local columns
            return logits.scatter(-1, prev, float("-inf"))

    class Plugin:
        @hookimpl
        def cm3leon_register_decoding(self):
            return [DecodingSpec("no_repeat", NoRepeat, "no immediate repeats", kind="processor")]

    opts = GenerationOptions.from_dict({"image": {"pipelines": [
        {"guidance": {"name": "cfg"}, "processors": [{"name": "no_repeat"}], "selector": {"name": "greedy"}}]}})  # fmt: skip
    gen = CM3LeonGenerator(MODEL, DT, registries=registries_with(Plugin()))
    (res,) = gen.generate(["a red cube"], opts)
    tokens = res.best.tokens
    assert all(a != b for a, b in zip(tokens, tokens[1:], strict=False))


def test_load_from_a_trainer_export(tmp_path) -> None:
    save_exported(MODEL, tmp_path / "export", vocab=VOCAB)
    gen = CM3LeonGenerator.load(tmp_path / "export", text_tokenizer="bytes", image_tokenizer=FakeImageTokenizer())
    ours = gen.generate(["a red cube"], HOT, seed=5)[0].best.codes
    same = CM3LeonGenerator(MODEL, DT).generate(["a red cube"], HOT, seed=5)[0].best.codes
    assert np.array_equal(ours, same)
    with pytest.raises(ValueError, match="tokenizers do not match the model's vocabulary"):
        CM3LeonGenerator.load(tmp_path / "export", text_tokenizer="bytes", image_tokenizer=_Codebook(32))


class _Codebook(FakeImageTokenizer):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.codebook_size = size


def test_bad_arguments() -> None:
    gen = CM3LeonGenerator(MODEL, DT)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        gen.generate(["x"], batch_size=0)
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        gen.generate(["x"], k=-1)
    with pytest.raises(ValueError, match=r"prompt 'long' \(cond stream\) is too long"):
        gen.generate([Prompt.text_to_image("x" * 300, id="long")])
    with pytest.raises(ValueError, match="model vocab_size"):
        CM3LeonGenerator(_wrong_model(), DT)


def _wrong_model():
    from cm3leon.core.model import cm3leon_tiny

    return cm3leon_tiny(vocab_size=VOCAB.size + 1)
