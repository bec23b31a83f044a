"""Every extension point of cm3leon, in one file.

Plugins (built-in or third-party) answer the ``cm3leon_register_*`` hooks of
:mod:`cm3leon.core.hookspecs` with small frozen *spec* objects.  This module
defines those specs and folds the answers into typed :class:`Registry` objects,
remembering which distribution provided each component.  Reading this file is
reading the architecture: these are all the things a plugin can add.

=====================  ===============================  ============================
registry               hook                             what a component is
=====================  ===============================  ============================
``models``             ``cm3leon_register_models``      builder of a core transformer
``tokenizers``         ``cm3leon_register_tokenizers``  text or image tokenizer
``retrievers``         ``cm3leon_register_retrievers``  document retriever
``decoding``           ``cm3leon_register_decoding``    logits processor / selector
``tasks``              ``cm3leon_register_tasks``       SFT task template
``metrics``            ``cm3leon_register_metrics``     evaluation metric
``feature_extractors`` ``cm3leon_register_feature_...`` image features for FID etc.
``condition_extractors`` ``..._condition_extractors``   ControlNet-style conditions
``sources``            ``cm3leon_register_sources``     raw-data reader for shards
``callbacks``          ``cm3leon_register_callbacks``   Composer callback/algorithm
``config_schemas``     ``..._config_schemas``           schema for a configs/ folder
``commands``           ``cm3leon_register_commands``    ``cm3leon`` CLI subcommand
``runners``            ``cm3leon_register_runners``     one run of ``cm3leon ablate``
=====================  ===============================  ============================

Factories may be given as a callable or as an ``"package.module:attribute"``
string; strings are imported only when the component is used, so listing
plugins (and ``cm3leon --help``) never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "CallbackSpec",
    "CommandSpec",
    "ComponentSpec",
    "ConditionExtractorSpec",
    "ConfigSchemaSpec",
    "DecodingSpec",
    "DuplicateComponentError",
    "FeatureExtractorSpec",
    "MetricSpec",
    "ModelSpec",
    "Registration",
    "Registries",
    "Registry",
    "RetrieverSpec",
    "RunnerSpec",
    "SourceSpec",
    "TaskSpec",
    "TokenizerSpec",
    "UnknownComponentError",
    "REGISTRY_HOOKS",
    "build_registries",
    "resolve_object",
]


def resolve_object(ref: Any) -> Any:
    """Return ``ref`` itself, or import it when it is a ``"module:attr"`` string."""
    if not isinstance(ref, str):
        return ref
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"factory reference {ref!r} is not of the form 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import {module_name!r} for factory {ref!r}: {err}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ImportError(f"{module_name!r} has no attribute {attr!r} (factory {ref!r})") from err
    return obj


@dataclass(frozen=True)
class ComponentSpec:
    """Base of every spec: a unique ``name`` within its registry and a factory.

    Attributes:
        name: registry key, used in configs (``model.name: cm3leon_tiny``).
        factory: callable building the component, or a lazy ``"module:attr"`` string.
        description: one line shown by ``cm3leon plugins list``.
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"{type(self).__name__}.name must be a non-empty word, got {self.name!r}")

    def load(self) -> Callable[..., Any]:
        """Import (if needed) and return the factory."""
        obj = resolve_object(self.factory)
        if not callable(obj):
            raise TypeError(f"factory of {type(self).__name__} {self.name!r} is not callable: {obj!r}")
        return obj

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory."""
        return self.load()(*args, **kwargs)


@dataclass(frozen=True)
class ModelSpec(ComponentSpec):
    """A core-model builder (``factory(**overrides) -> nn.Module``)."""


@dataclass(frozen=True)
class TokenizerSpec(ComponentSpec):
    """A tokenizer.  ``modality`` says which half of the unified vocabulary it fills.

    ``loader`` (optional) re-creates a trained tokenizer from a directory.
    """

    modality: Literal["text", "image"] = "text"
    loader: Callable[..., Any] | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modality not in ("text", "image"):
            raise ValueError(f"TokenizerSpec {self.name!r}: modality must be 'text' or 'image'")


@dataclass(frozen=True)
class RetrieverSpec(ComponentSpec):
    """A retriever (``factory(**options) -> Retriever``)."""


@dataclass(frozen=True)
class DecodingSpec(ComponentSpec):
    """A decoding strategy piece.

    ``kind`` is ``"processor"`` (logits -> logits) or ``"selector"`` (logits -> token ids);
    ``options`` is the typed options dataclass the factory accepts, if any.
    """

    kind: Literal["processor", "selector"] = "processor"
    options: type | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("processor", "selector"):
            raise ValueError(f"DecodingSpec {self.name!r}: kind must be 'processor' or 'selector'")


@dataclass(frozen=True)
class TaskSpec(ComponentSpec):
    """An SFT task (``factory() -> Task``).

    ``inputs``/``outputs`` declare the modalities of the prompt and the target;
    ``reader`` (optional) turns files in the task's public format into records.
    """

    inputs: tuple[str, ...] = ("text",)
    outputs: tuple[str, ...] = ("image",)
    reader: Callable[..., Any] | str | None = None


@dataclass(frozen=True)
class MetricSpec(ComponentSpec):
    """An evaluation metric (``factory(**options) -> torchmetrics.Metric``)."""


@dataclass(frozen=True)
class FeatureExtractorSpec(ComponentSpec):
    """Image feature extractor for distribution metrics such as FID."""


@dataclass(frozen=True)
class ConditionExtractorSpec(ComponentSpec):
    """ControlNet-style condition extractor (``image -> condition image``)."""


@dataclass(frozen=True)
class SourceSpec(ComponentSpec):
    """Raw-data reader used by ``cm3leon data prepare --source NAME``.

    ``factory(path, **options)`` yields :class:`cm3leon.core.documents.Document` objects.
    """


@dataclass(frozen=True)
class CallbackSpec(ComponentSpec):
    """A Composer ``Callback`` or ``Algorithm`` selectable by name in training configs."""


@dataclass(frozen=True)
class ConfigSchemaSpec(ComponentSpec):
    """A structured config schema; ``factory`` is the dataclass.

    ``directories`` lists the folders under ``configs/`` whose YAML files use it.
    """

    directories: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandSpec(ComponentSpec):
    """A ``cm3leon`` subcommand.

    ``factory`` is a ``click.Command`` (usually a lazy ``"module:command"`` string) or a
    function returning one; the command is renamed to ``name`` if needed.
    """


@dataclass(frozen=True)
class RunnerSpec(ComponentSpec):
    """An experiment runner: one run of an ablation matrix (``cm3leon ablate``).

    ``factory(cfg, run_dir)`` executes one run and returns a JSON-serialisable mapping of
    results (``{"fid": 12.3, ...}``); ``cfg`` is an instance of ``schema`` (a dataclass, or a
    lazy ``"module:attr"`` string) or, without a schema, a plain ``dict``; ``run_dir`` is a
    private directory for the run's artefacts.
    """

    schema: type | str | None = None


SpecT = TypeVar("SpecT", bound=ComponentSpec)


@dataclass(frozen=True)
class Registration(Generic[SpecT]):
    """A spec together with the distribution (and plugin) that registered it."""

    spec: SpecT
    distribution: str
    version: str
    plugin: str


class UnknownComponentError(KeyError):
    """Raised when a configured name is not registered; lists the available names."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(RuntimeError):
    """Two plugins registered the same name in one registry."""


