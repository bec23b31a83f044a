"""Byte-level BPE text tokenizer (paper §2.1: a custom 56,320-entry vocabulary).

Built on the Hugging Face ``tokenizers`` library and stored as a standard
``tokenizer.json``.  The pipeline is GPT-2 style byte-level BPE with nothing that
could lose information:

* no normalizer (no NFC/NFKC, no lower-casing, no stripping);
* a ``ByteLevel`` pre-tokenizer without prefix space: every UTF-8 byte maps to one of
  256 base symbols, which are always in the vocabulary (``initial_alphabet``), so any
  Unicode string is encodable and decoding returns it exactly;
* **no special tokens**: ``<pad>``, ``<eos>``, ``<break>`` and the CM3 sentinels live in
  the unified vocabulary (:class:`cm3leon.core.vocab.Vocabulary`), which offsets these
  ids; a text that contains ``"<break>"`` is just text.

Example::

    bpe = BPETokenizer.train(["a corpus line", ...], vocab_size=56320)
    ids = bpe.encode("Image of a chameleon")
    assert bpe.decode(ids) == "Image of a chameleon"
    bpe.save("runs/text_bpe/tokenizer")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_directory, is_complete, read_json
from cm3leon.core.tokenization import TOKENIZER_MARKER, write_tokenizer_marker
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["PAPER_TEXT_VOCAB_SIZE", "BPETokenizer", "byte_symbols", "load_text_tokenizer"]

#: The paper's text vocabulary size (§2.1).
PAPER_TEXT_VOCAB_SIZE = 56_320

_TOKENIZER_FILE = "tokenizer.json"
_FORMAT = "cm3leon-bpe"
#: Name under which this tokenizer is registered (written to ``cm3leon_tokenizer.json``).
REGISTERED_NAME = "bpe"


def byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for bytes ``0..255``, in byte order.

    This is GPT-2's reversible byte -> unicode table: printable Latin-1 bytes map to
    themselves, the others to code points from 256 upwards.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, int] = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def _pipeline(tok: Tokenizer) -> Tokenizer:
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = None
    return tok


class BPETokenizer:
    """Text <-> ids ``[0, vocab_size)``; satisfies :class:`cm3leon.core.interfaces.TextTokenizer`.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` with a byte-level BPE model.
        info: free-form metadata saved alongside (training corpus, date, ...).
    """

    def __init__(self, tokenizer: Tokenizer, *, info: dict[str, Any] | None = None) -> None:
        if tokenizer.get_vocab_size(with_added_tokens=True) != tokenizer.get_vocab_size(with_added_tokens=False):
            raise ValueError("BPETokenizer must not contain added/special tokens (they live in the unified vocabulary)")
        self._tok = tokenizer
        self.info = dict(info or {})

    # --------------------------------------------------------------- construction
    @classmethod
    def byte_level(cls) -> BPETokenizer:
        """The untrained tokenizer: 256 byte symbols, no merges (one id per UTF-8 byte)."""
        vocab = {s: i for i, s in enumerate(byte_symbols())}
        return cls(_pipeline(Tokenizer(models.BPE(vocab=vocab, merges=[]))), info={"trained": False})

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int = PAPER_TEXT_VOCAB_SIZE,
        min_frequency: int = 2,
        show_progress: bool = True,
        length: int | None = None,
    ) -> BPETokenizer:
        """Train byte-level BPE on ``texts``.

        Args:
            texts: an iterable of documents/lines (streamed; may be a generator).
            vocab_size: target size including the 256 byte symbols; the result is smaller
                when the corpus has fewer distinct merges.
            min_frequency: minimum pair count for a merge.
            show_progress: show the ``tokenizers`` progress bar.
            length: number of items in ``texts`` (for the progress bar only).
        """
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
        tok = _pipeline(Tokenizer(models.BPE()))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=byte_symbols(),
            special_tokens=[],
            show_progress=show_progress,
        )
        tok.train_from_iterator(_checked_texts(texts), trainer=trainer, length=length)
        return cls(tok, info={"trained": True, "requested_vocab_size": vocab_size, "min_frequency": min_frequency})

    # ------------------------------------------------------------------- protocol
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=False)

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no special tokens added).

        Raises:
            TypeError: ``text`` is not a ``str``.
            ValueError: ``text`` contains lone surrogates (not encodable as UTF-8).
        """
        _check_text(text, "text")
        if not text:
            return []
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text (parallel in Rust)."""
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`encode`.

        Raises:
            ValueError: an id is not an integer in ``[0, vocab_size)`` (names it and its position).
        """
        ids = list(ids)
        n = self.vocab_size
        for pos, i in enumerate(ids):
            if isinstance(i, bool) or not hasattr(i, "__index__") or not 0 <= int(i) < n:
                raise ValueError(f"text token id {i!r} at position {pos} is out of range [0, {n})")
        if not ids:
            return ""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``tokenizer.json`` (standard format) and ``cm3leon_tokenizer.json``, atomically."""
        directory = Path(directory)
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            (tmp / _TOKENIZER_FILE).write_text(self._tok.to_str(pretty=True), encoding="utf-8")
            write_tokenizer_marker(
                tmp, REGISTERED_NAME, {"format": _FORMAT, "vocab_size": self.vocab_size, "info": self.info}
            )
        return directory

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """See :func:`load_text_tokenizer`."""
        return load_text_tokenizer(path)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def load_text_tokenizer(path: str | Path) -> BPETokenizer:
    """Load a directory written by :meth:`BPETokenizer.save`, or any byte-level BPE ``tokenizer.json``.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: incomplete export, unreadable JSON, not a BPE model, a lossy
            pipeline (normalizer / non-byte-level pre-tokenizer) or special tokens.
    """
    path = Path(path)
    info: dict[str, Any] = {}
    if path.is_dir():
        if not is_complete(path):
            raise ValueError(f"{path}: incomplete tokenizer export (no COMPLETE marker)")
        meta_path = path / TOKENIZER_MARKER
        if meta_path.is_file():
            meta = read_json(meta_path)
            info = dict(meta.get("info") or {}) if isinstance(meta, dict) else {}
        path = path / _TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer.json not found")
    try:
        tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as err:  # the Rust side raises a plain Exception on bad JSON
        raise ValueError(f"{path}: not a valid tokenizer.json: {err}") from None
    spec = json.loads(tok.to_str())
    if (spec.get("model") or {}).get("type") != "BPE":
        raise ValueError(f"{path}: model type {(spec.get('model') or {}).get('type')!r}, expected BPE")
    if spec.get("normalizer") is not None:
        raise ValueError(f"{path}: has a normalizer; byte-level BPE must not normalise text (round trip)")
    if (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise ValueError(f"{path}: pre_tokenizer must be ByteLevel for an exact round trip")
    if spec.get("added_tokens"):
        raise ValueError(f"{path}: contains added/special tokens; specials belong to the unified vocabulary")
    return BPETokenizer(tok, info=info)


def _check_text(text: Any, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: not encodable as UTF-8 at position {err.start} (lone surrogate?)") from None


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    for i, t in enumerate(texts):
        _check_text(t, f"training text {i}")
        yield t
