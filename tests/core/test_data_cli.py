"""Sources (folder, jsonl) and the ``cm3leon data prepare|inspect`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core import plugin_manager
from cm3leon.core.cli import cli
from cm3leon.core.data_cli import inspect_dataset
from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import SourceSpec, TaskSpec
from cm3leon.core.shards import iter_documents, iter_token_samples, verify_dataset
from cm3leon.core.sources import FolderSource, JsonlSource

CAPTIONS = {"a/cat": "a cat", "a/dog": "a dog sleeping", "b/cow": "une vache"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for stem, caption in CAPTIONS.items():
        (root / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"{stem}.png")
        (root / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    return root


def corrupt(folder: Path) -> Path:
    bad = folder / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    (folder / "b" / "broken.txt").write_text("broken", encoding="utf-8")
    return bad


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    lines = [
        {"caption": "red square", "codes": [1, 2, 3, 4], "id": "r"},
        {"caption": "blue dot", "codes": [5, 6, 7, 8], "id": "b"},
        Document.of("two images", ImageSegment(codes=(0, 0, 0, 0)), ImageSegment(codes=(9, 9, 9, 9)), id="doc").to_json(),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["data", *args], catch_exceptions=False)


# -------------------------------------------------------------------- sources
def test_folder_source_reads_caption_image_pairs(folder: Path) -> None:
    docs = list(FolderSource(folder))
    assert [d.id for d in docs] == sorted(CAPTIONS)
    for d in docs:
        assert isinstance(d.segments[0], TextSegment) and d.segments[0].text == CAPTIONS[d.id]
        assert isinstance(d.segments[1], ImageSegment) and d.segments[1].pil().size == (8, 8)


def test_folder_source_corrupt_image_fails_or_is_skipped_and_counted(folder: Path) -> None:
    bad = corrupt(folder)
    with pytest.raises(ValueError, match=rf"{bad}: corrupt or truncated image"):
        list(FolderSource(folder))
    source = FolderSource(folder, skip_bad=True)
    assert len(list(source)) == 3
    assert [where for where, _ in source.skipped] == [str(bad)]
    (folder / "a" / "cat.txt").unlink()
    with pytest.raises(ValueError, match=r"cat.png: no caption file cat.txt"):
        list(FolderSource(folder, skip_bad=False))


def test_jsonl_source_records_documents_and_bad_lines(jsonl: Path, tmp_path: Path) -> None:
    docs = list(JsonlSource(jsonl))
    assert [d.id for d in docs] == ["r", "b", "doc"]
    assert docs[0].segments == (TextSegment("red square"), ImageSegment(codes=(1, 2, 3, 4)))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img.png")
    with jsonl.open("a") as fh:
        fh.write(json.dumps({"caption": "from file", "image": "img.png"}) + "\n")
        fh.write("{not json\n")
        fh.write(json.dumps({"caption": "", "codes": [1]}) + "\n")
    with pytest.raises(ValueError, match=rf"{jsonl}:5: not valid JSON"):
        list(JsonlSource(jsonl))
    source = JsonlSource(jsonl, skip_bad=True)
    docs = list(source)
    assert len(docs) == 4 and docs[3].images[0].pil().size == (4, 4)
    assert [where for where, _ in source.skipped] == [f"{jsonl}:5", f"{jsonl}:6"]


# ------------------------------------------------------------------- prepare
def test_prepare_documents_from_folder_with_skip_bad_then_inspect(folder: Path, tmp_path: Path) -> None:
    bad = corrupt(folder)
    out = tmp_path / "docs"
    failed = CliRunner().invoke(cli, ["data", "prepare", "--source", "folder", str(folder), "--out", str(out)])
    assert failed.exit_code != 0 and str(bad) in failed.output
    assert not out.exists()  # a failed conversion leaves nothing behind
    result = run("prepare", "--source", "folder", str(folder), "--out", str(out), "--skip-bad")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["written"] == 3 and report["skipped"] == 1 and str(bad) in report["skipped_items"][0][0]
    assert [d.text for d in iter_documents(out)] == [CAPTIONS[k] for k in sorted(CAPTIONS)]
    assert Path(f"{out}.prepare.log").is_file()
    inspected = json.loads(run("inspect", str(out), "--json").output)
    assert inspected["kind"] == "documents" and inspected["samples"] == 3 and inspected["images"] == 3


def test_prepare_into_a_new_folder(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "nested" / "docs"  # neither parent exists yet
    result = run("prepare", "--source", "folder", str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "COMPLETE").is_file() and Path(f"{out}.prepare.log").is_file()


def test_prepare_tokens_with_byte_tokenizer_and_precomputed_codes(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    args = ["prepare", "--source", "jsonl", str(jsonl), "--out", str(out), "--kind", "tokens",
            "--text-tokenizer", "bytes", "--image-codebook-size", "16", "--tokens-per-image", "4"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    info = verify_dataset(out)
    assert info.vocab is not None and (info.vocab.text_size, info.vocab.image_size) == (256, 16)
    samples = {s.id: s.tokens for s in iter_token_samples(out)}
    v = info.vocab
    assert samples["r"].tolist() == [v.eos_id, *v.text_to_global(list(b"red square")), v.break_id,
                                     *v.image_to_global([1, 2, 3, 4]), v.break_id]
    inspected = json.loads(run("inspect", str(out), "--json").output)
    texts = len("red square") + len("blue dot") + len("two images")
    assert (inspected["text_tokens"], inspected["image_tokens"]) == (texts, 4 + 4 + 8)
    assert inspected["special_tokens"] == 3 * 1 + 2 + 2 + 3  # <eos> each; <break>s: 2, 2, 3
    plain = run("inspect", str(out))
    assert "image_tokens: 16" in plain.output


def test_prepare_tokens_wrong_code_count_names_document(jsonl: Path, tmp_path: Path) -> None:
    with jsonl.open("a") as fh:
        fh.write(json.dumps({"caption": "short", "codes": [1, 2], "id": "short"}) + "\n")
    base = ["data", "prepare", "--source", "jsonl", str(jsonl), "--kind", "tokens", "--text-tokenizer",
            "bytes", "--image-codebook-size", "16", "--tokens-per-image", "4"]
    failed = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a")])
    assert failed.exit_code != 0 and "document 'short', segment 1: image has 2 codes, expected 4" in failed.output
    assert not (tmp_path / "a").exists()
    ok = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"), "--skip-bad", "--max-samples", "2"])
    assert ok.exit_code == 0, ok.output
    assert verify_dataset(tmp_path / "b").num_samples == 2


def test_prepare_usage_errors(jsonl: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(cli, ["data", "prepare", "--source", "nope", str(jsonl), "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "unknown source 'nope'" in unknown.output and "folder" in unknown.output
    no_tok = runner.invoke(cli, ["data", "prepare", "--source", "jsonl", str(jsonl), "--out", str(tmp_path / "x"),
                                 "--kind", "tokens"])
    assert no_tok.exit_code == 2 and "--text-tokenizer" in no_tok.output
    both = runner.invoke(cli, ["data", "prepare", str(jsonl), "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "exactly one of --source NAME or --task NAME" in both.output


def test_inspect_reports_a_flipped_byte_by_file(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    assert run("prepare", "--source", "jsonl", str(jsonl), "--out", str(out)).exit_code == 0
    shard = sorted(out.glob("shard.*.mds"))[0]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 1
    shard.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["data", "inspect", str(out)])
    assert result.exit_code == 1 and f"{shard}: SHA-256 mismatch" in result.output


# -------------------------------------------------------- tasks and the world
class ToyTask:
    """A caption task whose records are {"id", "caption", "codes"}."""

    name = "toy_caption"
    templates = ("{caption}",)

    def render(self, record, *, rng):
        return Document.of(ImageSegment(codes=tuple(record["codes"])), record["caption"], id=record["id"],
                           meta={"targets": [{"segment": 1}]})  # fmt: skip


def toy_reader(path, *, split=None, skip_bad=False, stats=None, **options):
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if "caption" not in record:
            if not skip_bad:
                raise ValueError(f"{path}: record {record.get('id')!r} lacks 'caption'")
            stats["skipped"] = stats.get("skipped", 0) + 1
            continue
        stats["records"] = stats.get("records", 0) + 1
        yield record


class ToyPlugin:
    @staticmethod
    @hookimpl
    def cm3leon_register_tasks():
        return [TaskSpec("toy_caption", ToyTask, "test task", reader=toy_reader)]

    @staticmethod
    @hookimpl
    def cm3leon_register_sources():
        if "world" in plugin_manager.get_registries().sources:
            return []
        return [SourceSpec("world", "cm3leon.world.records:world_source", "procedural world")]


def test_prepare_task_and_world_through_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registries = plugin_manager.registries_with(ToyPlugin)
    monkeypatch.setattr(plugin_manager, "get_registries", lambda: registries)
    records = tmp_path / "toy.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in [
        {"id": "t0", "caption": "hello", "codes": [1, 1, 1, 1]},
        {"id": "t1"},
        {"id": "t2", "caption": "world", "codes": [2, 2, 2, 2]},
    ]))
    out = tmp_path / "sft"
    result = run("prepare", "--task", "toy_caption", str(records), "--out", str(out), "--kind", "tokens",
                 "--text-tokenizer", "bytes", "--image-codebook-size", "16", "--skip-bad")
    assert result.exit_code == 0, result.output
    samples = list(iter_token_samples(out))
    assert [s.id for s in samples] == ["t0", "t2"]
    # The caption's token range travels with the example (after <eos> <break> 4 codes <break>).
    assert [s.targets.tolist() for s in samples] == [[[7, 12]], [[7, 12]]]
    assert inspect_dataset(out)["samples_with_targets"] == 2
    assert json.loads(result.output[result.output.index("{"):])["skipped"] == 1
    world = tmp_path / "world"
    result = run("prepare", "--source", "world", "-", "--out", str(world), "-o", "n=4", "--skip-bad")
    assert result.exit_code == 0, result.output
    docs = list(iter_documents(world))
    assert len(docs) == 4 and all(d.images and d.text for d in docs)


class CountingTokenizer:
    """Image-tokenizer double: 4 codes per image; refuses all-black images; counts calls."""

    codebook_size, num_tokens, image_size = 16, 4, 8

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, images):
        import torch

        self.calls.append(len(images))
        arrays = [np.asarray(im) for im in images]
        if any(a.max() == 0 for a in arrays):
            raise RuntimeError("cannot encode an all-black image")
        return torch.as_tensor(np.stack([[int(a.mean()) % 16] * 4 for a in arrays]))


def test_prepare_encodes_pixels_in_batches_and_isolates_a_bad_image(tmp_path: Path) -> None:
    from cm3leon.core.data_cli import prepare_dataset
    from cm3leon.core.serialize import DocumentTokenizer
    from cm3leon.core.tokenization import ByteTokenizer
    from cm3leon.core.vocab import Vocabulary

    vocab = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
    docs = [Document.of(f"d{i}", np.full((8, 8, 3), 10 * i + 5, np.uint8), id=f"d{i}") for i in range(6)]
    image_tok = CountingTokenizer()
    dt = DocumentTokenizer(vocab, ByteTokenizer(), image_tok)
    report = prepare_dataset(docs, tmp_path / "ok", kind="tokens", doc_tokenizer=dt, batch_size=4, progress=False)
    assert report.written == 6 and image_tok.calls == [4, 2]
    docs[2] = Document.of("black", np.zeros((8, 8, 3), np.uint8), id="black")
    with pytest.raises(ValueError, match=r"document 'black', segment\(s\) \[1\]: image tokenizer failed"):
        prepare_dataset(docs, tmp_path / "bad", kind="tokens", doc_tokenizer=dt, batch_size=4, progress=False)
    assert not (tmp_path / "bad").exists()
    report = prepare_dataset(docs, tmp_path / "skip", kind="tokens", doc_tokenizer=dt, batch_size=4,
                             skip_bad=True, progress=False)
    assert report.written == 5 and [w for w, _ in report.skipped] == ["document 'black'"]
    assert [s.id for s in iter_token_samples(tmp_path / "skip")] == [d.id for d in docs if d.id != "black"]
