"""The demo's stages: the paper, end to end, as the packages' public commands.

Each stage is a list of ``cm3leon ...`` command lines (:class:`Step`) plus the config files
they read (written under ``<out>/configs/``), the artefacts they must leave, and the
paths the stage owns (removed when its config changes).  Nothing here runs anything:
:func:`build_stages` turns a :class:`~cm3leon.eval.demo.config.DemoConfig` into the plan
that :mod:`cm3leon.eval.demo.runner` executes, so the plan is also what ``cm3leon demo
--dry-run`` prints and ``<out>/commands.sh`` records.

=================  ===========================================================================
stage              commands
=================  ===========================================================================
world              ``cm3leon world export``
documents          ``cm3leon data prepare --source jsonl`` (caption-image document shards)
text_tokenizer     ``cm3leon tokenizers train-text``
image_tokenizer    ``cm3leon tokenizers train-image``
clip               ``cm3leon retrieval train-clip``
bank               ``cm3leon retrieval build``
augment            ``cm3leon retrieval augment`` (Figure 9 token shards)
pretrain           ``cm3leon train``, ``cm3leon train export``, ``cm3leon train plot``
plain_data         ``cm3leon data prepare --kind tokens`` (the same documents, no retrieval)
plain_pretrain     ``cm3leon train`` on them at the same token budget, export, plot
mixture            ``cm3leon tasks mixture``
sft                ``cm3leon train`` (``model.init_from`` = the pretrained export), export, plot
vq_ceiling         ``cm3leon tokenizers reconstruct``, ``cm3leon world score`` (x2)
text_to_image      ``cm3leon ablate`` over the ``text_to_image`` runner (k x decoding strategy)
tail_to_image      the same over prompts naming long-tail entities (``world.entity_docs`` > 0)
in_context         the same runner with nothing / the target / another document retrieved
plain_text_to_image  the plain model at k = 0 (``plain_tail_to_image``: on the tail prompts)
captioning         ``cm3leon eval captioning``
vqa                ``cm3leon eval vqa``
editing            ``cm3leon eval editing``
=================  ===========================================================================

The ``plain_*`` stages run only with ``plain.enabled`` (the paper's efficiency claim:
retrieval-augmented vs plain pretraining at equal compute, :class:`PlainSection`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cm3leon.eval.demo.config import DemoConfig, EvalSection, PlainSection

__all__ = ["PLAIN_EVALUATIONS", "Layout", "Stage", "Step", "build_stages"]


@dataclass(frozen=True)
class Step:
    """One ``cm3leon`` command line of a stage.

    Attributes:
        name: short label (unique within the stage).
        argv: the arguments after ``cm3leon`` (first: the registered command name).
        outputs: paths that exist once the step has finished.
    """

    name: str
    argv: tuple[str, ...]
    outputs: tuple[Path, ...] = ()

    @property
    def command_line(self) -> str:
        import shlex

        return "cm3leon " + " ".join(shlex.quote(a) for a in self.argv)


@dataclass(frozen=True)
class Stage:
    """A cached unit of the demo.

    Attributes:
        name: stage name (``--stop-after NAME``; record ``<out>/stages/NAME.json``).
        title: one line for the progress display and the report.
        steps: the commands, in order.
        configs: config files the steps read: path -> (registered schema, mapping).
        artefacts: what the report links: label -> path (each must exist afterwards).
        owns: paths removed before the stage re-runs with a different fingerprint.
        depends: upstream stages (their fingerprints are part of this one's).
    """

    name: str
    title: str
    steps: tuple[Step, ...]
    configs: dict[Path, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    artefacts: dict[str, Path] = field(default_factory=dict)
    owns: tuple[Path, ...] = ()
    depends: tuple[str, ...] = ()


class Layout:
    """Where every artefact of a demo run lives (all under ``out``)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        o = self.out
        self.configs, self.logs, self.stages = o / "configs", o / "logs", o / "stages"
        self.world = o / "world"
        self.docs = o / "data" / "docs_train"
        self.text_run, self.image_run = o / "tokenizers" / "text", o / "tokenizers" / "image"
        self.text_tok, self.image_tok = self.text_run / "tokenizer", self.image_run / "tokenizer"
        self.clip_run, self.bank = o / "retrieval" / "clip", o / "retrieval" / "bank"
        self.encoder = self.clip_run / "encoder"
        self.ra = o / "data" / "pretrain_ra"
        self.plain = o / "data" / "pretrain_plain"
        self.mixture = o / "data" / "sft_mixture"
        self.eval = o / "eval"
        self.report = o / "report.html"

    def run(self, stage: str) -> Path:
        """Run directory of a training stage (``pretrain`` / ``sft`` / ``plain_pretrain``)."""
        return self.out / stage

    def export(self, stage: str) -> Path:
        """Safetensors export of a training stage."""
        return self.out / stage / "export"

    @property
    def text_spec(self) -> str:
        return f"bpe:{self.text_tok}"

    @property
    def image_spec(self) -> str:
        return f"vqgan:{self.image_tok}"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge (``extra`` wins) without touching either argument."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _world_formats(cfg: DemoConfig) -> list[str]:
    """The export's formats; with a long tail also ``entities`` (the tail evaluation's prompts)."""
    formats = list(cfg.world.formats)
    if cfg.world.entity_docs and "entities" not in formats:
        formats.append("entities")
    return formats


def _world(cfg: DemoConfig, lay: Layout) -> Stage:
    w = cfg.world
    argv = ("world", "export", "--out", str(lay.world), "--n", str(w.n), "--seed", str(w.seed),
            "--image-size", str(w.image_size), "--formats", ",".join(_world_formats(cfg)))  # fmt: skip
    if w.entity_docs:
        argv += ("--entity-docs", str(w.entity_docs), "--entities", str(w.entities),
                 "--entity-zipf", str(w.entity_zipf))  # fmt: skip
    return Stage(
        "world", "Procedural world in public formats",
        (Step("export", argv, (lay.world / "world.json",)),),
        artefacts={"world export": lay.world, "ground truth": lay.world / "ground_truth" / "scenes.jsonl"},
        owns=(lay.world,),
    )  # fmt: skip


def _documents(cfg: DemoConfig, lay: Layout) -> Stage:
    argv = ("data", "prepare", str(lay.world / "pretrain" / "train.jsonl"), "--source", "jsonl",
            "--out", str(lay.docs))  # fmt: skip
    return Stage(
        "documents", "Caption-image document shards (train split)",
        (Step("prepare", argv, (lay.docs / "COMPLETE",)),),
        artefacts={"document shards": lay.docs}, owns=(lay.docs, Path(f"{lay.docs}.prepare.log")),
        depends=("world",),
    )  # fmt: skip


def _tokenizer(cfg: DemoConfig, lay: Layout, kind: str) -> Stage:
    run, tok = (lay.text_run, lay.text_tok) if kind == "text" else (lay.image_run, lay.image_tok)
    section = cfg.text_tokenizer if kind == "text" else cfg.image_tokenizer
    paths = {"output_dir": str(run), kind: {"data": {"paths": [str(lay.docs)]}}}
    config = _merge(section, {"kind": kind, **paths})
    path = lay.configs / f"{kind}_tokenizer.yaml"
    name = f"{kind}_tokenizer"
    title = "Byte-level BPE text tokenizer" if kind == "text" else "VQ image tokenizer (Composer)"
    artefacts = {"tokenizer": tok}
    if kind == "image":
        artefacts.update({"metrics": run / "metrics.jsonl", "summary": run / "summary.json"})
    return Stage(
        name, title, (Step("train", ("tokenizers", f"train-{kind}", str(path)), (tok,)),),
        configs={path: ("tokenizers", config)}, artefacts=artefacts, owns=(run,), depends=("documents",),
    )  # fmt: skip


def _retrieval(cfg: DemoConfig, lay: Layout) -> list[Stage]:
    clip = _merge(cfg.clip, {"train_clip": {"output": str(lay.clip_run), "data": {"shards": [str(lay.docs)]}}})
    bank = _merge(cfg.bank, {"bank": {"output": str(lay.bank), "data": {"shards": [str(lay.docs)]},
                                      "encoder": str(lay.encoder)}})  # fmt: skip
    augment = _merge(cfg.augment, {"augment": {
        "output": str(lay.ra), "data": {"shards": [str(lay.docs)]}, "bank": str(lay.bank),
        "text_tokenizer": lay.text_spec, "image_tokenizer": lay.image_spec}})  # fmt: skip
    paths = {n: lay.configs / f"{n}.yaml" for n in ("clip", "bank", "augment")}
    return [
        Stage("clip", "Small CLIP bi-encoder (Composer)",
              (Step("train", ("retrieval", "train-clip", str(paths["clip"])), (lay.encoder,)),),
              configs={paths["clip"]: ("retrieval", clip)},
              artefacts={"encoder": lay.encoder, "metrics": lay.clip_run / "metrics.json"},
              owns=(lay.clip_run,), depends=("documents",)),
        Stage("bank", "FAISS memory bank",
              (Step("build", ("retrieval", "build", str(paths["bank"])), (lay.bank,)),),
              configs={paths["bank"]: ("retrieval", bank)}, artefacts={"bank": lay.bank},
              owns=(lay.bank, Path(f"{lay.bank}.work"), Path(f"{lay.bank}.log")), depends=("clip",)),
        Stage("augment", "Retrieval-augmented token shards (Figure 9)",
              (Step("augment", ("retrieval", "augment", str(paths["augment"])), (lay.ra / "COMPLETE",)),),
              configs={paths["augment"]: ("retrieval", augment)}, artefacts={"token shards": lay.ra},
              owns=(lay.ra, Path(f"{lay.ra}.log")),
              depends=("bank", "text_tokenizer", "image_tokenizer")),
    ]  # fmt: skip


_TRAINING_TITLES = {
    "pretrain": "Retrieval-augmented CM3 pretraining (Composer)",
    "sft": "Supervised fine-tuning on the task mixture (Composer)",
    "plain_pretrain": "Plain CM3 pretraining, same documents and token budget (Composer)",
}


def _training_config(cfg: DemoConfig, lay: Layout, name: str) -> dict[str, Any]:
    """The ``cm3leon train`` config of a training stage: its section plus the paths."""
    run = lay.run(name)
    data = {"pretrain": lay.ra, "sft": lay.mixture, "plain_pretrain": lay.plain}[name]
    paths: dict[str, Any] = {"run_dir": str(run), "data": {"streams": {"data": {"local": str(data)}}}}
    if name == "sft":
        paths["model"] = {"init_from": str(lay.export("pretrain"))}
    if name == "plain_pretrain":  # everything of pretraining but the data (and its batch)
        paths["run_name"] = f"{cfg.pretrain.get('run_name', 'demo_pretrain')}_plain"
        if cfg.plain.global_batch_size:
            paths["data"]["global_batch_size"] = cfg.plain.global_batch_size
    return _merge(cfg.sft if name == "sft" else cfg.pretrain, paths)


def _training(cfg: DemoConfig, lay: Layout, name: str) -> Stage:
    run, export = lay.run(name), lay.export(name)
    path = lay.configs / f"{name}.yaml"
    plot = run / "loss_curve.png"
    steps = (
        Step("train", ("train", "run", str(path)), (run / "metrics.jsonl",)),
        Step("export", ("train", "export", str(run / "checkpoints" / "latest-rank0.pt"), str(export),
                        "--overwrite"), (export / "COMPLETE",)),
        Step("plot", ("train", "plot", str(run), "-o", str(plot)), (plot,)),
    )  # fmt: skip
    depends = {"pretrain": ("augment",), "sft": ("pretrain", "mixture"), "plain_pretrain": ("plain_data",)}[name]
    return Stage(
        name, _TRAINING_TITLES[name], steps, configs={path: ("train", _training_config(cfg, lay, name))},
        artefacts={"export": export, "metrics": run / "metrics.jsonl", "loss curve": plot},
        owns=(run,), depends=depends,
    )  # fmt: skip


def _plain_data(cfg: DemoConfig, lay: Layout) -> Stage:
    """Plain token shards: every pretraining document alone, tokenized as the augmented
    shards tokenize their query (core's ``DocumentTokenizer``), no retrieval."""
    _check_plain(cfg)
    sentinels = (cfg.augment.get("augment") or {}).get("num_sentinels", 8)
    argv = ("data", "prepare", str(lay.world / "pretrain" / "train.jsonl"), "--source", "jsonl",
            "--kind", "tokens", "--text-tokenizer", lay.text_spec, "--image-tokenizer", lay.image_spec,
            "--num-sentinels", str(sentinels), "--out", str(lay.plain))  # fmt: skip
    return Stage(
        "plain_data", "Plain token shards of the same documents (no retrieval)",
        (Step("prepare", argv, (lay.plain / "COMPLETE",)),),
        artefacts={"token shards": lay.plain}, owns=(lay.plain, Path(f"{lay.plain}.prepare.log")),
        depends=("world", "text_tokenizer", "image_tokenizer"),
    )  # fmt: skip


def _check_plain(cfg: DemoConfig) -> None:
    """Equal compute needs a token budget (see :class:`PlainSection`)."""
    from cm3leon.core.config import ConfigError

    duration = str(cfg.pretrain.get("max_duration", ""))
    if not duration.endswith("tok"):
        raise ConfigError(
            f"plain.enabled: pretrain.max_duration must be a token count (e.g. 7200000tok) so that the "
            f"augmented and the plain model train on the same number of tokens; got {duration!r} "
            "(global_batch_size counts examples, and augmented examples are longer)"
        )
    values = _t2i_matrix_strategies(cfg)
    unknown = [s for s in cfg.plain.strategies if s not in values]
    if unknown or not cfg.plain.strategies:
        raise ConfigError(f"plain.strategies: {unknown or '[]'} not among text_to_image.matrix.strategy "
                          f"values {sorted(values)}")  # fmt: skip


def _t2i_matrix_strategies(cfg: DemoConfig) -> dict[str, Any]:
    return dict(((cfg.text_to_image.matrix.get("strategy") or {}).get("values")) or {})


def _mixture(cfg: DemoConfig, lay: Layout) -> Stage:
    config = copy.deepcopy(cfg.mixture)
    for task in config.get("tasks", []):
        for source in task.get("sources", []):
            if "path" in source and not Path(source["path"]).is_absolute():
                source["path"] = str(lay.world / source["path"])
    config = _merge(config, {"output": {"path": str(lay.mixture), "text_tokenizer": lay.text_spec,
                                        "image_tokenizer": lay.image_spec}})  # fmt: skip
    path = lay.configs / "mixture.yaml"
    return Stage(
        "mixture", "SFT task mixture (Table 5 tasks, 3/0.3 balancing)",
        (Step("mixture", ("tasks", "mixture", str(path)), (lay.mixture / "COMPLETE",)),),
        configs={path: ("sft_mixture", config)}, artefacts={"mixture shards": lay.mixture},
        owns=(lay.mixture, Path(f"{lay.mixture}.staging"), Path(f"{lay.mixture}.mixture.log")),
        depends=("world", "text_tokenizer", "image_tokenizer"),
    )  # fmt: skip


#: Evaluations of the plain model -> the evaluation whose prompts and protocol they reuse.
PLAIN_EVALUATIONS = {"plain_text_to_image": "text_to_image", "plain_tail_to_image": "tail_to_image"}


def _protocol_paths(name: str, section: EvalSection, lay: Layout) -> dict[str, Any]:
    """The model / data / retrieval / CLIP paths of one evaluation protocol config."""
    w = lay.world
    data = {
        "text_to_image": {"ground_truth": str(w / "ground_truth" / "scenes.jsonl")},
        "tail_to_image": {"entities": str(w / "entities" / "documents.jsonl")},
        "in_context": {"ground_truth": str(w / "ground_truth" / "scenes.jsonl")},
        "captioning": {"annotations": str(w / "coco" / "annotations" / "captions_val2017.json")},
        "vqa": {"questions": str(w / "vqa2" / "v2_OpenEnded_mscoco_val2014_questions.json"),
                "annotations": str(w / "vqa2" / "v2_mscoco_val2014_annotations.json")},
        "editing": {"root": str(w / "instruct_pix2pix"), "ground_truth": str(w / "ground_truth" / "edits.jsonl")},
    }[PLAIN_EVALUATIONS.get(name, name)]  # fmt: skip
    paths: dict[str, Any] = {
        "model": {"export": str(lay.export(section.model)), "text_tokenizer": lay.text_spec,
                  "image_tokenizer": lay.image_spec},
        "data": data,
        "retrieval": {"retriever": "clip", "bank": str(lay.bank)},
    }  # fmt: skip
    if name == "in_context":  # oracle / control documents come from the ground truth itself
        paths["retrieval"] = {"retriever": "lookup", "bank": data["ground_truth"]}
    if name != "vqa":
        paths["clip"] = {"encoder": "clip-image", "options": {"path": str(lay.encoder)}}
    return paths


_PROTOCOL_TITLES = {
    "text_to_image": "Zero-shot text-to-image: k x decoding strategy (Table 1 / Figure 4)",
    "tail_to_image": "Tail entities: text-to-image of rare named entities, k x decoding strategy",
    "plain_text_to_image": "Plain-pretrained model: zero-shot text-to-image at k = 0 (equal compute)",
    "plain_tail_to_image": "Plain-pretrained model: tail entities at k = 0 (equal compute)",
    "in_context": "In-context use: nothing, the target itself, or another document retrieved",
    "captioning": "Captioning: CIDEr-D vs the nearest-caption baseline",
    "vqa": "VQA: accuracy vs the majority-answer baseline",
    "editing": "Text-guided editing: world edit accuracy",
}


#: Evaluations that run another protocol's runner.
_RUNNERS = {"tail_to_image": "text_to_image", "in_context": "text_to_image",
            "plain_text_to_image": "text_to_image", "plain_tail_to_image": "text_to_image"}  # fmt: skip


def _plain_section(cfg: DemoConfig, name: str) -> EvalSection:
    """The plain model's evaluation: the same protocol and prompts as ``name``'s, at k = 0,
    with the strategies of ``plain.strategies`` (as named in ``name``'s matrix)."""
    base: EvalSection = getattr(cfg, PLAIN_EVALUATIONS[name])
    plain: PlainSection = cfg.plain
    values = (base.matrix.get("strategy") or {}).get("values") or {}
    matrix = {"k": {"key": "retrieval.k", "values": [0]},
              "strategy": {"values": {s: copy.deepcopy(values[s]) for s in plain.strategies if s in values}}}
    report = {"precision": base.report.get("precision", 3), "tables": copy.deepcopy(base.report.get("tables", []))}
    return EvalSection(model="plain_pretrain", protocol=copy.deepcopy(base.protocol), matrix=matrix,
                       report=report)  # fmt: skip


def _evaluation(cfg: DemoConfig, lay: Layout, name: str) -> Stage:
    section: EvalSection = _plain_section(cfg, name) if name in PLAIN_EVALUATIONS else getattr(cfg, name)
    protocol = _merge(section.protocol, _protocol_paths(name, section, lay))
    protocol.setdefault("seed", cfg.seed)
    out = lay.eval / name
    path = lay.configs / f"eval_{name}.yaml"
    depends = (section.model, "world", "clip", "bank")
    if section.matrix:
        ablation = {
            "name": f"demo_{name}", "description": _PROTOCOL_TITLES[name],
            "base": {"runner": _RUNNERS.get(name, name), "config": protocol},
            "matrix": copy.deepcopy(section.matrix), "exclude": copy.deepcopy(section.exclude),
            "run_name": section.run_name, "output_dir": str(out), "report": copy.deepcopy(section.report),
        }  # fmt: skip
        step = Step("ablate", ("ablate", str(path), "--out", str(out)), (out / "results.csv",))
        artefacts = {"results table": out / "results.md", "results csv": out / "results.csv"}
        configs = {path: ("ablation", ablation)}
    else:
        command = _RUNNERS.get(name, name).replace("_", "-")
        step = Step("protocol", ("eval", command, str(path), "--out", str(out)),
                    (out / "results.json",))  # fmt: skip
        artefacts = {"results": out / "results.json", "samples": out / "samples.png"}
        configs = {path: (f"runner:{_RUNNERS.get(name, name)}", protocol)}
    return Stage(name, _PROTOCOL_TITLES[name], (step,), configs=configs, artefacts=artefacts,
                 owns=(out,), depends=depends)  # fmt: skip


def _vq_ceiling(cfg: DemoConfig, lay: Layout) -> Stage:
    out = lay.eval / "vq_ceiling"
    images = lay.world / "pretrain" / cfg.vq_ceiling.split
    recon = out / "reconstructions"
    scenes = str(lay.world / "ground_truth" / "scenes.jsonl")
    steps = (
        Step("reconstruct", ("tokenizers", "reconstruct", str(images), "--tokenizer", str(lay.image_tok),
                             "--out", str(recon), "--limit", str(cfg.vq_ceiling.limit)),
             (recon / "COMPLETE",)),
        Step("score_reconstructions", ("world", "score", str(recon), "--scenes", scenes,
                                       "--out", str(out / "reconstructions.json")),
             (out / "reconstructions.json",)),
        Step("score_originals", ("world", "score", str(images), "--scenes", scenes, "--names-from", str(recon),
                                 "--out", str(out / "originals.json")), (out / "originals.json",)),
    )  # fmt: skip
    return Stage(
        "vq_ceiling", "Scorer ceiling: VQ reconstructions of real images",
        steps, artefacts={"scores (reconstructions)": out / "reconstructions.json",
                          "scores (originals)": out / "originals.json",
                          "reconstructions": recon},
        owns=(out,), depends=("world", "image_tokenizer"),
    )  # fmt: skip


def build_stages(cfg: DemoConfig, layout: Layout | None = None) -> list[Stage]:
    """The demo plan for ``cfg`` (stages in execution order; disabled evaluations left out).

    Raises:
        ConfigError: ``plain.enabled`` without a token budget or with unknown strategies.
    """
    lay = layout or Layout(cfg.out)
    plain = cfg.plain.enabled
    stages = [
        _world(cfg, lay),
        _documents(cfg, lay),
        _tokenizer(cfg, lay, "text"),
        _tokenizer(cfg, lay, "image"),
        *_retrieval(cfg, lay),
        _training(cfg, lay, "pretrain"),
        *([_plain_data(cfg, lay), _training(cfg, lay, "plain_pretrain")] if plain else []),
        _mixture(cfg, lay),
        _training(cfg, lay, "sft"),
    ]
    if cfg.vq_ceiling.enabled:
        stages.append(_vq_ceiling(cfg, lay))
    names = ["text_to_image", "tail_to_image", *(PLAIN_EVALUATIONS if plain else ()),
             "in_context", "captioning", "vqa", "editing"]  # fmt: skip
    for name in names:
        base = PLAIN_EVALUATIONS.get(name, name)
        if getattr(cfg, base).enabled and (base != "tail_to_image" or cfg.world.entity_docs):
            stages.append(_evaluation(cfg, lay, name))
    return stages
