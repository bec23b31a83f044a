"""Conformance suite for registered model builders (subclass it in a plugin's tests).

The trainer and the decoder use a model only through this contract:

* ``factory(**overrides) -> nn.Module`` with ``.config.vocab_size`` and ``.config.max_seq_len``;
* ``model(input_ids, *, position_ids=None, doc_ids=None, attention_mask=None) -> (B, T, V)``,
  ``doc_ids`` isolating packed documents;
* ``model.new_cache(batch_size, max_len)`` and
  ``model.forward_cached(ids, cache, *, position_ids=None, attention_mask=None)``
  equal to the full forward pass, left padding included;
* ``ValueError`` for ids outside ``[0, vocab_size)`` and for sequences longer than
  ``max_seq_len``.

Usage::

    from cm3leon.core.model.testing import ModelConformance

    class TestMyModel(ModelConformance):
        name = "my_model"
        build_kwargs = {"vocab_size": 64, "max_seq_len": 32}
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.testing import ComponentConformance

__all__ = ["ModelConformance"]


class ModelConformance(ComponentConformance):
    """Checks every model builder must pass; set ``name`` and small ``build_kwargs``."""

    registry: ClassVar[str] = "models"
    build_kwargs: ClassVar[dict[str, Any]] = {}
    #: absolute tolerance of cached vs full logits (the model is built in float64)
    atol: ClassVar[float] = 1e-10

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> torch.nn.Module:
        torch.manual_seed(0)
        model = get_registries().models.build(cls.name, **cls.build_kwargs).double().eval()
        with torch.no_grad():  # zero-initialised output layers would make checks vacuous
            for p in model.parameters():
                p.normal_(0.0, 0.2)
        return model

    def _ids(self, model: torch.nn.Module, batch: int, length: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(batch * 1000 + length)
        return torch.randint(0, model.config.vocab_size, (batch, length), generator=g)

    def test_forward_shape(self, model: torch.nn.Module) -> None:
        ids = self._ids(model, 2, 6)
        assert model(ids).shape == (2, 6, model.config.vocab_size)

    def test_packed_documents_are_isolated(self, model: torch.nn.Module) -> None:
        a, b = self._ids(model, 1, 4), self._ids(model, 1, 5)
        doc_ids = torch.tensor([[0] * 4 + [1] * 5])
        packed = model(torch.cat([a, b], 1), doc_ids=doc_ids)
        alone = torch.cat([model(a), model(b)], 1)
        torch.testing.assert_close(packed, alone, rtol=0, atol=self.atol)

    def test_cached_equals_full_with_left_padding(self, model: torch.nn.Module) -> None:
        ids = self._ids(model, 2, 10)
        mask = torch.ones(2, 10, dtype=torch.bool)
        mask[1, :3] = False
        full = model(ids, attention_mask=mask)
        cache = model.new_cache(2, 10)
        steps = [model.forward_cached(ids[:, :6], cache, attention_mask=mask[:, :6])]
        steps += [model.forward_cached(ids[:, i : i + 1], cache) for i in range(6, 10)]
        real = mask[:, :, None]
        torch.testing.assert_close(torch.cat(steps, 1) * real, full * real, rtol=0, atol=self.atol)

    def test_bad_input_is_rejected(self, model: torch.nn.Module) -> None:
        ids = self._ids(model, 1, 3)
        ids[0, 1] = model.config.vocab_size
        with pytest.raises(ValueError, match="out of range"):
            model(ids)
        too_long = torch.zeros(1, model.config.max_seq_len + 1, dtype=torch.long)
        with pytest.raises(ValueError, match="max_seq_len"):
            model(too_long)
