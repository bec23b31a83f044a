"""FID Inception-v3: the exact key layout of pt_inception-2015-12-05-6726825d.pth and its loader."""

from __future__ import annotations

import collections

import pytest
import torch

from cm3leon.eval.metrics.inception import (
    INCEPTION_WEIGHTS_FILE,
    FIDInceptionV3,
    InceptionWeightsError,
    load_fid_inception,
)


def _reference_layout() -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in the file's layout.

    pytorch-fid loads the file strictly into torchvision's Inception-v3 built with
    ``num_classes=1008, aux_logits=False`` (its FID blocks only change forward passes), so
    that module's state dict *is* the file format.
    """
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    state = net.state_dict()
    for key, value in state.items():  # non-trivial batch-norm statistics
        if key.endswith("running_mean"):
            value.normal_(0.0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    return collections.OrderedDict(state)


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    return _reference_layout()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, reference_state) -> tuple:
    state = reference_state
    path = tmp_path_factory.mktemp("fid") / INCEPTION_WEIGHTS_FILE
    torch.save(state, path)
    return path, state


def test_architecture_has_the_file_layout(reference_state) -> None:
    ours = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference_state.items()}
    assert ours == theirs
    assert len(ours) == 566


def test_loader_reads_the_file_exactly(weights_file) -> None:
    path, state = weights_file
    model = load_fid_inception(path)
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    pixels = torch.randint(0, 256, (1, 3, 40, 56), dtype=torch.uint8)
    with torch.no_grad():
        feats = model(pixels.float() / 255)
        assert feats.shape == (1, 2048) and feats.dtype == torch.float32
        torch.testing.assert_close(model(pixels), feats)  # uint8 input is scaled to [0, 1]


def test_forward_equals_pytorch_fid_when_installed(weights_file, monkeypatch) -> None:
    inception = pytest.importorskip("pytorch_fid.inception")
    path, state = weights_file
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = load_fid_inception(path)
    images = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        expected = reference(images)[0].flatten(1)
        got = ours(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_file_without_num_batches_tracked_loads(weights_file, tmp_path) -> None:
    _, state = weights_file
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, tmp_path / "w.pth")
    model = load_fid_inception(tmp_path / "w.pth")
    assert torch.equal(
        model.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"]
    )


def test_wrong_layouts_are_refused_with_the_keys(weights_file, tmp_path) -> None:
    _, state = weights_file
    missing = dict(state)
    del missing["Mixed_6b.branch7x7_2.conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(
        InceptionWeightsError,
        match=r"missing\.pth.*missing keys: Mixed_6b\.branch7x7_2\.conv\.weight",
    ):
        load_fid_inception(tmp_path / "missing.pth")
    extra = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1008, 768)})
    torch.save(extra, tmp_path / "aux.pth")
    with pytest.raises(InceptionWeightsError, match=r"unexpected keys: AuxLogits\.fc\.weight"):
        load_fid_inception(tmp_path / "aux.pth")
    shaped = dict(state, **{"fc.weight": torch.zeros(1000, 2048)})
    torch.save(shaped, tmp_path / "shape.pth")
    with pytest.raises(
        InceptionWeightsError, match=r"fc\.weight: file \(1000, 2048\) != model \(1008, 2048\)"
    ):
        load_fid_inception(tmp_path / "shape.pth")


class _NotWeights:
    pass


def test_unsafe_or_foreign_files_are_refused(tmp_path) -> None:
    torch.save({"x": _NotWeights()}, tmp_path / "pickle.pth")
    with pytest.raises(InceptionWeightsError, match="weights-only"):
        load_fid_inception(tmp_path / "pickle.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(InceptionWeightsError, match="mapping of parameter names"):
        load_fid_inception(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_FILE):
        load_fid_inception(tmp_path / "absent.pth")


def test_hash_check_uses_the_name_suffix(weights_file) -> None:
    path, _ = weights_file
    with pytest.raises(InceptionWeightsError, match="does not start with 6726825d"):
        load_fid_inception(path, check_hash=True)


def test_registered_extractor_builds_from_the_file(weights_file) -> None:
    from cm3leon.core.plugin_manager import get_registries

    path, _ = weights_file
    extractor = get_registries().feature_extractors.build("inception", weights_path=str(path))
    assert extractor.num_features == 2048
    with pytest.raises(FileNotFoundError, match="weights_path"):
        get_registries().feature_extractors.build("inception")
