"""Structured config schemas of ``configs/retrieval/*.yaml``.

One section per command, each a dataclass with ``MISSING`` for required keys
(validated by :func:`cm3leon.core.config.load_config`):

==================  =============================  ==========================================
schema              command                        YAML
==================  =============================  ==========================================
``ClipTrainConfig`` ``cm3leon retrieval train-clip``  ``configs/retrieval/clip_small.yaml``
``BankConfig``      ``cm3leon retrieval build``       ``configs/retrieval/bank.yaml``
``AugmentConfig``   ``cm3leon retrieval augment``     ``configs/retrieval/augment.yaml``
==================  =============================  ==========================================

:class:`RetrievalConfig` (registered for ``configs/retrieval/``) holds the three
sections as optional top-level keys ``train_clip``, ``bank`` and ``augment``; a
command reads its own section, so one YAML may describe one stage or a whole
pipeline (sections can refer to each other: ``encoder: ${train_clip.output}/encoder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ComponentConfig
from cm3leon.retrieval.strategy import RetrievalStrategy

__all__ = [
    "AugmentConfig",
    "BankConfig",
    "ClipTrainConfig",
    "DocumentsConfig",
    "IndexConfig",
    "RerankConfig",
    "RetrievalConfig",
    "resolve_device",
    "section",
]

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DocumentsConfig:
    """Input documents: document-shard directories (``cm3leon data prepare`` output).

    Attributes:
        shards: document-shard directories, read in order.
        limit: use at most this many documents (0 = all).
        verify: check shard hashes before reading.
    """

    shards: list[str] = field(default_factory=list)
    limit: int = 0
    verify: bool = True


@dataclass
class ClipTrainConfig:
    """Train a small CLIP with open_clip's model classes and ``ClipLoss`` through Composer.

    Attributes:
        output: run directory: ``checkpoints/`` (Composer, autoresume), ``encoder/``
            (open_clip local-dir export), ``metrics.json``, ``train.log``.
        data: caption-image documents (first text = caption, first image = image).
        arch: open_clip architecture name (built in, or this package's ``cm3leon-clip-tiny``).
        model_overrides: deep-merged into the architecture's open_clip config.
        eval_size: documents held out (the last ones) for recall@1/@5.
        batch_size / max_duration / lr / weight_decay / warmup: optimisation
            (Composer time strings such as ``"400ba"``).
        save_interval: checkpoint interval (Composer time string).
        seed: Composer seed.
        device: ``cpu`` or ``gpu``.
        precision: ``fp32``, ``amp_bf16`` (on the CPU: bf16 autocast of the forward pass),
            ``auto`` (bf16 where the hardware has it) or ``amp_fp16`` (GPU); see
            :mod:`cm3leon.core.precision`.
        num_workers: dataloader workers.
    """

    output: str = MISSING
    data: DocumentsConfig = field(default_factory=DocumentsConfig)
    arch: str = "cm3leon-clip-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    eval_size: int = 256
    batch_size: int = 64
    max_duration: str = "400ba"
    lr: float = 1.0e-3
    weight_decay: float = 0.1
    warmup: str = "20ba"
    save_interval: str = "100ba"
    seed: int = 17
    device: str = "cpu"
    precision: str = "fp32"
    num_workers: int = 0


@dataclass
class RerankConfig:
    """Exact re-ranking against the float vectors kept on disk (:mod:`cm3leon.retrieval.rerank`).

    Attributes:
        source: ``none`` (the index answers alone) or ``disk`` (the bank also stores its
            vectors as ``vectors.npy``, memory-mapped, not resident; the index proposes
            ``shortlist`` candidates per query, re-scored exactly from the file).
        shortlist: candidates per query re-scored (vectors read per query, at most).
        dtype: ``float16`` (2 B per dimension on disk) or ``float32`` (4 B).
    """

    source: str = "none"
    shortlist: int = 100
    dtype: str = "float16"


@dataclass
class IndexConfig:
    """FAISS index settings.

    Attributes:
        factory: FAISS index-factory string (``Flat`` exact; ``IVF4096,Flat``; ``HNSW32``; ``IVF1024,PQ32``).
        search_params: FAISS ``ParameterSpace`` string (``nprobe=32``, ``efSearch=128``).
        train_size: vectors sampled (by ``seed``) to train indexes that need training.
        seed: sampling seed.
        rerank: keep the vectors on disk and re-rank a shortlist against them
            (RAM holds the index only; see :class:`RerankConfig`).
    """

    factory: str = "Flat"
    search_params: str = ""
    train_size: int = 65536
    seed: int = 0
    rerank: RerankConfig = field(default_factory=RerankConfig)


@dataclass
class BankConfig:
    """Build a memory bank from document shards.

    Attributes:
        output: bank directory (atomic; ``OUTPUT.work/`` holds resumable chunks meanwhile).
        data: the documents to index.
        kind: ``faiss`` (dense CLIP vectors) or ``bm25`` (captions).
        encoder: CLIP encoder directory (``faiss`` banks).
        image_tokenizer: decodes VQ-only images to pixels for CLIP (``NAME:DIR``); optional.
        index: FAISS settings.
        chunk_size: documents per resumable embedding chunk (chunks never span two
            MDS shard files, so a rank reads only the shard files it embeds).
        batch_size: encoder batch size.
        device: where CLIP embeds and the image tokenizer decodes VQ-only images:
            ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda`` (under a launcher,
            rank ``r`` uses ``cuda:LOCAL_RANK``); see :func:`resolve_device`.
        bm25_k1 / bm25_b: BM25 parameters (``bm25`` banks).
    """

    output: str = MISSING
    data: DocumentsConfig = field(default_factory=DocumentsConfig)
    kind: str = "faiss"
    encoder: str = ""
    image_tokenizer: str = ""
    index: IndexConfig = field(default_factory=IndexConfig)
    chunk_size: int = 1024
    batch_size: int = 64
    device: str = "auto"
    bm25_k1: float = 1.5
    bm25_b: float = 0.75


@dataclass
class AugmentConfig:
    """Write retrieval-augmented token shards (Figure 9 layout).

    Attributes:
        output: token-shard directory (atomic).
        data: query documents (usually the same shards as the bank).
        bank: bank directory.
        retriever: registered retriever (``clip``, ``bm25``) and extra factory options;
            ``bank`` and the strategy fields are passed by the command.
        encoder: encoder directory (default: the one recorded in the bank).
        strategy: the §2.1 rules.
        training: apply query dropout and random ``k``-of-pool selection.
        k: retrieved documents per example (``strategy.train_select`` when 0 in training).
        text_tokenizer: text tokenizer (registered name, ``NAME:DIR`` or ``DIR``).
        image_tokenizer: image tokenizer for images without codes (``NAME:DIR``); optional.
        image_codebook_size: codebook size when every image carries precomputed codes.
        tokens_per_image: expected codes per image (checked); 0 = from the tokenizer.
        num_sentinels: CM3 sentinel pairs of the vocabulary.
        batch_size: queries retrieved per batch.
        part_size: queries per resumable part (``OUTPUT.work/part-PPPPP/``); parts never
            span two input shard files, each rank of ``composer -n N -m
            cm3leon.retrieval.augment`` writes an equal share of them, and the parts are
            merged into ``output`` once all are complete.
        device: where queries are embedded (CLIP) and images without codes are VQ-encoded:
            ``auto``/``cpu``/``cuda``, as ``bank.device``.
        keep_unaugmented: also write each query alone (k = 0), as the zero-shot case.
        query_loss_weight: RA-CM3's up-weighting of the query document's loss; 0 = off
            (CM3Leon removed it, §2.2).
    """

    output: str = MISSING
    data: DocumentsConfig = field(default_factory=DocumentsConfig)
    bank: str = MISSING
    retriever: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="clip"))
    encoder: str = ""
    strategy: RetrievalStrategy = field(default_factory=RetrievalStrategy)
    training: bool = True
    k: int = 0
    text_tokenizer: str = "bytes"
    image_tokenizer: str = ""
    image_codebook_size: int = 0
    tokens_per_image: int = 0
    num_sentinels: int = 8
    batch_size: int = 64
    part_size: int = 8192
    device: str = "auto"
    keep_unaugmented: bool = False
    query_loss_weight: float = 0.0


@dataclass
class RetrievalConfig:
    """Schema of ``configs/retrieval/*.yaml``: any of the three sections.

    YAML::

        # cm3leon retrieval build configs/retrieval/bank.yaml
        bank:
          output: runs/retrieval/bank
          data: {shards: [runs/data/docs]}
          encoder: runs/retrieval/clip/encoder
    """

    train_clip: ClipTrainConfig | None = None
    bank: BankConfig | None = None
    augment: AugmentConfig | None = None


def resolve_device(value: str, *, key: str = "bank.device", local_rank: int | None = None) -> str:
    """The torch device of a ``device`` config value (``auto``/``cpu``/``cuda``).

    ``auto`` is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``.  A CUDA device is
    ``cuda:LOCAL_RANK`` (``local_rank``, default the launcher's ``LOCAL_RANK`` variable, 0).

    Raises:
        ConfigError: an unknown value, or ``cuda`` requested where CUDA is not available
            (the message names ``key``).
    """
    import os

    import torch

    from cm3leon.core.config import ConfigError

    if value not in DEVICES:
        raise ConfigError(f"{key}: must be one of {', '.join(DEVICES)}, got {value!r}")
    cuda = torch.cuda.is_available()
    if value == "cuda" and not cuda:
        raise ConfigError(f"{key}: 'cuda' requested but CUDA is not available here "
                          "(torch.cuda.is_available() is False); use 'auto' or 'cpu'")
    if value == "cpu" or not cuda:
        return "cpu"
    rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else int(local_rank)
    return f"cuda:{rank % max(torch.cuda.device_count(), 1)}"


def section(cfg: RetrievalConfig, name: str, *, source: str = "<config>") -> Any:
    """The ``name`` section of ``cfg``.

    Raises:
        ConfigError: the file has no such section (names the file and the sections it has).
    """
    from cm3leon.core.config import ConfigError

    value = getattr(cfg, name, None)
    if value is None:
        present = [n for n in ("train_clip", "bank", "augment") if getattr(cfg, n) is not None]
        raise ConfigError(f"{source}: no '{name}:' section (it has: {', '.join(present) or 'none'})")
    return value
