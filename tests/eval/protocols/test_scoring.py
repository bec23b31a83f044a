"""The protocols' scoring over files: COCO/VQA result files, FID between folders/stats,
text-to-image re-ranking of a samples manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cm3leon.eval.formats import FormatError
from cm3leon.eval.metrics.cider import score_captions
from cm3leon.eval.metrics.frechet import GaussianStats, frechet_distance
from cm3leon.eval.protocols.captioning import score_caption_files
from cm3leon.eval.protocols.fid import fid_between
from cm3leon.eval.protocols.text_to_image import read_samples_manifest, score_text_to_image
from cm3leon.eval.protocols.vqa import score_vqa_files
from tests.eval._helpers import StandInEncoder, solid


def _json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def caption_files(tmp_path: Path):
    results = [
        {"image_id": 1, "caption": "A dog, running!"},
        {"image_id": 2, "caption": "two cats on a mat"},
    ]
    refs = {
        "1": ["a dog runs", "A brown dog running."],
        "2": ["Two cats sit on a mat.", "cats on a mat"],
    }
    coco = {
        "annotations": [{"image_id": int(k), "caption": c} for k, cs in refs.items() for c in cs]
    }
    return (
        _json(tmp_path / "res.json", results),
        _json(tmp_path / "refs.json", refs),
        _json(tmp_path / "coco.json", coco),
    )


def test_caption_files_both_reference_layouts(caption_files) -> None:
    res, refs, coco = caption_files
    a = score_caption_files(res, refs, tokenizer="whitespace")
    b = score_caption_files(res, coco, tokenizer="whitespace")
    expected = score_captions(
        ["A dog, running!", "two cats on a mat"],
        [["a dog runs", "A brown dog running."], ["Two cats sit on a mat.", "cats on a mat"]],
        tokenizer="whitespace",
    )
    assert a["metrics"]["cider_d"] == b["metrics"]["cider_d"] == pytest.approx(expected.score)
    assert a["num_images"] == 2 and set(a["per_image"]) == {"1", "2"}
    assert len(a["inputs"]["predictions"]["sha256"]) == 64


@pytest.mark.skipif(shutil.which("java") is None, reason="PTB tokenisation needs Java")
def test_caption_files_with_ptb(caption_files) -> None:
    res, refs, _ = caption_files
    assert score_caption_files(res, refs)["metrics"]["cider_d"] > 0


def test_caption_file_errors(tmp_path: Path, caption_files) -> None:
    res, refs, _ = caption_files
    dup = _json(
        tmp_path / "dup.json", [{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]
    )
    with pytest.raises(FormatError, match=r"dup\.json: image_id 1 has more than one caption"):
        score_caption_files(dup, refs, tokenizer="whitespace")
    one = _json(tmp_path / "one.json", [{"image_id": 2, "caption": "cats"}])
    with pytest.raises(FormatError, match=r"image ids have no prediction: \['1'\]"):
        score_caption_files(one, refs, tokenizer="whitespace")
    assert score_caption_files(one, refs, tokenizer="whitespace", partial=True)["num_images"] == 1
    stray = _json(tmp_path / "stray.json", [{"image_id": 9, "caption": "x"}])
    with pytest.raises(FormatError, match=r"no reference: \['9'\]"):
        score_caption_files(stray, refs, tokenizer="whitespace")
    bad = _json(tmp_path / "bad.json", [{"image": 1, "caption": "x"}])
    with pytest.raises(FormatError, match=r"bad\.json: entry 0 lacks 'image_id'"):
        score_caption_files(bad, refs, tokenizer="whitespace")


def test_vqa_files_official_layout(tmp_path: Path) -> None:
    ann = {
        "annotations": [
            {
                "question_id": 10,
                "question_type": "how many",
                "answer_type": "number",
                "answers": [{"answer": "2", "answer_id": i} for i in range(1, 11)],
            },
            {
                "question_id": 11,
                "question_type": "is the",
                "answer_type": "yes/no",
                "answers": [
                    {"answer": a, "answer_id": i} for i, a in enumerate(["yes"] * 2 + ["no"] * 8, 1)
                ],
            },
        ]
    }
    res = [{"question_id": 10, "answer": "Two"}, {"question_id": 11, "answer": "yes"}]
    out = score_vqa_files(_json(tmp_path / "res.json", res), _json(tmp_path / "ann.json", ann))
    assert out["metrics"]["accuracy"] == pytest.approx((100.0 + 60.0) / 2)
    assert out["per_answer_type"] == pytest.approx({"number": 100.0, "yes/no": 60.0})
    assert out["per_question"] == pytest.approx({"10": 100.0, "11": 60.0})
    assert out["version"] == "2016"
    # the current vqaEval.py leaves the unanimous "2" question alone: "Two" != "2"
    current = score_vqa_files(tmp_path / "res.json", tmp_path / "ann.json", version="current")
    assert current["version"] == "current"
    assert current["per_question"] == pytest.approx({"10": 0.0, "11": 60.0})
    assert current["metrics"]["accuracy"] == pytest.approx(30.0)
    with pytest.raises(ValueError, match="valid versions: '2016', 'current'"):
        score_vqa_files(tmp_path / "res.json", tmp_path / "ann.json", version="v2")
    broken = _json(tmp_path / "broken.json", {"annotations": [{"question_id": 1, "answers": []}]})
    with pytest.raises(FormatError, match="question 1: 'answers' must be a non-empty list"):
        score_vqa_files(_json(tmp_path / "r.json", []), broken)


class MeanColour(torch.nn.Module):
    """(B, 3, H, W) -> per-channel mean and std: a 6-d image feature."""

    num_features = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _folder(path: Path, seed: int, n: int, lo: int, hi: int, size: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for i in range(n):
        arr = rng.integers(lo, hi, (size, size + i % 2, 3), dtype=np.uint8)  # two image sizes
        Image.fromarray(arr).save(path / f"{i:03d}.png")
    return path


def test_fid_between_folders_and_stats(tmp_path: Path) -> None:
    real = _folder(tmp_path / "real", 0, 20, 0, 200)
    fake = _folder(tmp_path / "fake", 1, 16, 60, 256)
    out = fid_between(
        real, fake, features=MeanColour(), batch_size=4, save_real_stats=tmp_path / "real.npz"
    )

    def feats(folder: Path) -> np.ndarray:
        from PIL import Image

        rows = []
        for f in sorted(folder.glob("*.png")):
            x = (
                torch.from_numpy(np.array(Image.open(f).convert("RGB")))
                .permute(2, 0, 1)
                .float()[None]
                / 255
            )
            rows.append(MeanColour()(x)[0].double().numpy())
        return np.stack(rows)

    expected = frechet_distance(
        GaussianStats.from_features(feats(real)), GaussianStats.from_features(feats(fake))
    )
    assert out["metrics"]["fid"] == pytest.approx(expected, rel=1e-6)
    assert (out["num_real"], out["num_fake"]) == (20, 16)
    # Cached reference stats give the same number, without an extractor for the stats side.
    again = fid_between(tmp_path / "real.npz", fake, features=MeanColour())
    assert again["metrics"]["fid"] == pytest.approx(out["metrics"]["fid"], rel=1e-9)
    with pytest.raises(FormatError, match="no images"):
        fid_between(real, (tmp_path / "empty").mkdir() or tmp_path / "empty", features=MeanColour())


def _manifest(tmp_path: Path) -> Path:
    prompts = []
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    for i, word in enumerate(colours):
        names = []
        # The matching colour is the *last* of three candidates.
        for j, rgb in enumerate([c for w, c in colours.items() if w != word] + [colours[word]]):
            name = f"{i}/{j}.png"
            (tmp_path / f"{i}").mkdir(parents=True, exist_ok=True)
            solid(rgb).save(tmp_path / name)
            names.append(name)
        prompts.append({"id": str(i), "text": f"a {word} square", "images": names})
    return _json(tmp_path / "manifest.json", {"prompts": prompts})


@pytest.mark.filterwarnings("ignore::cm3leon.eval.metrics.frechet.RankDeficientWarning")
def test_text_to_image_reranks_with_clip_and_scores(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "gen")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, rgb in enumerate([(240, 10, 10), (10, 240, 10), (10, 10, 240), (200, 30, 30)]):
        solid(rgb).save(ref / f"{i}.png")
    enc = StandInEncoder()
    res = score_text_to_image(manifest, ref, encoder=enc, grid_path=tmp_path / "grid.png")
    assert [Path(c["image"]).name for c in res["chosen"]] == ["2.png", "2.png", "2.png"]
    assert res["num_candidates"] == 3 and res["metrics"]["clip_score"] > 90.0
    assert (tmp_path / "grid.png").is_file()
    first_only = score_text_to_image(manifest, ref, encoder=enc, num_candidates=1)
    assert [Path(c["image"]).name for c in first_only["chosen"]] == ["0.png", "0.png", "0.png"]
    assert first_only["metrics"]["clip_score"] < res["metrics"]["clip_score"]
    assert (
        first_only["metrics"]["fid"] > res["metrics"]["fid"]
    )  # re-ranking moves towards the reference
    with pytest.raises(ValueError, match="num_candidates=4"):
        score_text_to_image(manifest, ref, encoder=enc, num_candidates=4)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="expected {'prompts'"):
        read_samples_manifest(_json(tmp_path / "m.json", []))
    with pytest.raises(FormatError, match=r"prompt 7: missing images \['.*nope\.png'\]"):
        read_samples_manifest(
            _json(
                tmp_path / "m.json", {"prompts": [{"id": 7, "text": "x", "images": ["nope.png"]}]}
            )
        )


def test_fid_reads_document_shards_like_a_folder(tmp_path: Path) -> None:
    pytest.importorskip("streaming")
    from PIL import Image

    from cm3leon.core.documents import Document, ImageSegment
    from cm3leon.core.shards import DocumentShardWriter

    real = _folder(tmp_path / "real", 0, 12, 0, 200)
    fake = _folder(tmp_path / "fake", 1, 10, 60, 256)
    with DocumentShardWriter(tmp_path / "shards") as writer:
        for i, f in enumerate(sorted(fake.glob("*.png"))):
            writer.write(Document.of(f"caption {i}", Image.open(f).convert("RGB"), id=f"d{i}"))
    from_folder = fid_between(real, fake, features=MeanColour())
    from_shards = fid_between(real, tmp_path / "shards", features=MeanColour())
    assert from_shards["metrics"]["fid"] == pytest.approx(from_folder["metrics"]["fid"], rel=1e-9)
    assert from_shards["num_fake"] == 10
    with DocumentShardWriter(tmp_path / "codes") as writer:
        writer.write(Document(segments=(ImageSegment(codes=(1, 2, 3)),), id="c0"))
    with pytest.raises(FormatError, match="document 'c0' image 0 holds only VQ codes"):
        fid_between(real, tmp_path / "codes", features=MeanColour())
