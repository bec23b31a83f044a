"""Behavioural conformance suite for decoding pieces (``cm3leon_register_decoding``).

Subclass :class:`DecodingConformance`, name the registered piece and (optionally) the
values of its options dataclass::

    from cm3leon.core.testing import DecodingConformance

    class TestMyProcessor(DecodingConformance):
        name = "typical_p"
        options = {"mass": 0.9}

The piece is built as ``spec.factory(options_type(**options))`` (``None`` without an
options type).  The contract, by the spec's ``kind``:

* ``processor`` -- a plain processor maps scores ``(B, V) -> (B, V)``; a guidance piece
  (one with a ``streams`` attribute) maps the ``S = len(streams)`` streams
  ``(S, B, V) -> (B, V)``.  The output keeps the input dtype, holds no ``nan`` and no
  ``+inf``, keeps at least one finite score per row, and is ``-inf`` wherever a column is
  ``-inf`` in every stream (a banned token stays banned).  The input is not modified; the
  result is deterministic and each row depends on its own row only.
* ``selector`` -- ``(B, V) -> (B,)`` integer ids in ``[0, V)``; never a ``-inf`` column;
  the only finite column when a row has one; the same ids for the same generator seed.

Requires pytest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import DecodingSpec, resolve_object

__all__ = ["DecodingConformance", "ProbeState", "build_decoding_piece"]

_NEG_INF = float("-inf")


@dataclass
class ProbeState:
    """What processors receive besides the logits (mirrors ``cm3leon.decoding.processors.DecodeState``).

    Attributes:
        step: index of the token being chosen within the output span.
        generated: ``(B, step)`` global ids chosen so far.
        offset: global id of logits column 0.
    """

    step: int
    generated: torch.Tensor
    offset: int = 0


def _same_scores(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same ``-inf`` pattern and close finite scores."""
    finite = torch.isfinite(a)
    return torch.equal(torch.isneginf(a), torch.isneginf(b)) and torch.equal(finite, torch.isfinite(b)) and bool(
        torch.allclose(a[finite], b[finite], rtol=1e-5, atol=1e-6)
    )


def build_decoding_piece(spec: DecodingSpec, options: dict[str, Any]) -> Any:
    """``spec.factory(options_type(**options))``, or ``spec.factory(None)`` without an options type."""
    if spec.options is None:
        if options:
            raise ValueError(f"decoding piece {spec.name!r} takes no options, got {sorted(options)}")
        return spec.build(None)
    return spec.build(resolve_object(spec.options)(**options))


