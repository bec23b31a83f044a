"""CLIP features for FID through any DocumentEncoder (found by name in the registries)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.core.registry import FeatureExtractorSpec
from cm3leon.eval.metrics.features import (
    ClipFeatureExtractor,
    EncoderNotFoundError,
    clip_extractor,
    resolve_document_encoder,
    tensor_to_pil,
)
from cm3leon.eval.metrics.fid import FrechetDistance
from cm3leon.eval.metrics.frechet import GaussianStats, frechet_distance
from tests.eval._helpers import StandInEncoder


def _registries(**extractors):
    """Registries holding only the given feature extractors (name -> factory)."""
    from cm3leon.core.registry import Registration, Registries

    registries = Registries()
    for name, factory in extractors.items():
        registries.feature_extractors.add(
            Registration(FeatureExtractorSpec(name, factory), "test", "", "test")
        )
    return registries


def test_resolve_by_object_name_and_factory_string() -> None:
    enc = StandInEncoder()
    assert resolve_document_encoder(enc) is enc
    registries = _registries(**{"clip-image": StandInEncoder})
    assert isinstance(resolve_document_encoder("clip-image", registries=registries), StandInEncoder)
    found = resolve_document_encoder("tests.eval._helpers:StandInEncoder")
    assert isinstance(found, StandInEncoder)


def test_resolve_errors_say_what_was_tried() -> None:
    registries = _registries(
        clip="cm3leon.eval.metrics.features:clip_extractor", broken=lambda **kw: object()
    )
    with pytest.raises(
        EncoderNotFoundError,
        match="no DocumentEncoder named 'nope'.*feature_extractors \\(not registered\\)",
    ):
        resolve_document_encoder("nope", registries=registries)
    # cm3leon-eval's own "clip" wrapper is skipped, never built recursively.
    with pytest.raises(EncoderNotFoundError, match="own wrapper"):
        resolve_document_encoder("clip", registries=registries)
    with pytest.raises(EncoderNotFoundError, match="feature extractor 'broken' built a object"):
        resolve_document_encoder("broken", registries=registries)
    with pytest.raises(
        EncoderNotFoundError, match="building feature extractor 'broken' with options"
    ):
        resolve_document_encoder("broken", {"path": 1}, registries=_registries(broken=lambda: None))
    with pytest.raises(EncoderNotFoundError, match="is not a DocumentEncoder"):
        resolve_document_encoder(object())


def test_clip_extractor_feeds_pil_images_to_the_encoder() -> None:
    enc = StandInEncoder()
    extractor = clip_extractor(enc)
    images = torch.rand(3, 3, 5, 7)
    feats = extractor(images)
    assert feats.shape == (3, 4) and extractor.num_features == 4
    torch.testing.assert_close(feats, enc.encode_image(tensor_to_pil(images)))


def test_plain_callables_are_used_as_is() -> None:
    extractor = clip_extractor(
        lambda batch: batch.mean(dim=(2, 3)), image_format="tensor", num_features=3
    )
    images = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(extractor(images), images.mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="returned shape"):
        ClipFeatureExtractor(lambda b: torch.zeros(5, 2), image_format="tensor", num_features=2)(
            images
        )


def test_fid_with_registered_clip_features() -> None:
    enc = StandInEncoder()
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.uniform(0.0, 0.6, (24, 3, 4, 4))).float()
    fake = torch.from_numpy(rng.uniform(0.3, 1.0, (20, 3, 4, 4))).float()
    metric = FrechetDistance("clip", features_options={"encoder": enc})
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = frechet_distance(
        GaussianStats.from_features(enc.encode_image(tensor_to_pil(real)).double().numpy()),
        GaussianStats.from_features(enc.encode_image(tensor_to_pil(fake)).double().numpy()),
    )
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-9)
    assert expected > 0.01
