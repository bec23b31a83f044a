"""OpenPose-style skeletons drawn from COCO keypoints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cm3leon.tasks.conditions import PoseExtractor
from cm3leon.tasks.records import RecordError

IMAGE = Image.new("RGB", (40, 30), (200, 200, 200))


def _person(points: dict[int, tuple[float, float, int]]) -> list[float]:
    flat = [0.0] * 51
    for k, (x, y, v) in points.items():
        flat[3 * k : 3 * k + 3] = [x, y, v]
    return flat


def test_limbs_drawn_between_labelled_joints_only() -> None:
    person = _person({0: (5, 5, 2), 1: (25, 5, 2), 2: (5, 25, 0)})
    out = np.asarray(PoseExtractor(width=1)(IMAGE, {"id": "p", "keypoints": [person], "skeleton": [[1, 2], [1, 3]]}))
    assert out.shape == (30, 40, 3)
    assert out[5, 15].any() and not (out[5, 15] == 255).all()  # the limb, in colour
    assert (out[5, 5] == 255).all() and (out[5, 25] == 255).all()  # joints in white
    assert not out[15, 5].any()  # the limb to the unlabelled joint is not drawn
    assert not out[20:, 20:].any()


def test_default_skeleton_and_several_people() -> None:
    a = _person({5: (5, 10, 2), 6: (15, 10, 2)})
    b = _person({5: (25, 20, 1), 6: (35, 20, 1)})
    out = np.asarray(PoseExtractor()(IMAGE, {"id": "p", "keypoints": [a, b]}))
    assert out[10, 10].any() and out[20, 30].any()  # COCO limb (6, 7): shoulders


def test_bad_keypoints_name_the_record() -> None:
    with pytest.raises(RecordError, match="record 'p' has no 'keypoints'"):
        PoseExtractor()(IMAGE, {"id": "p"})
    with pytest.raises(RecordError, match="record 'p': person 0: keypoints must be"):
        PoseExtractor()(IMAGE, {"id": "p", "keypoints": [[1, 2]]})
    with pytest.raises(RecordError, match=r"limb \(1, 40\)"):
        PoseExtractor()(IMAGE, {"id": "p", "keypoints": [_person({})], "skeleton": [[1, 40]]})
