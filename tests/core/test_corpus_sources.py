"""The corpus sources (webdataset, parquet, hf, tsv) through ``cm3leon data prepare``.

Fixtures are written by the real libraries (tests/core/_corpora.py); each source's
documents, read back from the prepared shards, equal the fixture's captions and pixels.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.corpora import (
    MissingExtraError,
    hf_source,
    parquet_source,
    tsv_source,
    webdataset_source,
)
from cm3leon.core.documents import Document
from cm3leon.core.shards import iter_documents
from cm3leon.core.sources import FolderSource
from tests.core._corpora import Sample, corpus, write_hf, write_parquet, write_tars, write_tsv


def _webdataset(tmp: Path, samples: list[Sample]) -> tuple[Path, list[str], Callable[[Sample], str]]:
    write_tars(tmp / "wds", samples)
    return tmp / "wds", [], lambda s: f"{tmp / 'wds' / f'{samples.index(s) // 2:05d}.tar'}:{s.key}"


def _parquet(tmp: Path, samples: list[Sample]) -> tuple[Path, list[str], Callable[[Sample], str]]:
    path = write_parquet(tmp / "laion" / "00000.parquet", samples)
    return path, [], lambda s: f"{path} row {samples.index(s)}"


def _hf(tmp: Path, samples: list[Sample]) -> tuple[Path, list[str], Callable[[Sample], str]]:
    path = write_hf(tmp / "hf", samples)
    return path, [], lambda s: f"{path} row {samples.index(s)}"


def _tsv(tmp: Path, samples: list[Sample]) -> tuple[Path, list[str], Callable[[Sample], str]]:
    path = write_tsv(tmp / "cc3m.tsv", samples, tmp / "images")
    return path, ["-o", f"image_root={tmp / 'images'}"], lambda s: f"{path}:{samples.index(s) + 1}"


# source -> writer(tmp, samples) -> (PATH, extra CLI args, sample -> the text naming it)
WRITERS = {"webdataset": _webdataset, "parquet": _parquet, "hf": _hf, "tsv": _tsv}


def prepare(source: str, path: Path | str, out: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["data", "prepare", "--source", source, str(path), "--out", str(out), *args])


def _report(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


@pytest.mark.parametrize("source", list(WRITERS))
def test_prepared_documents_equal_the_fixture(source: str, tmp_path: Path) -> None:
    samples = corpus()
    path, args, _ = WRITERS[source](tmp_path, samples)
    report = _report(prepare(source, path, tmp_path / "out", *args))
    assert report["written"] == 3 and report["skipped"] == 0
    docs = list(iter_documents(tmp_path / "out"))
    assert [d.texts for d in docs] == [[s.caption] for s in samples]
    for doc, sample in zip(docs, samples, strict=True):
        assert doc.segments[0].modality == "text" and doc.segments[1].modality == "image"  # Figure 8 order
        np.testing.assert_array_equal(np.asarray(doc.images[0].pil()), sample.pixels())
    assert len({d.id for d in docs}) == 3 and all(d.meta["source"] == source for d in docs)


@pytest.mark.parametrize("bad", ["image", "caption"])
@pytest.mark.parametrize("source", list(WRITERS))
def test_a_bad_sample_fails_or_is_named_and_counted(source: str, bad: str, tmp_path: Path) -> None:
    samples = corpus(bad=bad)
    path, args, where = WRITERS[source](tmp_path, samples)
    named = where(samples[1])
    failed = prepare(source, path, tmp_path / "fail", *args)
    assert failed.exit_code != 0 and named in failed.output, failed.output
    assert ("caption" if bad == "caption" else "truncated image") in failed.output
    assert not (tmp_path / "fail").exists()
    report = _report(prepare(source, path, tmp_path / "out", "--skip-bad", *args))
    assert report["written"] == 2 and report["skipped"] == 1
    assert named in report["skipped_items"][0][0]
    assert [d.text for d in iter_documents(tmp_path / "out")] == [samples[0].caption, samples[2].caption]


@pytest.mark.parametrize("source", list(WRITERS))
def test_an_unknown_option_is_named(source: str, tmp_path: Path) -> None:
    path, args, _ = WRITERS[source](tmp_path, corpus())
    result = prepare(source, path, tmp_path / "out", *args, "-o", "captoin_column=txt")
    assert result.exit_code != 0
    assert "unknown option(s) captoin_column" in result.output and "known options:" in result.output


def test_an_option_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", corpus())
    with pytest.raises(ValueError, match="option batch_size must be int, got 'many'"):
        parquet_source(path, batch_size="many")
    with pytest.raises(ValueError, match="option skip_bad must be bool"):
        webdataset_source(tmp_path, skip_bad="yes")


# ------------------------------------------------------------------ webdataset
def test_folder_of_tars_points_to_the_webdataset_source(tmp_path: Path) -> None:
    write_tars(tmp_path / "shards", corpus())
    # img2dataset writes a metadata parquet (no images) next to each tar
    write_parquet(tmp_path / "shards" / "00000.parquet", [])
    result = prepare("folder", tmp_path / "shards", tmp_path / "out")
    assert result.exit_code != 0
    assert "--source webdataset" in result.output and "2 .tar file(s)" in result.output


@pytest.mark.parametrize(("writer", "expected"), [
    (lambda root: write_hf(root, corpus()), "--source hf"),
    (lambda root: write_tsv(root / "a.tsv", corpus(), root / "mirror"), None),  # images present: no hint
    (lambda root: write_tsv(root / "a.tsv", corpus(), None) and shutil.rmtree(root / "images"), "--source tsv"),
])  # fmt: skip
def test_folder_source_names_the_source_of_other_corpora(writer: Any, expected: str | None, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    writer(root)
    if expected is None:
        FolderSource(root)  # image files: read as pairs (bad ones named later), no hint
        return
    with pytest.raises(ValueError, match=expected):
        FolderSource(root)


def test_webdataset_patterns_jpg_and_urls(tmp_path: Path) -> None:
    samples = [Sample(f"{i:06d}", f"caption {i}", (4 + i, 3)) for i in range(5)]
    write_tars(tmp_path / "s", samples, image_ext="jpg")
    write_parquet(tmp_path / "s" / "00000.parquet", [])  # img2dataset's metadata file is not read
    brace = list(webdataset_source(f"{tmp_path}/s/{{00000..00002}}.tar"))
    assert [d.text for d in brace] == [s.caption for s in samples]
    assert [d.images[0].pil().size for d in brace] == [s.size for s in samples]  # jpg: sizes, not pixels
    assert [d.id for d in webdataset_source(f"{tmp_path}/s/0000[12].tar")] == ["00001/000002", "00001/000003",
                                                                                 "00002/000004"]  # fmt: skip
    with pytest.raises(ValueError, match="00003.tar: no such file"):
        webdataset_source(f"{tmp_path}/s/{{00000..00003}}.tar")
    with pytest.raises(ValueError, match="remote shards are downloaded before they are read; give a local cache"):
        webdataset_source("s3://bucket/laion/{00000..00099}.tar")
    with pytest.raises(ValueError, match="a remote cannot be listed; name the shards with a brace pattern"):
        webdataset_source("s3://bucket/laion/*.tar", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="is a URL; this source reads local files only"):
        parquet_source("s3://bucket/laion/00000.parquet")
    with pytest.raises(ValueError, match="is a URL; this source reads local files only"):
        hf_source("s3://bucket/hf_dataset")


def test_webdataset_remote_shards_through_streamings_downloader(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Remote shards go through mosaicml-streaming's CloudDownloader (what the trainer's datasets use)
    into cache_dir, once.  The object store is a downloader registered for a test scheme that copies
    from a folder (no network here); every other step is the real one."""
    from streaming.base.storage import download

    bucket = tmp_path / "bucket"
    samples = corpus()
    write_tars(bucket / "laion", samples)
    fetched: list[str] = []

    class FolderStore(download.CloudDownloader):
        @staticmethod
        def _client_identifier() -> str:
            return "cm3test"

        def clean_up(self) -> None:
            pass

        def _download_file_impl(self, remote: str, local: str, timeout: float) -> None:
            fetched.append(remote)
            shutil.copy(bucket / remote.removeprefix("cm3test://bucket/"), local)

    monkeypatch.setitem(download.DOWNLOADER_MAPPINGS, "cm3test", FolderStore)
    url = "cm3test://bucket/laion/{00000..00001}.tar"
    cache = tmp_path / "cache"
    report = _report(prepare("webdataset", url, tmp_path / "out", "-o", f"cache_dir={cache}"))
    assert report["written"] == 3
    docs = list(iter_documents(tmp_path / "out"))
    assert [d.id for d in docs] == ["00000/000000", "00000/000001", "00001/000002"]
    np.testing.assert_array_equal(np.asarray(docs[2].images[0].pil()), samples[2].pixels())
    assert docs[0].meta["shard"] == "00000.tar"
    assert fetched == ["cm3test://bucket/laion/00000.tar", "cm3test://bucket/laion/00001.tar"]
    assert (cache / "cm3test" / "bucket" / "laion" / "00001.tar").is_file()
    assert len(list(webdataset_source(url, cache_dir=str(cache)))) == 3 and len(fetched) == 2  # cached
    missing = "cm3test://bucket/laion/{00001..00002}.tar"
    with pytest.raises(ValueError, match=r"cm3test://bucket/laion/00002.tar: cannot download the shard"):
        list(webdataset_source(missing, cache_dir=str(cache)))
    source = webdataset_source(missing, cache_dir=str(cache), skip_bad=True)
    assert len(list(source)) == 1 and source.skipped[0][0] == "cm3test://bucket/laion/00002.tar"


