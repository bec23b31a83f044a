"""The unified vocabulary: one id space for special, text and image tokens.

Layout (contiguous blocks, in this order)::

    [0, S)                special tokens
        0                 <pad>
        1                 <eos>     (also begins every example, metaseq style)
        2                 <break>   (modality change, Figure 8)
        3                 <unk>
        4 .. 4+K-1        <mask:0> .. <mask:K-1>     CM3 mask sentinels
        4+K .. 4+2K-1     <infill:0> .. <infill:K-1> CM3 infill sentinels
    [S, S+T)              text tokens  (text-tokenizer id t  -> S + t)
    [S+T, S+T+I)          image tokens (VQ code c            -> S + T + c)

It lives in ``cm3leon.core`` (not in the tokenizers package) because the model,
the CM3 objective, packing, decoding and evaluation all need it and every
package depends on core; the tokenizers package builds it from trained
tokenizers (``Vocabulary(text_size=bpe.vocab_size, image_size=vq.codebook_size)``).

Every conversion checks its input: an out-of-range id raises ``ValueError``
naming the id and where it came from, before it can reach an embedding table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["Modality", "Vocabulary"]

Modality = Literal["special", "text", "image"]

_FIXED_SPECIALS = ("<pad>", "<eos>", "<break>", "<unk>")


@dataclass(frozen=True)
class Vocabulary:
    """Unified id space.

    Args:
        text_size: number of text-tokenizer ids (paper: 56,320).
        image_size: image codebook size (paper: 8,192).
        num_sentinels: number of numbered ``<mask:i>``/``<infill:i>`` pairs (CM3 uses several).
    """

    text_size: int
    image_size: int
    num_sentinels: int = 8

    def __post_init__(self) -> None:
        for name in ("text_size", "image_size", "num_sentinels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Vocabulary.{name} must be a positive integer, got {value!r}")

    # ------------------------------------------------------------------ layout
    pad_id = 0
    eos_id = 1
    break_id = 2
    unk_id = 3

    @property
    def num_special(self) -> int:
        return len(_FIXED_SPECIALS) + 2 * self.num_sentinels

    @property
    def text_offset(self) -> int:
        return self.num_special

    @property
    def image_offset(self) -> int:
        return self.num_special + self.text_size

    @property
    def size(self) -> int:
        """Total number of ids (the model's embedding rows)."""
        return self.image_offset + self.image_size

    def mask_id(self, i: int = 0) -> int:
        """Id of ``<mask:i>``."""
        self._check_sentinel(i)
        return len(_FIXED_SPECIALS) + i

    def infill_id(self, i: int = 0) -> int:
        """Id of ``<infill:i>``."""
        self._check_sentinel(i)
        return len(_FIXED_SPECIALS) + self.num_sentinels + i

    def _check_sentinel(self, i: int) -> None:
        if not 0 <= i < self.num_sentinels:
            raise ValueError(f"sentinel index {i} out of range [0, {self.num_sentinels})")

    @property
    def mask_ids(self) -> tuple[int, ...]:
        return tuple(self.mask_id(i) for i in range(self.num_sentinels))

    @property
    def infill_ids(self) -> tuple[int, ...]:
        return tuple(self.infill_id(i) for i in range(self.num_sentinels))

    def special_tokens(self) -> list[str]:
        """Names of the special tokens, indexed by id."""
        masks = [f"<mask:{i}>" for i in range(self.num_sentinels)]
        infills = [f"<infill:{i}>" for i in range(self.num_sentinels)]
        return [*_FIXED_SPECIALS, *masks, *infills]

    def special_id(self, token: str) -> int:
        """Id of a special token given by name (``"<break>"``, ``"<mask:2>"``, ...)."""
        try:
            return self.special_tokens().index(token)
        except ValueError:
            raise ValueError(f"unknown special token {token!r}") from None

    def token_name(self, token_id: int) -> str:
        """Readable name of an id: ``<break>``, ``text:17``, ``img:4095``."""
        self.check_id(token_id, where="token_name")
        if token_id < self.num_special:
            return self.special_tokens()[token_id]
        if token_id < self.image_offset:
            return f"text:{token_id - self.text_offset}"
        return f"img:{token_id - self.image_offset}"

    # --------------------------------------------------------------- modality
    def modality(self, token_id: int) -> Modality:
        """Which block ``token_id`` belongs to."""
        self.check_id(token_id, where="modality")
        if token_id < self.num_special:
            return "special"
        return "text" if token_id < self.image_offset else "image"

    def is_image(self, ids: np.ndarray | Sequence[int] | object) -> np.ndarray | object:
        """Elementwise test for image ids (numpy arrays or torch tensors)."""
        return (ids >= self.image_offset) & (ids < self.size)  # type: ignore[operator]

    def is_text(self, ids: np.ndarray | object) -> np.ndarray | object:
        """Elementwise test for text ids (numpy arrays or torch tensors)."""
        return (ids >= self.text_offset) & (ids < self.image_offset)  # type: ignore[operator]

    def is_special(self, ids: np.ndarray | object) -> np.ndarray | object:
        """Elementwise test for special ids (numpy arrays or torch tensors)."""
        return (ids >= 0) & (ids < self.num_special)  # type: ignore[operator]

    def is_sentinel(self, ids: np.ndarray | object) -> np.ndarray | object:
        """Elementwise test for ``<mask:i>``/``<infill:i>`` ids."""
        lo = len(_FIXED_SPECIALS)
        return (ids >= lo) & (ids < self.num_special)  # type: ignore[operator]

    # ------------------------------------------------------------- conversion
    def check_id(self, token_id: int, *, where: str) -> int:
        """Return ``token_id`` if it is a valid id, else raise ``ValueError`` naming ``where``."""
        if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
            raise ValueError(f"{where}: token id {token_id!r} is not an integer")
        if not 0 <= int(token_id) < self.size:
            raise ValueError(f"{where}: token id {int(token_id)} out of range [0, {self.size})")
        return int(token_id)

    def check_ids(self, ids: Iterable[int] | np.ndarray | object, *, where: str) -> np.ndarray:
        """Validate a whole sequence/array of ids; return it as ``int64`` numpy.

        Accepts lists, numpy arrays and torch tensors.  The error names the first bad id,
        its position and ``where``.
        """
        arr = _as_int_array(ids, where)
        bad = (arr < 0) | (arr >= self.size)
        if bad.any():
            pos = tuple(int(p) for p in np.argwhere(bad)[0])
            raise ValueError(
                f"{where}: token id {int(arr[pos])} at position {pos if len(pos) > 1 else pos[0]} "
                f"out of range [0, {self.size})"
            )
        return arr

    def text_to_global(self, ids: Iterable[int] | np.ndarray, *, where: str = "text tokenizer") -> np.ndarray:
        """Map text-tokenizer ids ``[0, text_size)`` to global ids."""
        arr = _as_int_array(ids, where)
        _check_range(arr, self.text_size, where, "text")
        return arr + self.text_offset

    def image_to_global(self, codes: Iterable[int] | np.ndarray, *, where: str = "image tokenizer") -> np.ndarray:
        """Map VQ codes ``[0, image_size)`` to global ids."""
        arr = _as_int_array(codes, where)
        _check_range(arr, self.image_size, where, "image code")
        return arr + self.image_offset

    def global_to_text(self, ids: Iterable[int] | np.ndarray, *, where: str = "text span") -> np.ndarray:
        """Map global text ids back to text-tokenizer ids; non-text ids raise."""
        arr = _as_int_array(ids, where)
        local = arr - self.text_offset
        _check_range(local, self.text_size, where, "text", offset=self.text_offset)
        return local

    def global_to_image(self, ids: Iterable[int] | np.ndarray, *, where: str = "image span") -> np.ndarray:
        """Map global image ids back to VQ codes; non-image ids raise."""
        arr = _as_int_array(ids, where)
        local = arr - self.image_offset
        _check_range(local, self.image_size, where, "image", offset=self.image_offset)
        return local

    def count_modalities(self, ids: Iterable[int] | np.ndarray | object) -> dict[str, int]:
        """Count special/text/image tokens (``<pad>`` counted separately)."""
        arr = _as_int_array(ids, "count_modalities")
        pad = int((arr == self.pad_id).sum())
        return {
            "text": int(self.is_text(arr).sum()),
            "image": int(self.is_image(arr).sum()),
            "special": int(self.is_special(arr).sum()) - pad,
            "pad": pad,
        }

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object], *, source: str = "<dict>") -> Vocabulary:
        keys = {"text_size", "image_size", "num_sentinels"}
        unknown = set(data) - keys
        if unknown:
            raise ValueError(f"{source}: unknown vocabulary key(s) {sorted(unknown)}")
        missing = {"text_size", "image_size"} - set(data)
        if missing:
            raise ValueError(f"{source}: missing vocabulary key(s) {sorted(missing)}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def save(self, path: str | Path) -> Path:
        from cm3leon.core.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        from cm3leon.core.io import read_json

        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: vocabulary file must hold a JSON object")
        return cls.from_dict(data, source=str(path))

    def describe(self) -> str:
        return json.dumps(
            {
                "size": self.size,
                "special": [0, self.num_special],
                "text": [self.text_offset, self.image_offset],
                "image": [self.image_offset, self.size],
            }
        )


def _as_int_array(ids: object, where: str) -> np.ndarray:
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):  # torch tensor, without importing torch
        ids = ids.detach().cpu().numpy()  # type: ignore[union-attr]
    if isinstance(ids, (list, tuple)) and not ids:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype == object and all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr.ravel()
    ):
        return arr.astype(np.int64)
    raise ValueError(f"{where}: token ids must be integers, got dtype {arr.dtype}")


def _check_range(arr: np.ndarray, n: int, where: str, what: str, offset: int = 0) -> None:
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        pos = tuple(int(p) for p in np.argwhere(bad)[0])
        raise ValueError(
            f"{where}: {what} id {int(arr[pos]) + offset} at position "
            f"{pos if len(pos) > 1 else pos[0]} out of range for the {what} block "
            f"[{offset}, {offset + n})"
        )
