"""Behavioural conformance suite for raw-data sources (``cm3leon_register_sources``).

A source is ``factory(path, **options) -> iterable of Document`` (what
``cm3leon data prepare --source NAME PATH`` reads).  Subclass :class:`SourceConformance`,
name the source and supply two inputs: a small valid one, and one holding a bad record
together with the text the error must contain (the file, the line or the record id)::

    import pytest
    from cm3leon.core.testing import SourceConformance

    class TestMySource(SourceConformance):
        name = "my_csv"

        @pytest.fixture
        def good_input(self, tmp_path):
            path = tmp_path / "ok.csv"
            path.write_text("caption,image\\na cat,cat.png\\n")
            return path

        @pytest.fixture
        def bad_input(self, tmp_path):
            path = tmp_path / "bad.csv"
            path.write_text("caption,image\\n,missing.png\\na dog,dog.png\\n")
            return path, f"{path}:2"

The checks: the source yields at least one :class:`~cm3leon.core.documents.Document`,
each non-empty, with a unique non-empty id and a lossless JSON form (what document shards
store); reading twice gives the same documents; a bad record raises ``ValueError`` whose
message names it; and when the factory accepts ``skip_bad``, ``skip_bad=True`` skips the
record instead, listing it in the source's ``skipped`` as ``(where, reason)`` with
``where`` naming it, and still yields the good documents.  A source that can be prepared
in parallel (a ``parts(size)`` method, :mod:`cm3leon.core.prepare_parallel`) must give
parts with distinct labels whose documents, concatenated, are the whole source's.

Requires pytest.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any, ClassVar

import pytest

from cm3leon.core.documents import Document
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import SourceSpec

__all__ = ["SourceConformance"]


class SourceConformance:
    """Checks every registered source must pass; subclass, set :attr:`name`, supply inputs.

    Attributes:
        name: the registered source name.
        options: keyword options of the factory.
        max_documents: documents read by the checks (sources may be long or endless).
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    max_documents: ClassVar[int] = 16

    @pytest.fixture
    def source_name(self) -> str:
        return self.name

    @pytest.fixture
    def source_options(self) -> dict[str, Any]:
        return dict(self.options)

    @pytest.fixture
    def registries(self) -> Any:
        """The registries to look the component up in (override to test an uninstalled plugin)."""
        return get_registries()

    @pytest.fixture
    def spec(self, registries: Any, source_name: str) -> SourceSpec:
        return registries.sources.get(source_name)

    @pytest.fixture
    def good_input(self) -> Any:
        """A small valid ``path`` for the factory; a subclass must supply it."""
        pytest.fail(f"{type(self).__name__} must define the `good_input` fixture of source {self.name!r}")

    @pytest.fixture
    def bad_input(self) -> tuple[Any, str]:
        """``(path, text the error must contain)`` of an input with one bad record."""
        pytest.fail(f"{type(self).__name__} must define the `bad_input` fixture of source {self.name!r}")

    def _read(self, spec: SourceSpec, path: Any, options: dict[str, Any]) -> tuple[Any, list[Any]]:
        source = spec.build(path, **options)
        return source, list(itertools.islice(iter(source), self.max_documents))

    def test_yields_documents(self, spec: SourceSpec, good_input: Any, source_options: dict[str, Any]) -> None:
        _, docs = self._read(spec, good_input, source_options)
        assert docs, f"{spec.name}: yielded no document from {good_input}"
        ids = [doc.id for doc in docs if isinstance(doc, Document)]
        assert len(ids) == len(docs), f"{spec.name}: yielded {[type(d).__name__ for d in docs]}, not Documents"
        assert all(ids) and len(set(ids)) == len(ids), f"{spec.name}: ids must be unique and non-empty: {ids}"
        for doc in docs:
            assert doc.segments and not doc.is_empty(), f"{spec.name}: document {doc.id!r} is empty"
            assert Document.from_json(doc.to_json()) == doc, f"{spec.name}: document {doc.id!r} is not lossless in JSON"

    def test_reads_the_same_twice(self, spec: SourceSpec, good_input: Any, source_options: dict[str, Any]) -> None:
        _, first = self._read(spec, good_input, source_options)
        _, second = self._read(spec, good_input, source_options)
        assert first == second, f"{spec.name}: two reads of {good_input} differ"

    def test_bad_record_is_named(self, spec: SourceSpec, bad_input: tuple[Any, str],
                                 source_options: dict[str, Any]) -> None:  # fmt: skip
        path, where = bad_input
        with pytest.raises(ValueError) as info:
            self._read(spec, path, source_options)
        assert where in str(info.value), f"{spec.name}: error {str(info.value)!r} does not name {where!r}"

    def test_skip_bad_lists_the_record(self, spec: SourceSpec, bad_input: tuple[Any, str],
                                       source_options: dict[str, Any]) -> None:  # fmt: skip
        if "skip_bad" not in inspect.signature(spec.load()).parameters:
            pytest.skip(f"{spec.name} has no skip_bad option")
        path, where = bad_input
        source, docs = self._read(spec, path, {**source_options, "skip_bad": True})
        skipped = getattr(source, "skipped", None)
        assert skipped, f"{spec.name}: skip_bad=True must list skipped records in `skipped`"
        assert any(where in str(w) for w, _reason in skipped), f"{spec.name}: skipped {skipped} does not name {where!r}"
        assert docs and all(isinstance(d, Document) for d in docs), f"{spec.name}: no good document after the bad one"

    def test_parts_concatenate_to_the_source(self, spec: SourceSpec, good_input: Any,
                                             source_options: dict[str, Any]) -> None:  # fmt: skip
        whole = spec.build(good_input, **source_options)
        if not callable(getattr(whole, "parts", None)):
            pytest.skip(f"{spec.name} has no parts(size): it is prepared by one process")
        docs = list(whole)
        for size in (1, 2):
            parts = whole.parts(size)
            labels = [label for label, _ in parts]
            assert len(set(labels)) == len(labels), f"{spec.name}: part labels repeat: {labels}"
            joined = [doc for _, part in parts for doc in part]
            assert joined == docs, f"{spec.name}: parts({size}) of {good_input} do not concatenate to the source"