def test_webdataset_truncated_shard_is_named(tmp_path: Path) -> None:
    shards = write_tars(tmp_path / "s", [Sample(f"{i:06d}", f"c{i}", (64, 64)) for i in range(4)], per_shard=2)
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match="00000.tar: unreadable tar shard"):
        list(webdataset_source(tmp_path / "s"))
    source = webdataset_source(tmp_path / "s", skip_bad=True)
    docs = list(source)
    assert [d.id for d in docs][-2:] == ["00001/000002", "00001/000003"]
    assert source.skipped[-1][0] == str(shards[0])


# --------------------------------------------------------------------- parquet
def test_parquet_failed_downloads_are_named(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", corpus(), failed=2)
    source = parquet_source(path, skip_bad=True, batch_size=1)
    assert [d.id for d in source] == ["000000", "000001", "000002"]  # img2dataset's key column
    assert [w for w, _ in source.skipped] == [f"{path} row 3", f"{path} row 4"]
    assert "failed_to_download" in source.skipped[0][1] and "HTTP Error 404" in source.skipped[0][1]


def test_parquet_path_column_resolved_against_image_root(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    samples = corpus()
    (tmp_path / "img").mkdir()
    for s in samples:
        (tmp_path / "img" / f"{s.key}.png").write_bytes(s.png())
    rows = [{"file": f"{s.key}.png", "text": s.caption} for s in samples] + [{"file": "gone.png", "text": "x"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "meta.parquet")
    source = parquet_source(tmp_path / "meta.parquet", path_column="file", image_root=str(tmp_path / "img"),
                            skip_bad=True)  # fmt: skip
    docs = list(source)
    assert [d.text for d in docs] == [s.caption for s in samples]  # caption column found: "text"
    np.testing.assert_array_equal(np.asarray(docs[1].images[0].pil()), samples[1].pixels())
    assert source.skipped[0][0] == f"{tmp_path / 'meta.parquet'} row 3" and "gone.png" in source.skipped[0][1]
    with pytest.raises(ValueError, match=r"no caption column 'caption'.*columns: \['file', 'text'\]"):
        list(parquet_source(tmp_path / "meta.parquet", path_column="file", caption_column="caption"))


# -------------------------------------------------------------------------- hf
def test_hf_dataset_dict_split_and_hub_parquet(tmp_path: Path) -> None:
    import datasets

    samples = corpus()
    write_hf(tmp_path / "dd", samples, split="validation")
    assert [d.id for d in hf_source(tmp_path / "dd")] == ["validation/0", "validation/1", "validation/2"]
    with pytest.raises(ValueError, match=r"no split 'train'; splits: \['validation'\]"):
        hf_source(tmp_path / "dd", split="train")
    ds = datasets.load_from_disk(str(tmp_path / "dd"))["validation"]
    ds.to_parquet(str(tmp_path / "hub" / "validation-00000-of-00001.parquet"))  # the Hub's layout
    docs = list(hf_source(tmp_path / "hub"))
    assert [d.texts for d in docs] == [[s.caption] for s in samples]
    np.testing.assert_array_equal(np.asarray(docs[2].images[0].pil()), samples[2].pixels())


# ------------------------------------------------------------------------- tsv
def test_tsv_url_without_local_file_and_cc12m_columns(tmp_path: Path) -> None:
    samples = corpus()
    write_tsv(tmp_path / "cc3m.tsv", samples, tmp_path / "images")
    with (tmp_path / "cc3m.tsv").open("a") as fh:
        fh.write("never downloaded\thttps://img.example.org/cc3m/404.jpg\n")
    with pytest.raises(ValueError, match=r"cc3m.tsv:4: image .*404.jpg' has no local file"):
        list(tsv_source(tmp_path / "cc3m.tsv", image_root=str(tmp_path / "images")))
    with pytest.raises(ValueError, match="cannot be fetched offline"):
        list(tsv_source(tmp_path / "cc3m.tsv"))
    # CC12M: url<TAB>caption, here with a header naming the columns
    lines = (tmp_path / "cc3m.tsv").read_text().splitlines()[:3]
    body = "".join(f"{url}\t{caption}\n" for caption, url in (line.split("\t") for line in lines))
    (tmp_path / "cc12m.tsv").write_text("url\tcaption\n" + body)
    docs = list(tsv_source(tmp_path / "cc12m.tsv", header=True, caption_column="caption", image_column="url",
                           image_root=str(tmp_path / "images")))  # fmt: skip
    assert [d.text for d in docs] == [s.caption for s in samples] and docs[0].meta["line"] == 2
    assert docs[0].meta["url"] == "https://img.example.org/cc3m/000000.png?w=1"


# --------------------------------------------------------------- missing extra
def test_a_missing_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(tmp_path / "a.parquet", corpus())
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'cm3leon-core\[corpora\]'"):
        list(parquet_source(path))
    result = prepare("parquet", path, tmp_path / "out")
    assert result.exit_code != 0 and "cm3leon-core[corpora]" in result.output


def test_documents_are_lossless_in_json(tmp_path: Path) -> None:
    path, _, _ = _webdataset(tmp_path, corpus())
    for doc in webdataset_source(path, caption_first=False):
        assert doc.segments[0].modality == "image"
        assert Document.from_json(doc.to_json()) == doc
