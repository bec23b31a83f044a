"""One API for every task: prompts in, ranked candidates out.

::

    gen = CM3LeonGenerator.load("runs/export", text_tokenizer="bpe:runs/tok/text",
                                image_tokenizer="vqgan:runs/tok/image")
    results = gen.generate([Prompt.text_to_image("a red cube", id="cube")],
                           num_candidates=8, seed=0)
    results[0].best.image.save("cube.png")

Steps of :meth:`CM3LeonGenerator.generate` (the decoding arrow of the data flow):
retrieve (``k`` documents per prompt, optional) -> VQ-encode prompt images -> build the
token streams each pipeline needs -> decode batches of prompts that share a span shape
(:func:`cm3leon.decoding.engine.decode`) -> decode tokens to images / text -> CLIP
re-rank (optional) -> results in input order, best candidate first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cm3leon.core.documents import Document
from cm3leon.core.interfaces import Retriever
from cm3leon.core.serialize import DocumentTokenizer
from cm3leon.decoding.engine import DecodeResult, decode
from cm3leon.decoding.options import GenerationOptions
from cm3leon.decoding.pipeline import Pipeline, build_pipelines, stream_union
from cm3leon.decoding.prompts import EncodedPrompt, Prompt, PromptEncoder
from cm3leon.decoding.rerank import ClipReranker

__all__ = ["CM3LeonGenerator", "Candidate", "GenerationResult"]


@dataclass
class Candidate:
    """One generated output.

    Attributes:
        tokens: the span's global ids (an image: its codes as global ids).
        text: decoded text (text outputs).
        codes: the whole image's VQ codes (image outputs; infilled ranges merged in).
        image: decoded ``PIL.Image`` (image outputs, when an image tokenizer is known).
        score: CLIP similarity with the prompt (when re-ranked).
        pipeline: name of the strategy that produced it.
        index: candidate number before re-ranking.
        stop: what ended a text span (``"<eos>"``, ``"<break>"``, ``"<infill:1>"``, ``"length"``).
    """

    tokens: list[int]
    text: str | None = None
    codes: np.ndarray | None = None
    image: Any = None
    score: float | None = None
    pipeline: str = ""
    index: int = 0
    stop: str = ""


@dataclass
class GenerationResult:
    """All candidates of one prompt, best first when re-ranked."""

    prompt: Prompt
    candidates: list[Candidate]
    streams: dict[str, list[int]] = field(default_factory=dict)
    retrieved: list[Document] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


class CM3LeonGenerator:
    """Generate with a CM3Leon transformer.

    Args:
        model: a core transformer (eval mode is set).
        tokenizer: the :class:`DocumentTokenizer` of the model's vocabulary.
        retriever: any :class:`Retriever` for ``k > 0``.
        reranker: a :class:`ClipReranker` to order candidates.
        registries: where strategy names are looked up (default: the installed plugins).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: DocumentTokenizer,
        *,
        retriever: Retriever | None = None,
        reranker: ClipReranker | None = None,
        registries: Any = None,
    ) -> None:
        vocab_size = model.config.vocab_size
        if vocab_size != tokenizer.vocab.size:
            raise ValueError(
                f"model vocab_size {vocab_size} != tokenizer vocabulary size {tokenizer.vocab.size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoder = PromptEncoder(tokenizer)
        self.retriever = retriever
        self.reranker = reranker
        self.registries = registries

    @classmethod
    def load(
        cls,
        export: str | Path,
        *,
        text_tokenizer: str | Any,
        image_tokenizer: str | Any | None = None,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> CM3LeonGenerator:
        """A generator from a trainer export and tokenizers (``NAME``, ``NAME:DIR`` or ``DIR``).

        Raises:
            ValueError: the export is incomplete/corrupt, or the tokenizers do not match
                the vocabulary recorded in the export.
        """
        from cm3leon.core.exported import load_exported
        from cm3leon.core.tokenization import build_document_tokenizer, resolve_tokenizer

        exported = load_exported(export, device=device, dtype=dtype)
        text = resolve_tokenizer(text_tokenizer, "text") if isinstance(text_tokenizer, str) else text_tokenizer
        image = (
            resolve_tokenizer(image_tokenizer, "image") if isinstance(image_tokenizer, str) else image_tokenizer
        )
        try:
            tokenizer = build_document_tokenizer(text, image, vocab=exported.vocab)
        except ValueError as err:
            raise ValueError(f"{export}: tokenizers do not match the model's vocabulary: {err}") from None
        return cls(exported.model, tokenizer, **kwargs)

    # ------------------------------------------------------------------ api
    def generate(
        self,
        prompts: Sequence[Prompt | str],
        options: GenerationOptions | None = None,
        *,
        num_candidates: int = 1,
        k: int = 0,
        seed: int = 0,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[GenerationResult]:
        """Generate ``num_candidates`` outputs for every prompt (a string = text-to-image).

        Args:
            prompts: :class:`Prompt` objects (or captions).
            options: strategies per modality (default :class:`GenerationOptions`).
            num_candidates: ``N`` per prompt (Table 1: 8, then CLIP keeps the best).
            k: retrieved documents per prompt (0, 1, 2, ...), for prompts whose
                ``retrieved`` is ``None``; needs ``retriever``.
            seed: seeds the ``torch.Generator`` of sampling selectors.
            batch_size: prompts decoded together (each brings ``S x N`` rows).
            progress: show a progress bar.

        Raises:
            ValueError: bad arguments, a prompt too long for the context, a retriever
                that returns fewer than ``k`` documents; DecodingOptionsError: bad options.
        """
        options = options or GenerationOptions()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
        items = [p if isinstance(p, Prompt) else Prompt.text_to_image(p, id=str(i)) for i, p in enumerate(prompts)]
        items = [p if p.id else _with_id(p, str(i)) for i, p in enumerate(items)]
        pipelines = {
            kind: build_pipelines(stage.pipelines, where=f"decoding.{kind}.pipelines", registries=self.registries)
            for kind, stage in (("image", options.image), ("text", options.text))
        }
        for kind, pipes in pipelines.items():
            split = [p.weight for p in pipes]
            if len(split) > num_candidates and any(p.output == kind for p in items):
                raise ValueError(
                    f"decoding.{kind}.pipelines has {len(split)} pipelines but num_candidates="
                    f"{num_candidates}: each pipeline needs at least one candidate"
                )
        items = self._retrieve(items, k)
        items = self.encoder.with_codes(items)
        generator = torch.Generator(device=next(self.model.parameters()).device).manual_seed(int(seed))
        encoded = [
            self.encoder.encode(
                p, stream_union(pipelines[p.output]), max_new_text_tokens=options.text.max_new_tokens,
                retrieved_in_uncond=options.retrieved_in_uncond,
            )
            for p in items
        ]  # fmt: skip
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, e in enumerate(encoded):
            shape = (e.span.kind, e.span.max_new_tokens, e.span.exact, e.span.suffix)  # slices do not hash
            groups[(*shape, tuple(e.streams))].append(i)
        results: list[GenerationResult | None] = [None] * len(items)
        batches = [idx[j: j + batch_size] for idx in groups.values() for j in range(0, len(idx), batch_size)]
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
            kind = items[batch[0]].output
            out = self._decode(batch, items, encoded, pipelines[kind], num_candidates, generator)
            for j, i in enumerate(batch):
                results[i] = self._result(items[i], encoded[i], out, j, pipelines[kind])
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------- internals
    def _retrieve(self, prompts: list[Prompt], k: int) -> list[Prompt]:
        todo = [i for i, p in enumerate(prompts) if p.retrieved is None]
        if k == 0 or not todo:
            return [p if p.retrieved is not None else p.with_retrieved(()) for p in prompts]
        if self.retriever is None:
            raise ValueError(f"k={k} retrieved documents requested but the generator has no retriever")
        found = self.retriever.retrieve([prompts[i].query_document() for i in todo], k)
        out = list(prompts)
        for i, docs in zip(todo, found, strict=True):
            if len(docs) < k:
                raise ValueError(
                    f"prompt {prompts[i].id!r}: the retriever returned {len(docs)} document(s) but "
                    f"k={k} were requested (is k larger than the memory bank, or do too few "
                    "documents pass the retrieval strategy's filters?)"
                )
            out[i] = prompts[i].with_retrieved(docs[:k])
        return [p if p.retrieved is not None else p.with_retrieved(()) for p in out]

    def _decode(
        self,
        batch: list[int],
        items: list[Prompt],
        encoded: list[EncodedPrompt],
        pipelines: list[Pipeline],
        num_candidates: int,
        generator: torch.Generator,
    ) -> DecodeResult:
        names = list(encoded[batch[0]].streams)
        streams = [[encoded[i].streams[s] for i in batch] for s in names]
        return decode(
            self.model, streams, encoded[batch[0]].span, pipelines, stream_names=names,
            prompt_ids=[items[i].id for i in batch], num_candidates=num_candidates, generator=generator,
        )  # fmt: skip

    def _result(
        self, prompt: Prompt, enc: EncodedPrompt, out: DecodeResult, row: int, pipelines: list[Pipeline]
    ) -> GenerationResult:
        vocab = self.tokenizer.vocab
        names = vocab.special_tokens()
        cands: list[Candidate] = []
        for n in range(out.tokens.shape[1]):
            ids = out.candidate(row, n)
            stop = int(out.stop[row, n])
            c = Candidate(ids, pipeline=pipelines[out.pipeline[n]].name, index=n,
                          stop="length" if stop < 0 else names[stop])  # fmt: skip
            if prompt.output == "text":
                c.text = self.tokenizer.text_tokenizer.decode(vocab.global_to_text(ids).tolist())
            else:
                codes = vocab.global_to_image(ids)
                if enc.image_codes is not None:
                    src = vocab.global_to_image(enc.image_codes)
                    codes = np.concatenate([src[: enc.start], codes, src[enc.end:]])
                c.codes = codes
            cands.append(c)
        image_tok = self.tokenizer.image_tokenizer
        if prompt.output == "image" and image_tok is not None:
            images = image_tok.decode(torch.as_tensor(np.stack([c.codes for c in cands])))
            for c, im in zip(cands, images, strict=True):
                c.image = im
        cands = self._rerank(prompt, cands)
        return GenerationResult(
            prompt, cands, {s: ids.tolist() for s, ids in enc.streams.items()}, list(prompt.retrieved or ())
        )

    def _rerank(self, prompt: Prompt, cands: list[Candidate]) -> list[Candidate]:
        if self.reranker is None or len(cands) < 2:
            return cands
        if prompt.output == "image":
            if cands[0].image is None:
                raise ValueError("CLIP re-ranking of images needs an image tokenizer to decode the codes")
            scores = self.reranker.score_images(prompt.rerank_text(), [c.image for c in cands])
        else:
            image = prompt.rerank_image()
            if image is None:
                return cands
            pixels = image.pil() if image.image is not None else self._decode_image(image)
            scores = self.reranker.score_texts(pixels, [c.text or "" for c in cands])
        for c, s in zip(cands, scores.tolist(), strict=True):
            c.score = float(s)
        return [cands[i] for i in self.reranker.order(scores)]

    def _decode_image(self, seg: Any) -> Any:
        if self.tokenizer.image_tokenizer is None:
            raise ValueError("re-ranking against a codes-only image needs an image tokenizer")
        return self.tokenizer.image_tokenizer.decode(torch.as_tensor([list(seg.codes)]))[0]


def _with_id(prompt: Prompt, pid: str) -> Prompt:
    return replace(prompt, id=pid)
