"""Every extension point of cm3leon, in one file.

Plugins (built-in or third-party) answer the ``cm3leon_register_*`` hooks of
:mod:`cm3leon.core.hookspecs` with small frozen *spec* objects.  This module
defines those specs and folds the answers into typed :class:`Registry` objects,
remembering which distribution provided each component.  Reading this file is
reading the architecture: :data:`REGISTRY_KINDS` at the bottom lists all the
things a plugin can add.

That table is the one source of truth: the attributes of :class:`Registries`
(``get_registries().tokenizers``), the hook each registry is filled from
(``cm3leon_register_<attribute>``), :meth:`Registries.all`, ``cm3leon plugins list``
and ``docs/hooks.md`` derive from it.  A new component kind is one table entry,
its spec class, and the typed hook declaration in :mod:`cm3leon.core.hookspecs`
that pluggy needs (``tests/test_docs.py`` fails while the table, the hookspecs and
``docs/hooks.md`` disagree).

Factories may be given as a callable or as an ``"package.module:attribute"``
string; strings are imported only when the component is used, so listing
plugins (and ``cm3leon --help``) never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    "FactoryImportError",
    "FeatureExtractorSpec",
    "MetricSpec",
    "ModelSpec",
    "PluginError",
    "Registration",
    "Registries",
    "Registry",
    "RetrieverSpec",
    "RunnerSpec",
    "SourceSpec",
    "TaskSpec",
    "TokenizerSpec",
    "UnknownComponentError",
    "REGISTRY_KINDS",
    "RegistryKind",
    "build_registries",
    "resolve_object",
]


class FactoryImportError(ImportError):
    """A lazy ``"package.module:attribute"`` string does not resolve.

    The message is one line: who registered it (``plugin 'dist', task 'name', reader``
    when the spec came from a registry), the string and the import error; the original
    exception is the ``__cause__``.  ``cm3leon`` commands print it as one ``Error:`` line.
    """


def resolve_object(ref: Any, *, owner: str = "") -> Any:
    """Return ``ref`` itself, or import it when it is a ``"module:attr"`` string.

    Args:
        ref: an object, or a ``"package.module:attribute"`` string (dotted attributes allowed).
        owner: who declared ``ref``, put first in error messages
            (:meth:`ComponentSpec.resolve` passes the plugin and the component).

    Raises:
        FactoryImportError: the string is malformed, its module fails to import (any
            exception while importing it), or the attribute is missing.
    """
    if not isinstance(ref, str):
        return ref
    where = f"{owner}: " if owner else ""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise FactoryImportError(f"{where}{ref!r} is not of the form 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or whatever the module raised while importing
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise FactoryImportError(f"{where}cannot import {module_name!r} of {ref!r}: {reason}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise FactoryImportError(f"{where}module {module_name!r} has no attribute {attr!r} ({ref!r})") from err
    return obj


@dataclass(frozen=True)
class ComponentSpec:
    """Base of every spec: a unique ``name`` within its registry and a factory.

    Attributes:
        name: registry key, used in configs (``model.name: cm3leon_tiny``).
        factory: callable building the component, or a lazy ``"module:attr"`` string.
        description: one line shown by ``cm3leon plugins list``.

    :meth:`Registry.add` remembers the distribution that registered the spec (not a
    dataclass field: it is not part of the spec's value), so that a lazy string that does
    not import names its plugin (:class:`FactoryImportError`).
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"{type(self).__name__}.name must be a non-empty word, got {self.name!r}")

    @property
    def registered_by(self) -> str:
        """The distribution that registered this spec (``""`` before it is registered)."""
        return str(self.__dict__.get("_registered_by", ""))

    def resolve(self, attribute: str = "factory") -> Any:
        """Return the spec's ``attribute`` (``factory``, ``reader``, ``loader``, ...), imported if lazy.

        Raises:
            FactoryImportError: naming the plugin, this component, the string and the error.
        """
        kind = next((k.label for k in REGISTRY_KINDS if type(self) is k.spec), type(self).__name__)
        plugin = f"plugin distribution {self.registered_by!r}, " if self.registered_by else ""
        return resolve_object(getattr(self, attribute), owner=f"{plugin}{kind} {self.name!r}, {attribute}")

    def load(self) -> Callable[..., Any]:
        """Import (if needed) and return the factory (errors: :meth:`resolve`)."""
        obj = self.resolve("factory")
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
    """A retriever (``factory(**options) -> Retriever``).

    ``memory_bank``: it searches a memory bank built from documents (``factory(documents=,
    ...)`` or ``bank=``) with the §2.1 strategy -- the retriever contract of
    ``tests/retrieval/test_retrievers.py`` applies.  ``False`` for evaluation oracles that
    look a prompt's document up by its text (cm3leon-eval's ``lookup``).
    """

    memory_bank: bool = True


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


class PluginError(RuntimeError):
    """A plugin could not be loaded, does not match the hook specifications, or its hook raised.

    The message names the plugin's distribution and version.  Also exported by
    :mod:`cm3leon.core.plugin_manager`.
    """


def _origin(dist: str, version: str) -> str:
    return f"distribution {dist!r} {version}" if version else f"distribution {dist!r}"


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
        # Not a field (specs compare by value); lets FactoryImportError name the plugin.
        object.__setattr__(spec, "_registered_by", registration.distribution)
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


