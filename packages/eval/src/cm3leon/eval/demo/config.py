"""The ``cm3leon demo`` config schema (``configs/demo/*.yaml``, registered as ``demo``).

The demo is the whole paper as a list of the packages' public commands; its config holds,
for every stage, the config *of that stage's command* (the schema the command itself
registers: ``tokenizers``, ``retrieval``, ``train``, ``sft_mixture``, the eval protocols)
without the paths, which the demo fills in from ``out``.  So any knob of any stage is a
dotted override away::

    cm3leon demo pretrain.max_duration=600ba image_tokenizer.image.max_steps=400

:class:`DemoConfig`'s defaults are the full preset (``configs/demo/full.yaml`` is the
same config written out); :data:`QUICK_PRESET` is the overlay of ``--quick``
(``configs/demo/quick.yaml``) and :data:`LONG_PRESET` the one of ``--preset long``
(``configs/demo/long.yaml``: the long tail and plain pretraining at equal compute, sized
for <= 2 hours on 2 CPU cores).  This module imports neither torch nor Composer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DemoConfig",
    "EvalSection",
    "LONG_PRESET",
    "PRESETS",
    "PlainSection",
    "QUICK_PRESET",
    "WorldSection",
    "VQCeilingSection",
    "demo_config",
    "load_demo_config",
]


@dataclass
class WorldSection:
    """``cm3leon world export``: the procedural world in public dataset formats.

    Attributes:
        n: scenes (80 % train, 10 % val, 10 % test by scene).
        seed: world seed.
        image_size: image side in pixels (the VQ tokenizer's resolution).
        formats: public formats to write (``ground_truth`` is always written); the SFT
            mixture's and the evaluations' sources must be among them.
        entity_docs: long-tail entity documents (``cm3leon world export --entity-docs``):
            named mosaics with Zipfian frequency mixed into pretraining and the memory
            bank, and the ``tail_to_image`` evaluation's prompts; 0 = no tail.
        entities / entity_zipf: size of the entity catalogue, exponent of its frequency law.
    """

    n: int = 4000
    seed: int = 0
    image_size: int = 32
    formats: list[str] = field(
        default_factory=lambda: ["pretrain", "coco", "vqa2", "instruct_pix2pix"]
    )
    entity_docs: int = 1200
    entities: int = 300
    entity_zipf: float = 1.0


@dataclass
class EvalSection:
    """One evaluation protocol run (``cm3leon eval NAME`` / ``cm3leon ablate``).

    Attributes:
        enabled: run it.
        model: which export is evaluated: ``pretrain`` (zero-shot, as Table 1) or ``sft``.
        protocol: the protocol's config (``cm3leon.eval.protocols`` schemas) minus the
            model and data paths the demo fills in.
        matrix / exclude / run_name / report: an ablation over the protocol config
            (``cm3leon ablate``, :class:`cm3leon.eval.ablation.spec.AblationConfig`);
            empty ``matrix``: one plain protocol run.
    """

    enabled: bool = True
    model: str = "sft"
    protocol: dict[str, Any] = field(default_factory=dict)
    matrix: dict[str, Any] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    run_name: str = ""
    report: dict[str, Any] = field(default_factory=dict)


def _text_tokenizer() -> dict[str, Any]:
    return {"kind": "text", "run_name": "demo_text_bpe", "text": {"vocab_size": 768, "min_frequency": 2}}


def _image_tokenizer() -> dict[str, Any]:
    return {
        "kind": "image",
        "run_name": "demo_vq",
        "image": {
            "model": {"preset": "small_32"},
            "data": {"format": "mds", "flip_p": 0.5, "num_workers": 0},
            # Small batches, many steps, and an L2 term: the world's images are mostly wall,
            # so L1 alone (median-seeking) keeps reconstructing grey blobs for hundreds of
            # steps; L2 punishes the objects' colour errors.  Measured on 2 CPU cores after
            # ~450 steps: scorer colour+shape accuracy of reconstructions 0.03 (L1, batch 32)
            # vs 0.40 (L1 + 4 L2, batch 8); 0.82 after ~1000 steps.
            # Adam betas (0.9, 0.99) instead of the GAN-style (0.5, 0.9) default (this preset has
            # no discriminator): blue no longer drifts to cyan.  Chosen on the val split (first 400
            # images; originals score object_acc 1.000), b8: 700 steps (0.5, 0.9) 0.637, 700 steps
            # (0.9, 0.99) 0.634, 1,250 steps 0.869, 2,000 steps 0.926 (issue 15, lever 2).
            "batch_size": 8,
            "max_steps": 2000,
            "save_interval": 250,
            "optim": {"lr": 3.0e-3, "warmup_steps": 10, "betas": [0.9, 0.99]},
            "loss": {"l1": 1.0, "l2": 4.0},
            "progress_bar": True,
        },
    }


def _clip() -> dict[str, Any]:
    return {
        "train_clip": {
            "arch": "cm3leon-clip-tiny",
            "eval_size": 256,
            "batch_size": 128,
            "max_duration": "400ba",
            "lr": 2.0e-3,
            "warmup": "10ba",
            "save_interval": "100ba",
            "num_workers": 0,
        }
    }


def _bank() -> dict[str, Any]:
    return {"bank": {"kind": "faiss", "index": {"factory": "Flat"}, "batch_size": 128}}


def _augment() -> dict[str, Any]:
    return {
        "augment": {
            "retriever": {"name": "clip"},
            # §2.1's rules; two documents per example (the inference maximum, k = 2) keep the
            # CPU rows short; keep_unaugmented adds each pair alone (the k = 0 layout).
            "strategy": {"num_by_text": 2, "num_by_image": 2, "max_score": 0.9, "train_select": 2},
            "training": True,
            "keep_unaugmented": True,
            "batch_size": 128,
        }
    }


#: CM3 whole-segment masks (``cm3leon.core.objective``): a quarter of the examples mask one
#: whole caption and a tenth one whole image, so the unconditional streams CFG and editing
#: decode with (``<eos> <mask:0> <break>``, ``<break> <mask:k> <break>``) occur in training.
WHOLE_SEGMENTS: dict[str, float] = {"whole_text_prob": 0.25, "whole_image_prob": 0.1}


def _train(run_name: str, *, lr: float, steps: str, warmup: str, cm3: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"seq_len": 512, "global_batch_size": 16, "num_workers": 0}
    if cm3:
        data["cm3"] = {"options": cm3}
    return {
        "run_name": run_name,
        "model": {"name": "cm3leon_small", "options": {"max_seq_len": 512}},
        "data": data,
        "optim": {"lr": lr, "weight_decay": 0.0},
        "scheduler": {"name": "linear", "warmup": warmup, "alpha_f": 0.1},
        "max_duration": steps,
        "device": "cpu",
        "precision": "fp32",
        "checkpoint": {"save_interval": "100ba", "num_to_keep": 1},
        "logging": {"progress_bar": True, "console_interval": "25ba"},
    }


def _sft() -> dict[str, Any]:
    # Table 5's templates put the output text first ("Question: {question} The answer is
    # {answer}. <break> {image}"); the evaluation infills it after the image.  CM3's default
    # spans (80 % inside images, uniform end points) mask a VQA answer exactly in 0.2 % of
    # examples (measured), which a CPU-sized SFT never learns from.  The task-aware option
    # masks exactly each example's declared output (the mixture's `targets`) with
    # probability target_prob -- the evaluation prompts' layout -- and gives the other
    # examples CM3's random spans.  Measured on this preset (400 steps, same pretraining):
    # target_prob 0.5 / 0.8 / 1.0 -> VQA 24.1 / 40.0 / 43.1 %, CIDEr-D 0.67 / 0.92 / 0.94;
    # 0.8 keeps a fifth of CM3's random spans (the masks the guidance streams use).
    # The other fifth also gets the whole-segment masks of pretraining (WHOLE_SEGMENTS).
    return _train("demo_sft", lr=1.0e-3, steps="400ba", warmup="20ba",
                  cm3={"target_prob": 0.8, **WHOLE_SEGMENTS})


def _mixture() -> dict[str, Any]:
    # Source paths are relative to the world export (``<out>/world``).
    return {
        "name": "demo",
        "seed": 0,
        "tasks": [
            {"task": "coco_captioning", "weight": 1.0,
             "sources": [{"path": "coco", "split": "train2017", "limit": 2000}]},
            {"task": "vqa2", "weight": 1.0, "sources": [{"path": "vqa2", "split": "train2014", "limit": 2000}]},
            {"task": "instructpix2pix", "weight": 1.0,
             "sources": [{"path": "instruct_pix2pix", "split": "train", "limit": 2000}]},
        ],  # fmt: skip
        "balance": {"max_upsample": 3.0, "min_downsample": 0.3},
        "output": {"format": "tokens"},
    }


def _t2i() -> EvalSection:
    return EvalSection(
        model="pretrain",
        protocol={
            "data": {"split": "test", "limit": 96},
            "num_samples": 4,
            "batch_size": 8,
            "grid_prompts": 8,
            "decoding": {"cfg_scale": 3.0, "top_p": 0.9, "cd_k": 5, "cd_alpha": 0.5},
        },
        matrix={
            "k": {"key": "retrieval.k", "values": [0, 1, 2]},
            "strategy": {
                "values": {
                    "top_p": {"decoding.strategy": "top_p"},
                    "cd_k": {"decoding.strategy": "cd_k"},
                    "no_cfg": {"decoding.strategy": "top_p", "decoding.cfg_scale": 1.0},
                    # Figure 4's "combined": half the candidates top-p, half CD-K.
                    "combined": {"decoding.strategy": "cd_k_top_p"},
                }
            },
        },
        exclude=[{"k": 1, "strategy": "combined"}],  # Figure 4 compares at k = 0; k = 2 beside it
        report={
            "precision": 3,
            "tables": [
                {"rows": "strategy", "columns": "k", "value": "object_acc",
                 "title": "Object accuracy (headline; precision-aware world scorer)"},
                {"rows": "strategy", "columns": "k", "value": "colour_shape_acc",
                 "title": "Colour+shape accuracy (world scorer; chance 1/24)"},
                {"rows": "strategy", "columns": "k", "value": "fid", "title": "FID (CLIP features)"},
                {"rows": "strategy", "columns": "k", "value": "clip_score", "title": "CLIP score"},
            ],
            "plots": [
                {"x": "k", "y": "object_acc", "series": "strategy",
                 "title": "Object accuracy (headline) vs retrieved documents"},
                {"x": "k", "y": "colour_shape_acc", "series": "strategy",
                 "title": "Colour+shape accuracy vs retrieved documents"},
                {"x": "k", "y": "fid", "series": "strategy", "title": "FID vs retrieved documents"},
            ],
        },  # fmt: skip
    )


def _tail() -> EvalSection:
    """Text-to-image on prompts naming long-tail entities (run when ``world.entity_docs`` > 0):
    the paper's case for retrieval (its Khachkar crosses), k x decoding as Table 1."""
    base = _t2i()
    matrix = copy.deepcopy(base.matrix)
    del matrix["strategy"]["values"]["combined"]  # the tail floor is about retrieval, not Figure 4
    return EvalSection(
        model="pretrain",
        protocol=copy.deepcopy(base.protocol),
        matrix=matrix,
        report={
            "precision": 3,
            "tables": [
                {"rows": "strategy", "columns": "k", "value": "entity_cell_acc",
                 "title": "Entity mosaic cells right (chance 1/6)"},
                {"rows": "strategy", "columns": "k", "value": "entity_match",
                 "title": "Entity drawn (>= 12 of 16 cells right)"},
                {"rows": "strategy", "columns": "k", "value": "fid", "title": "FID (CLIP features)"},
            ],
            "plots": [
                {"x": "k", "y": "entity_cell_acc", "series": "strategy",
                 "title": "Tail entities: mosaic cells right vs retrieved documents"},
            ],
        },  # fmt: skip
    )


def _in_context() -> EvalSection:
    """Does the model use its context?  Head prompts with nothing, the prompt's own document
    (oracle retrieval: its caption and real image) or another test document (the control)
    retrieved, by the ``lookup`` retriever over the world's ground truth (Table 1's mechanism)."""
    base = _t2i()
    return EvalSection(
        model="pretrain",
        protocol=copy.deepcopy(base.protocol) | {"decoding": {"strategy": "top_p", "cfg_scale": 3.0,
                                                             "top_p": 0.9}},
        matrix={"context": {"values": {
            "none": {"retrieval.k": 0},
            "own": {"retrieval.k": 1, "retrieval.options.mode": "own"},
            "other": {"retrieval.k": 1, "retrieval.options.mode": "other"},
        }}},
        report={"precision": 3, "tables": [
            {"rows": "context", "columns": "context", "value": "object_acc",
             "title": "Object accuracy with nothing / the target itself / another document in context"},
        ]},
    )  # fmt: skip


def _captioning() -> EvalSection:
    return EvalSection(
        model="sft",
        # 48 tokens: the longest world captions are 49 BPE tokens (p99 39); 32 cut 12 % of them.
        # Table 1's protocol applied to text: 8 top-p samples, CLIP keeps the best (greedy
        # captions repeat the commonest phrase; measured in the eval README).
        protocol={"data": {"limit": 200}, "tokenizer": "ptb", "batch_size": 16,
                  "num_samples": 8, "rerank": True,
                  "decoding": {"strategy": "top_p", "cfg_scale": 1.0, "top_p": 0.9, "max_new_tokens": 48}},
    )  # fmt: skip


def _vqa() -> EvalSection:
    return EvalSection(
        model="sft",
        protocol={"data": {"limit": 300}, "batch_size": 16,
                  "decoding": {"strategy": "greedy", "max_new_tokens": 8}},
    )  # fmt: skip


def _editing() -> EvalSection:
    return EvalSection(
        model="sft",
        protocol={"data": {"split": "val", "limit": 48}, "batch_size": 8,
                  "decoding": {"strategy": "dual_cfg", "image_scale": 1.5, "text_scale": 7.5}},
    )  # fmt: skip


@dataclass
class VQCeilingSection:
    """The scorer's ceiling: ground-truth images through the VQ tokenizer, then scored.

    Attributes:
        enabled: run it.
        split: world split whose images are reconstructed (``pretrain/<split>/``).
        limit: at most this many images.
    """

    enabled: bool = True
    split: str = "test"
    limit: int = 400


@dataclass
class PlainSection:
    """Plain pretraining at equal compute: the paper's efficiency claim ("retrieval
    augmentation is key for efficient training", §1), off by default.

    A second model is pretrained on *plain* token shards of the same documents (each
    caption-image pair alone, ``cm3leon data prepare --kind tokens`` over the world's
    pretraining split -- the documents the memory bank and the retrieval-augmented shards
    are made of), with the ``pretrain`` section's model, seed, optimiser, schedule, CM3
    options, ``seq_len`` and ``max_duration``, then evaluated like the retrieval-augmented
    model at k = 0 (``plain_text_to_image``; ``plain_tail_to_image`` with a long tail).

    **Equal compute** means the same number of real (non-pad) training tokens through the
    same model at the same ``seq_len``: ``pretrain.max_duration`` must be a token count
    (``...tok``, Composer stops each run at the first step that reaches it), because
    ``global_batch_size`` counts *examples* and a retrieval-augmented example is about
    ``1 + train_select`` documents long (half that with ``keep_unaugmented``), so equal
    step counts would give the augmented model about twice the tokens.  The summary reads
    both runs' token counts back from their ``metrics.jsonl`` and checks they agree to one
    step's worth.

    Attributes:
        enabled: run ``plain_data``, ``plain_pretrain`` and the plain evaluations.
        global_batch_size: examples per step of the plain model; 0 = the pretrain's.  Set
            it to about the augmented examples' length in documents times the pretrain's
            batch, so both runs also take about the same number of optimizer steps of about
            the same tokens (the long preset: 2 x 16).
        strategies: decoding strategies (names in ``text_to_image.matrix.strategy``) the
            plain model is evaluated with, at k = 0.
    """

    enabled: bool = False
    global_batch_size: int = 0
    strategies: list[str] = field(default_factory=lambda: ["top_p"])


@dataclass
class DemoConfig:
    """Everything ``cm3leon demo`` runs (defaults: the full preset).

    Attributes:
        out: run directory; every artefact, log, stage config and the report go here.
        seed: seed of the world-independent randomness (template choices, sampling).
        world: the procedural world.
        text_tokenizer / image_tokenizer: ``cm3leon tokenizers train-text|train-image``
            configs (schema ``tokenizers``).
        clip / bank / augment: ``cm3leon retrieval train-clip|build|augment`` configs
            (schema ``retrieval``, one section each).
        pretrain / sft: ``cm3leon train`` configs (schema ``train``).
        mixture: ``cm3leon tasks mixture`` config (schema ``sft_mixture``); source paths
            are relative to the world export.
        text_to_image / tail_to_image / captioning / vqa / editing: the evaluations
            (``tail_to_image`` runs only with ``world.entity_docs`` > 0); ``in_context``:
            head prompts with the oracle / an unrelated document in context.
        vq_ceiling: score VQ reconstructions of real images (the accuracy ceiling).
        plain: plain (non-augmented) pretraining at equal compute, evaluated at k = 0.
        trackers: experiment trackers (``{name, options}``: tensorboard, mlflow, wandb) the
            finished demo's training curves and evaluation results are logged to, read
            from the artefacts after the stages (:mod:`cm3leon.eval.demo.tracking`);
            default none.
    """

    out: str = "runs/demo"
    seed: int = 0
    world: WorldSection = field(default_factory=WorldSection)
    text_tokenizer: dict[str, Any] = field(default_factory=_text_tokenizer)
    image_tokenizer: dict[str, Any] = field(default_factory=_image_tokenizer)
    clip: dict[str, Any] = field(default_factory=_clip)
    bank: dict[str, Any] = field(default_factory=_bank)
    augment: dict[str, Any] = field(default_factory=_augment)
    pretrain: dict[str, Any] = field(
        default_factory=lambda: _train("demo_pretrain", lr=2.0e-3, steps="950ba", warmup="30ba",
                               cm3=dict(WHOLE_SEGMENTS))
    )
    mixture: dict[str, Any] = field(default_factory=_mixture)
    sft: dict[str, Any] = field(default_factory=_sft)
    text_to_image: EvalSection = field(default_factory=_t2i)
    tail_to_image: EvalSection = field(default_factory=_tail)
    in_context: EvalSection = field(default_factory=_in_context)
    captioning: EvalSection = field(default_factory=_captioning)
    vqa: EvalSection = field(default_factory=_vqa)
    editing: EvalSection = field(default_factory=_editing)
    vq_ceiling: VQCeilingSection = field(default_factory=VQCeilingSection)
    plain: PlainSection = field(default_factory=PlainSection)
    trackers: list[Any] = field(default_factory=list)


#: ``--quick``: the same pipeline at test scale (about a minute of compute).
QUICK_PRESET: dict[str, Any] = {
    "out": "runs/demo_quick",
    "world": {"n": 400, "entity_docs": 0},
    "text_tokenizer": {"text": {"vocab_size": 384}},
    "image_tokenizer": {"image": {"batch_size": 8, "max_steps": 8, "save_interval": 4}},
    "mixture": {"tasks": [
        {"task": "coco_captioning", "sources": [{"path": "coco", "split": "train2017", "limit": 120}]},
        {"task": "vqa2", "sources": [{"path": "vqa2", "split": "train2014", "limit": 120}]},
        {"task": "instructpix2pix", "sources": [{"path": "instruct_pix2pix", "split": "train", "limit": 120}]},
    ]},
    "clip": {"train_clip": {"batch_size": 64, "max_duration": "6ba", "eval_size": 64,
                            "save_interval": "3ba"}},
    "pretrain": {"model": {"name": "cm3leon_tiny", "options": {"max_seq_len": 384}},
                 "data": {"seq_len": 384, "global_batch_size": 8}, "max_duration": "8ba",
                 "checkpoint": {"save_interval": "4ba"}, "logging": {"console_interval": "4ba"}},
    "sft": {"model": {"name": "cm3leon_tiny", "options": {"max_seq_len": 384}},
            "data": {"seq_len": 384, "global_batch_size": 8}, "max_duration": "6ba",
            "checkpoint": {"save_interval": "3ba"}, "logging": {"console_interval": "3ba"}},
    "text_to_image": {
        "protocol": {"data": {"limit": 4}, "num_samples": 2, "batch_size": 4, "grid_prompts": 4},
        "exclude": [{"k": 1}, {"strategy": "no_cfg"}, {"strategy": "combined"}],
    },
    "tail_to_image": {
        "protocol": {"data": {"limit": 4}, "num_samples": 2, "batch_size": 4, "grid_prompts": 4},
        "exclude": [{"k": 1}, {"strategy": "no_cfg"}],
    },
    "in_context": {
        "protocol": {"data": {"limit": 4}, "num_samples": 2, "batch_size": 4, "grid_prompts": 4},
    },
    "captioning": {"protocol": {"data": {"limit": 6}, "num_samples": 2, "decoding": {"max_new_tokens": 12}}},
    "vqa": {"protocol": {"data": {"limit": 8}}},
    "editing": {"protocol": {"data": {"limit": 4}}},
    "vq_ceiling": {"limit": 16},
}  # fmt: skip


#: ``--preset long``: the floors a 15-minute run cannot reach, and the efficiency claim
#: (retrieval-augmented vs plain pretraining at equal compute), in <= 2 hours on 2 CPU cores.
#:
#: Sizing (not run yet).  Measured: the full preset's stage records on a 2-core CPU without
#: AMX (fp32, 1,389 s in all): pretraining 3,580 tokens/s (2.57 M tokens in 719 s),
#: SFT 0.60 s/step, VQ 0.12 s/step, CLIP 0.13 s/step, text-to-image 0.20 s per prompt
#: (4 samples, scoring included), world export 7.4 ms/scene, captioning 0.15 s/image.
#: Estimated from those rates for this preset: world (9,200 documents) 70 s, VQ 2,500 steps
#: 300 s, CLIP 1,200 steps 160 s, data/bank/augment 50 s, pretraining 7.2 M tokens
#: 2,000 s, plain pretraining 7.2 M tokens 2,000 s, SFT 800 steps 480 s, text-to-image
#: 10 runs x 200 prompts 400 s, tail 9 x 120 220 s, in-context 3 x 200 120 s, plain
#: evaluations 65 s, captioning / VQA / editing / ceiling 100 s: about 6,000 s (1.7 h),
#: 17 % under the limit for a loaded machine.  ``precision: auto`` trains in bf16 where the
#: CPU has AMX / AVX512-BF16 (2.4-2.9x faster steps measured, issue 15) and in fp32 elsewhere,
#: so the estimate is the fp32 one.
LONG_PRESET: dict[str, Any] = {
    "out": "runs/demo_long",
    # Twice the scenes, and the long tail: 1,200 entity documents of 300 named mosaics with
    # Zipfian frequency (most seen a handful of times), the paper's case for retrieval.
    "world": {"n": 8000, "entity_docs": 1200, "entities": 300},
    # VQ: reconstructions reach 0.82 colour+shape accuracy after ~1,000 steps (measured,
    # full preset comment); 2,500 steps to lift the scorer's ceiling.
    "image_tokenizer": {"image": {"max_steps": 2500, "save_interval": 250}},
    "clip": {"train_clip": {"max_duration": "1200ba", "eval_size": 512, "save_interval": "200ba"}},
    # A token budget (equal compute with the plain model: see PlainSection); the warmup is a
    # fraction of it, as Composer needs warmup and duration in the same unit.
    "pretrain": {"max_duration": "7200000tok", "precision": "auto",
                 "scheduler": {"warmup": "0.03dur"},
                 "checkpoint": {"save_interval": "200ba"}, "logging": {"console_interval": "50ba"}},
    "mixture": {"tasks": [
        {"task": "coco_captioning", "sources": [{"path": "coco", "split": "train2017", "limit": 4000}]},
        {"task": "vqa2", "sources": [{"path": "vqa2", "split": "train2014", "limit": 4000}]},
        {"task": "instructpix2pix", "sources": [{"path": "instruct_pix2pix", "split": "train", "limit": 4000}]},
    ]},
    "sft": {"max_duration": "800ba", "precision": "auto", "scheduler": {"warmup": "40ba"},
            "checkpoint": {"save_interval": "200ba"}, "logging": {"console_interval": "50ba"}},
    # Figure 4's "combined" (half top-p, half CD-K candidates) beside top-p, CD-K, no CFG;
    # k = 1 only for the two strategies Table 1 is about.
    "text_to_image": {
        "protocol": {"data": {"limit": 200}},
        "matrix": {"strategy": {"values": {"combined": {"decoding.strategy": "cd_k_top_p"}}}},
        "exclude": [{"k": 1, "strategy": "no_cfg"}, {"k": 1, "strategy": "combined"}],
    },
    "tail_to_image": {"protocol": {"data": {"limit": 120}}},
    "in_context": {"protocol": {"data": {"limit": 200}}},
    "captioning": {"protocol": {"data": {"limit": 400}}},
    "vqa": {"protocol": {"data": {"limit": 600}}},
    "editing": {"protocol": {"data": {"limit": 96}}},
    "vq_ceiling": {"limit": 800},
    # Same tokens as the augmented model; twice its examples per step, since an augmented
    # example averages two documents (keep_unaugmented: one alone, one with 2 retrieved; the
    # full preset's shards: 166.5 tokens per example, 83.3 per document), so both runs also
    # take about the same number of steps.
    "plain": {"enabled": True, "global_batch_size": 32, "strategies": ["top_p"]},
}  # fmt: skip

#: Named presets (``cm3leon demo --preset NAME``): overlays on the full preset.
PRESETS: dict[str, dict[str, Any]] = {"full": {}, "quick": QUICK_PRESET, "long": LONG_PRESET}


def _preset(quick: bool, preset: str | None) -> tuple[str, dict[str, Any]]:
    """The preset's name and overlay (``quick`` is ``preset="quick"``)."""
    from cm3leon.core.config import ConfigError

    if quick and preset not in (None, "quick"):
        raise ConfigError(f"--quick and --preset {preset} name two presets; give one")
    name = "quick" if quick else (preset or "full")
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return name, copy.deepcopy(PRESETS[name])


def demo_config(quick: bool = False, *, preset: str | None = None) -> dict[str, Any]:
    """The preset as a plain mapping (``quick``: with :data:`QUICK_PRESET` merged in;
    ``preset``: a name of :data:`PRESETS`)."""
    from omegaconf import OmegaConf

    base = OmegaConf.merge(OmegaConf.structured(DemoConfig), OmegaConf.create(_preset(quick, preset)[1]))
    data = OmegaConf.to_container(base, resolve=False)
    assert isinstance(data, dict)
    return data


def load_demo_config(path: str | None = None, overrides: Sequence[str] = (), *,
                     quick: bool = False, preset: str | None = None) -> DemoConfig:
    """The preset (``quick`` or ``preset``: a name of :data:`PRESETS`; default full), then
    the YAML file ``path``, then dotted ``overrides``.

    Raises:
        ConfigError: malformed YAML, unknown keys, wrong types (naming the file and key),
            an unknown preset.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cm3leon.core.config import ConfigError, load_config, load_yaml_file

    name, overlay = _preset(quick, preset)
    layers: list[dict[str, Any]] = [overlay] if overlay else []
    if path is not None:
        layers.append(load_yaml_file(path))
    source = str(path) if path is not None else {"full": "demo preset", "quick": "--quick preset"}.get(
        name, f"--preset {name}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DemoConfig), *map(OmegaConf.create, layers))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(f"{source}: key {key!r}: {getattr(err, 'msg', err)}") from None
    data = OmegaConf.to_container(merged, resolve=False)
    try:
        return load_config(DemoConfig, None, overrides, data=data)  # type: ignore[arg-type]
    except ConfigError as err:
        raise ConfigError(str(err).replace("<config>", source, 1)) from None