class Registry(Generic[SpecT]):
    """Name -> :class:`Registration` for one kind of component."""

    def __init__(self, kind: str, spec_type: type[SpecT]) -> None:
        self.kind = kind
        self.spec_type = spec_type
        self._entries: dict[str, Registration[SpecT]] = {}

    def add(self, registration: Registration[SpecT]) -> None:
        spec = registration.spec
        if not isinstance(spec, self.spec_type):
            raise TypeError(
                f"plugin {registration.plugin!r} ({registration.distribution}) returned "
                f"{type(spec).__name__} from the {self.kind} hook; expected {self.spec_type.__name__}"
            )
        previous = self._entries.get(spec.name)
        if previous is not None:
            raise DuplicateComponentError(
                f"{self.kind} {spec.name!r} is registered twice: by distribution "
                f"{previous.distribution!r} (plugin {previous.plugin!r}) and by distribution "
                f"{registration.distribution!r} (plugin {registration.plugin!r}). "
                "Rename one of them, or restrict loading with CM3LEON_LOAD_PLUGINS."
            )
        self._entries[spec.name] = registration

    def get(self, name: str, *, where: str | None = None) -> SpecT:
        """Return the spec called ``name``; ``where`` names the config key for errors."""
        try:
            return self._entries[name].spec
        except KeyError:
            at = f" (at {where})" if where else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}{at}; registered {self.kind}: {known}"
            ) from None

    def registration(self, name: str) -> Registration[SpecT]:
        self.get(name)
        return self._entries[name]

    def build(self, name: str, *args: Any, where: str | None = None, **kwargs: Any) -> Any:
        """Build the component ``name`` with the given arguments."""
        return self.get(name, where=where).build(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[SpecT]]:
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