@dataclass(frozen=True)
class RegistryKind:
    """One kind of component: a registry attribute, its spec class and the hook filling it.

    Attributes:
        attr: attribute of :class:`Registries` and ``--kind`` of ``cm3leon plugins list``.
        spec: the spec class every hook answer must be an instance of.
        label: singular noun used in error messages (``unknown tokenizer 'x'``).
    """

    attr: str
    spec: type[ComponentSpec]
    label: str

    @property
    def hook(self) -> str:
        """The hook name, ``cm3leon_register_<attr>`` (declared in :mod:`cm3leon.core.hookspecs`)."""
        return f"cm3leon_register_{self.attr}"


# Every kind of component, in display order.  The single source of truth (module docstring).
REGISTRY_KINDS: tuple[RegistryKind, ...] = (
    RegistryKind("models", ModelSpec, "model"),  # builder of a core transformer
    RegistryKind("tokenizers", TokenizerSpec, "tokenizer"),  # text or image tokenizer
    RegistryKind("retrievers", RetrieverSpec, "retriever"),  # document retriever
    RegistryKind("decoding", DecodingSpec, "decoding strategy"),  # logits processor / selector
    RegistryKind("tasks", TaskSpec, "task"),  # SFT task template
    RegistryKind("metrics", MetricSpec, "metric"),  # evaluation metric
    RegistryKind("feature_extractors", FeatureExtractorSpec, "feature extractor"),  # FID features
    RegistryKind("condition_extractors", ConditionExtractorSpec, "condition extractor"),  # ControlNet
    RegistryKind("sources", SourceSpec, "source"),  # raw-data reader for shards
    RegistryKind("callbacks", CallbackSpec, "callback"),  # Composer callback / algorithm
    RegistryKind("config_schemas", ConfigSchemaSpec, "config schema"),  # schema of a configs/ folder
    RegistryKind("commands", CommandSpec, "command"),  # `cm3leon` CLI subcommand
    RegistryKind("runners", RunnerSpec, "runner"),  # one run of `cm3leon ablate`
)


class Registries:
    """All registries, one per :data:`REGISTRY_KINDS` entry, as filled by the loaded plugins.

    ``registries.tokenizers`` (any table ``attr``) is that kind's :class:`Registry`;
    ``registries["tokenizers"]`` is the same.  Attributes are created from the table,
    so static type checkers see them through :meth:`__getattr__` as ``Registry[Any]``;
    the spec type is checked at run time by :meth:`Registry.add`.
    """

    def __init__(self) -> None:
        self._registries: dict[str, Registry[Any]] = {k.attr: Registry(k.label, k.spec) for k in REGISTRY_KINDS}

    def __getattr__(self, attr: str) -> Registry[Any]:
        # Only called when normal lookup fails, i.e. for the registry attributes.
        registries = self.__dict__.get("_registries", {})
        if attr in registries:
            return registries[attr]
        raise AttributeError(f"no registry {attr!r}; registries: {', '.join(registries)}")

    def __getitem__(self, attr: str) -> Registry[Any]:
        try:
            return self._registries[attr]
        except KeyError:
            raise KeyError(f"no registry {attr!r}; registries: {', '.join(self._registries)}") from None

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._registries]

    def all(self) -> Iterator[tuple[str, Registry[Any]]]:
        """Yield ``(attribute name, registry)`` for every registry, in table order."""
        yield from self._registries.items()

    def __repr__(self) -> str:
        return f"Registries({', '.join(f'{a}={len(r)}' for a, r in self._registries.items())})"


def build_registries(pm: pluggy.PluginManager, plugin_info: dict[str, tuple[str, str]]) -> Registries:
    """Call every registration hook plugin by plugin and fold the answers.

    Args:
        pm: a plugin manager with the cm3leon hookspecs and plugins registered.
        plugin_info: plugin name -> ``(distribution, version)``; plugins missing from
            it (registered programmatically) are reported as distribution ``"<local>"``.

    Raises:
        DuplicateComponentError: two plugins registered the same name in one registry.
        PluginError: a plugin's hook raised (names its distribution and version).
        TypeError: a hook returned something that is not a list of the right specs.
    """
    registries = Registries()
    for kind in REGISTRY_KINDS:
        hook_name, registry = kind.hook, registries[kind.attr]
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name
            others = [p for p in pm.get_plugins() if p is not impl.plugin]
            dist, version = plugin_info.get(plugin_name, ("<local>", ""))
            try:  # a subset caller keeps pluggy's tracing and monitoring
                results = pm.subset_hook_caller(hook_name, remove_plugins=others)()
            except Exception as err:
                raise PluginError(
                    f"{hook_name} of plugin {plugin_name!r} from {_origin(dist, version)} raised "
                    f"{type(err).__name__}: {err}"
                ) from err
            for result in results:
                if result is None:
                    continue
                if not isinstance(result, (list, tuple)):
                    raise TypeError(
                        f"{hook_name} of plugin {plugin_name!r} ({_origin(dist, version)}) must return "
                        f"a list of specs, got {type(result).__name__}"
                    )
                for spec in result:
                    registry.add(Registration(spec, dist, version, plugin_name))
    return registries