class DecodingConformance:
    """Checks every registered decoding piece must pass; subclass and set :attr:`name`.

    Attributes:
        name: the registered piece name.
        options: values of its options dataclass.
        batch, vocab: size of the probe score matrices ``(batch, vocab)``.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    batch: ClassVar[int] = 4
    vocab: ClassVar[int] = 48

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def piece_name(self) -> str:
        return self.name

    @pytest.fixture
    def piece_options(self) -> dict[str, Any]:
        return dict(self.options)

    @pytest.fixture
    def registries(self) -> Any:
        """The registries to look the component up in (override to test an uninstalled plugin)."""
        return get_registries()

    @pytest.fixture
    def spec(self, registries: Any, piece_name: str) -> DecodingSpec:
        return registries.decoding.get(piece_name)

    @pytest.fixture
    def piece(self, spec: DecodingSpec, piece_options: dict[str, Any]) -> Any:
        return build_decoding_piece(spec, piece_options)

    # --------------------------------------------------------------- helpers
    def _streams(self, piece: Any) -> int | None:
        streams = getattr(piece, "streams", None)
        return None if streams is None else len(streams)

    def _scores(self, piece: Any, seed: int = 0) -> torch.Tensor:
        """``(B, V)`` or ``(S, B, V)`` random scores with banned columns: -inf in every stream."""
        g = torch.Generator().manual_seed(seed)
        s = self._streams(piece)
        shape = (self.batch, self.vocab) if s is None else (s, self.batch, self.vocab)
        scores = torch.randn(shape, generator=g) * 3.0
        scores[..., self.banned()] = _NEG_INF
        scores[..., 0, 1] = _NEG_INF  # banned in row 0 only
        return scores

    def banned(self) -> list[int]:
        """Columns banned in every row and stream of the probe scores."""
        return [0, 5, self.vocab - 1]

    def _process(self, piece: Any, scores: torch.Tensor) -> torch.Tensor:
        state = ProbeState(step=1, generated=torch.full((self.batch, 1), 7, dtype=torch.long))
        return piece(scores, state)

    def _skip_unless(self, spec: DecodingSpec, kind: str) -> None:
        if spec.kind != kind:
            pytest.skip(f"{spec.name} is a {spec.kind}")

    # ---------------------------------------------------------- processors
    def test_processor_shape_and_finite(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "processor")
        scores = self._scores(piece)
        before = scores.clone()
        out = self._process(piece, scores)
        assert torch.equal(scores, before), f"{spec.name}: modified its input in place"
        assert isinstance(out, torch.Tensor) and out.shape == (self.batch, self.vocab), (
            f"{spec.name}: {tuple(scores.shape)} -> {getattr(out, 'shape', type(out))}, expected {(self.batch, self.vocab)}"
        )
        assert out.dtype == scores.dtype, f"{spec.name}: dtype {scores.dtype} -> {out.dtype}"
        assert not torch.isnan(out).any(), f"{spec.name}: nan in the output"
        assert not torch.isposinf(out).any(), f"{spec.name}: +inf in the output"
        assert torch.isfinite(out).any(dim=-1).all(), f"{spec.name}: a row lost every finite score"

    def test_processor_keeps_banned_tokens_banned(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "processor")
        scores = self._scores(piece)
        out = self._process(piece, scores)
        banned = torch.isneginf(scores).all(dim=0) if self._streams(piece) else torch.isneginf(scores)  # (B, V)
        assert torch.isneginf(out[banned]).all(), f"{spec.name}: a banned (-inf) token got a finite score"

    def test_processor_deterministic_and_row_wise(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "processor")
        scores = self._scores(piece, seed=1)
        out = self._process(piece, scores)
        assert torch.equal(out, self._process(piece, scores.clone())), f"{spec.name}: not deterministic"
        perm = torch.arange(self.batch).flip(0)  # the same rows in another order
        permuted = self._process(piece, scores[..., perm, :])
        assert _same_scores(permuted, out[perm]), f"{spec.name}: a row's scores depend on the other rows"

    # ------------------------------------------------------------ selectors
    def _select(self, piece: Any, scores: torch.Tensor, seed: int) -> torch.Tensor:
        return piece(scores, torch.Generator().manual_seed(seed))

    def test_selector_returns_valid_ids(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "selector")
        scores = self._scores(piece)
        for seed in range(8):
            ids = self._select(piece, scores, seed)
            assert isinstance(ids, torch.Tensor) and ids.shape == (self.batch,), f"{spec.name}: ids {ids!r}"
            assert not ids.is_floating_point(), f"{spec.name}: ids of dtype {ids.dtype}"
            assert ((ids >= 0) & (ids < self.vocab)).all(), f"{spec.name}: ids {ids.tolist()} outside [0, {self.vocab})"
            chosen = scores.gather(-1, ids[:, None].long())
            assert torch.isfinite(chosen).all(), f"{spec.name}: selected a banned (-inf) token: {ids.tolist()}"

    def test_selector_takes_the_only_allowed_token(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "selector")
        scores = torch.full((self.batch, self.vocab), _NEG_INF)
        only = torch.arange(self.batch) * 3 + 2  # (B,)
        scores[torch.arange(self.batch), only] = torch.linspace(-5.0, 5.0, self.batch)
        for seed in range(4):
            assert self._select(piece, scores, seed).tolist() == only.tolist(), f"{spec.name}: ignored the only token"

    def test_selector_deterministic_given_seed(self, spec: DecodingSpec, piece: Any) -> None:
        self._skip_unless(spec, "selector")
        scores = self._scores(piece, seed=2)
        assert torch.equal(self._select(piece, scores, 3), self._select(piece, scores.clone(), 3)), (
            f"{spec.name}: different ids for the same generator seed"
        )
