"""Captions holding a lone UTF-16 surrogate (reliability row 19).

JSON's ``"\\ud800"`` decodes to a Python ``str`` with a lone surrogate: not Unicode text,
not encodable as UTF-8.  Before, ``data prepare --kind documents`` stored it silently and
``--kind tokens`` failed with a bare ``'utf-8' codec can't encode character`` naming no
document.  Now a :class:`Document` refuses it, naming the document, segment, code point and
character; ``--skip-bad`` skips and counts it like any other bad item.

(The rest of row 19 lives elsewhere: empty captions are named errors or skipped and counted
(``tests/core/test_data_cli.py``), over-long examples are truncated or dropped and counted by
the packer (``tests/core/test_packing.py``), any valid Unicode round-trips through the BPE
(``tests/tokenizers/test_text_bpe.py``).)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.documents import Document, TextSegment
from cm3leon.core.shards import iter_documents, iter_token_samples
from cm3leon.core.tokenization import ByteTokenizer

NAMED = r"document 'sur': segment 0: lone surrogate U\+D800 at character 5 \(not valid Unicode text"


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    lines = ['{"caption": "ok one", "codes": [1, 2, 3, 4], "id": "a"}',
             '{"caption": "lone \\ud800 here", "codes": [1, 2, 3, 4], "id": "sur"}',
             '{"caption": "ok two", "codes": [5, 6, 7, 8], "id": "b"}']  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "\ud800" in json.loads(lines[1])["caption"]  # the JSON really yields a lone surrogate
    return path


def prepare(pairs: Path, out: Path, kind: str, *extra: str) -> object:
    return CliRunner().invoke(cli, ["data", "prepare", "--source", "jsonl", str(pairs), "--out", str(out),
                                    "--kind", kind, "--text-tokenizer", "bytes", "--image-codebook-size", "16",
                                    *extra])  # fmt: skip


@pytest.mark.parametrize("kind", ["documents", "tokens"])
def test_a_lone_surrogate_is_named_or_skipped_and_counted(pairs: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / kind
    failed = prepare(pairs, out, kind)
    assert failed.exit_code != 0 and not out.exists()
    assert "lone surrogate U+D800 at character 5" in failed.output and "document 'sur'" in failed.output
    skipped = prepare(pairs, out, kind, "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.output[skipped.output.index("{"):])
    assert report["written"] == 2 and report["skipped"] == 1
    assert report["skipped_items"][0][0] == f"{pairs}:2" and "lone surrogate" in report["skipped_items"][0][1]
    ids = [d.id for d in iter_documents(out)] if kind == "documents" else [s.id for s in iter_token_samples(out)]
    assert ids == ["a", "b"]


def test_documents_and_the_byte_tokenizer_refuse_a_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=NAMED):
        Document((TextSegment("lone \ud800 here"),), id="sur")
    with pytest.raises(ValueError, match=r"segment 1: lone surrogate U\+DC80 at character 0"):
        Document.of("fine", "\udc80", id="x")
    with pytest.raises(ValueError, match=r"ByteTokenizer.encode: lone surrogate U\+DFFF at character 2"):
        ByteTokenizer().encode("ab\udfff")
    text = "emoji 🦎, RTL שלום, NUL \x00, astral 𝔘"  # valid surrogate *pairs* in UTF-16 are fine
    assert Document.of(text).text == text
    assert bytes(ByteTokenizer().encode(text)).decode("utf-8") == text