# registry attribute -> (hook name, spec type).  The single source of truth.
REGISTRY_HOOKS: dict[str, tuple[str, type[ComponentSpec]]] = {
    "models": ("cm3leon_register_models", ModelSpec),
    "tokenizers": ("cm3leon_register_tokenizers", TokenizerSpec),
    "retrievers": ("cm3leon_register_retrievers", RetrieverSpec),
    "decoding": ("cm3leon_register_decoding", DecodingSpec),
    "tasks": ("cm3leon_register_tasks", TaskSpec),
    "metrics": ("cm3leon_register_metrics", MetricSpec),
    "feature_extractors": ("cm3leon_register_feature_extractors", FeatureExtractorSpec),
    "condition_extractors": ("cm3leon_register_condition_extractors", ConditionExtractorSpec),
    "sources": ("cm3leon_register_sources", SourceSpec),
    "callbacks": ("cm3leon_register_callbacks", CallbackSpec),
    "config_schemas": ("cm3leon_register_config_schemas", ConfigSchemaSpec),
    "commands": ("cm3leon_register_commands", CommandSpec),
    "runners": ("cm3leon_register_runners", RunnerSpec),
}


@dataclass
class Registries:
    """All registries, as filled by the loaded plugins."""

    models: Registry[ModelSpec] = field(default_factory=lambda: Registry("model", ModelSpec))
    tokenizers: Registry[TokenizerSpec] = field(
        default_factory=lambda: Registry("tokenizer", TokenizerSpec)
    )
    retrievers: Registry[RetrieverSpec] = field(
        default_factory=lambda: Registry("retriever", RetrieverSpec)
    )
    decoding: Registry[DecodingSpec] = field(
        default_factory=lambda: Registry("decoding strategy", DecodingSpec)
    )
    tasks: Registry[TaskSpec] = field(default_factory=lambda: Registry("task", TaskSpec))
    metrics: Registry[MetricSpec] = field(default_factory=lambda: Registry("metric", MetricSpec))
    feature_extractors: Registry[FeatureExtractorSpec] = field(
        default_factory=lambda: Registry("feature extractor", FeatureExtractorSpec)
    )
    condition_extractors: Registry[ConditionExtractorSpec] = field(
        default_factory=lambda: Registry("condition extractor", ConditionExtractorSpec)
    )
    sources: Registry[SourceSpec] = field(default_factory=lambda: Registry("source", SourceSpec))
    callbacks: Registry[CallbackSpec] = field(
        default_factory=lambda: Registry("callback", CallbackSpec)
    )
    config_schemas: Registry[ConfigSchemaSpec] = field(
        default_factory=lambda: Registry("config schema", ConfigSchemaSpec)
    )
    commands: Registry[CommandSpec] = field(
        default_factory=lambda: Registry("command", CommandSpec)
    )
    runners: Registry[RunnerSpec] = field(default_factory=lambda: Registry("runner", RunnerSpec))

    def all(self) -> Iterator[tuple[str, Registry[Any]]]:
        """Yield ``(attribute name, registry)`` for every registry, in table order."""
        for f in dataclasses.fields(self):
            yield f.name, getattr(self, f.name)


def build_registries(pm: pluggy.PluginManager, plugin_info: dict[str, tuple[str, str]]) -> Registries:
    """Call every registration hook plugin by plugin and fold the answers.

    Args:
        pm: a plugin manager with the cm3leon hookspecs and plugins registered.
        plugin_info: plugin name -> ``(distribution, version)``; plugins missing from
            it (registered programmatically) are reported as distribution ``"<local>"``.

    Raises:
        DuplicateComponentError: two plugins registered the same name in one registry.
        TypeError: a hook returned something that is not a list of the right specs.
    """
    registries = Registries()
    for attr, (hook_name, _spec_type) in REGISTRY_HOOKS.items():
        registry: Registry[Any] = getattr(registries, attr)
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name
            others = [p for p in pm.get_plugins() if p is not impl.plugin]
            # Calling through a subset caller keeps pluggy's tracing and monitoring.
            results = pm.subset_hook_caller(hook_name, remove_plugins=others)()
            dist, version = plugin_info.get(plugin_name, ("<local>", ""))
            for result in results:
                if result is None:
                    continue
                if not isinstance(result, (list, tuple)):
                    raise TypeError(
                        f"{hook_name} of plugin {plugin_name!r} ({dist}) must return a list of "
                        f"specs, got {type(result).__name__}"
                    )
                for spec in result:
                    registry.add(Registration(spec, dist, version, plugin_name))
    return registries
