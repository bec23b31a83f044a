"""Hook specifications: the complete list of cm3leon extension points.

A plugin is a module (or object) exposed through the ``cm3leon`` entry-point
group whose functions are marked with :data:`hookimpl` and named after the
hooks below.  Every hook takes no arguments and returns a list of frozen spec
objects from :mod:`cm3leon.core.registry`; core folds them into registries.

Rules common to every hook:

* **When it is called**: once per :func:`cm3leon.core.plugin_manager.get_registries`
  (cached per process), after all plugins are loaded and ``check_pending()``
  passed, i.e. the first time a command, config or API needs a component.
* **What it returns**: a list (possibly empty) of specs of the documented type;
  returning ``None`` is the same as returning ``[]``.
* **Name clashes**: a name registered twice in the same registry, by the same or
  by different distributions, raises
  :class:`cm3leon.core.registry.DuplicateComponentError` naming both
  distributions.  Nothing is silently overridden.

The built-in components of the six ``cm3leon-*`` packages are registered
through these same hooks, so every built-in is also an example of a plugin.
"""

from __future__ import annotations

import pluggy

from cm3leon.core.registry import (
    CallbackSpec,
    CommandSpec,
    ConditionExtractorSpec,
    ConfigSchemaSpec,
    DecodingSpec,
    FeatureExtractorSpec,
    MetricSpec,
    ModelSpec,
    RetrieverSpec,
    RunnerSpec,
    SourceSpec,
    TaskSpec,
    TokenizerSpec,
)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "cm3leon"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def cm3leon_register_models() -> list[ModelSpec]:
    """Register core-model builders.

    Called when a config names a model (``model.name``) or when plugins are listed.
    Returns :class:`ModelSpec` objects whose factory accepts keyword overrides of the
    architecture (e.g. ``max_seq_len``) and returns a ``torch.nn.Module``.
    Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_tokenizers() -> list[TokenizerSpec]:
    """Register text and image tokenizers.

    Called when a config or command names a tokenizer (``tokenizer.text.name``,
    ``tokenizer.image.name``).  Returns :class:`TokenizerSpec` objects; ``modality``
    says whether the tokenizer fills the text or the image block of the unified
    vocabulary, ``factory(**options)`` builds an untrained tokenizer and ``loader(path)``
    restores a trained one.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_retrievers() -> list[RetrieverSpec]:
    """Register document retrievers (dense CLIP bi-encoder, BM25, ...).

    Called when retrieval-augmented shards are written, when a prompt is augmented at
    inference, and by ``cm3leon retrieval``.  Returns :class:`RetrieverSpec` objects
    whose ``factory(**options)`` returns an object satisfying
    :class:`cm3leon.core.interfaces.Retriever`.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_decoding() -> list[DecodingSpec]:
    """Register decoding strategy pieces: logits processors and token selectors.

    Called when a generation config names its processors/selector.  Returns
    :class:`DecodingSpec` objects; ``kind="processor"`` factories return callables
    ``(logits, state) -> logits`` and ``kind="selector"`` factories return callables
    ``(logits, generator) -> token ids``; ``options`` is the options dataclass.
    Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_tasks() -> list[TaskSpec]:
    """Register supervised fine-tuning tasks (Table 5 templates and new ones).

    Called when an SFT mixture is built, by ``cm3leon data prepare --task NAME`` and by the
    task conformance suite.  Returns :class:`TaskSpec` objects whose ``factory()`` returns a
    :class:`cm3leon.core.interfaces.Task` and whose optional ``reader`` parses the task's
    public file format.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_metrics() -> list[MetricSpec]:
    """Register evaluation metrics (FID, CLIP score, CIDEr-D, VQA accuracy, ...).

    Called by evaluation protocols and ablation runs that name metrics.  Returns
    :class:`MetricSpec` objects whose ``factory(**options)`` returns a
    ``torchmetrics.Metric`` (so values reduce correctly across ranks).
    Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_feature_extractors() -> list[FeatureExtractorSpec]:
    """Register image feature extractors used by distribution metrics (FID).

    Called when a metric is configured with ``features: NAME``.  Returns
    :class:`FeatureExtractorSpec` objects whose ``factory(**options)`` returns a module
    mapping a float image batch ``(B, 3, H, W)`` in ``[0, 1]`` to features ``(B, D)``.
    Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_condition_extractors() -> list[ConditionExtractorSpec]:
    """Register ControlNet-style condition extractors (edges, depth, pose, ...).

    Called by condition-to-image tasks when they render a record.  Returns
    :class:`ConditionExtractorSpec` objects whose ``factory(**options)`` returns a callable
    ``(image, record) -> PIL.Image``.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_sources() -> list[SourceSpec]:
    """Register raw-data readers for ``cm3leon data prepare --source NAME``.

    Called when raw data is turned into shards.  Returns :class:`SourceSpec` objects whose
    ``factory(path, **options)`` yields :class:`cm3leon.core.documents.Document` objects.
    Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_callbacks() -> list[CallbackSpec]:
    """Register Composer callbacks and algorithms selectable by name in training configs.

    Called by :func:`cm3leon.core.train.train` while it builds the Trainer.  Returns
    :class:`CallbackSpec` objects whose ``factory(**options)`` returns a
    ``composer.Callback`` or ``composer.Algorithm``: callbacks are passed to
    ``Trainer(callbacks=)``, algorithms to ``Trainer(algorithms=)`` (listed after the
    built-in gradient clipping), each in config order; anything else is a
    ``ConfigError`` naming the ``callbacks[i]`` entry.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    """Register structured config schemas and the ``configs/`` folders that use them.

    Called by commands that load a config of a given kind and by the test that validates
    every shipped YAML.  Returns :class:`ConfigSchemaSpec` objects whose ``factory`` is the
    dataclass schema.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_commands() -> list[CommandSpec]:
    """Register ``cm3leon`` subcommands.

    Called when the ``cm3leon`` console script lists or dispatches commands.  Returns
    :class:`CommandSpec` objects whose ``factory()`` returns a ``click.Command`` (often a
    group) named like the spec; the factory is only called when that command runs or its
    help is shown.  Name clash: :class:`DuplicateComponentError`.
    """


@hookspec
def cm3leon_register_runners() -> list[RunnerSpec]:
    """Register experiment runners that ``cm3leon ablate`` executes once per matrix cell.

    Called when an ablation file names its runner (``base.runner``) and when plugins are
    listed.  Returns :class:`RunnerSpec` objects whose ``factory(cfg, run_dir)`` runs one
    configuration (``cfg`` validated against the spec's ``schema`` dataclass, if any) and
    returns a JSON-serialisable mapping of results.  Name clash:
    :class:`DuplicateComponentError`.
    """
