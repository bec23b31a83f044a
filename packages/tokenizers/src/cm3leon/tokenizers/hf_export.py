"""A cm3leon model as a folder that Hugging Face ``transformers`` loads with no cm3leon code.

``cm3leon export hf EXPORT_OR_CHECKPOINT OUT --text-tokenizer T --image-tokenizer I`` (or
:func:`export_hf`) writes, atomically (``COMPLETE`` last)::

    OUT/
      config.json              OPTConfig (model_type "opt", OPTForCausalLM), plus a "cm3leon"
                               entry: the vocabulary layout, image token names, tokens per image
      model.safetensors        the weights, converted by cm3leon.core.model.hf_opt.to_hf_opt
      generation_config.json   bos = eos = <eos> (metaseq), pad = <pad>, max_length = context
      tokenizer.json           the unified vocabulary (tokenizers library), ids exactly
      tokenizer_config.json    cm3leon's Vocabulary: specials | text BPE | <img_0> ...
      special_tokens_map.json  (PreTrainedTokenizerFast)
      vq/                      the VQ image tokenizer: config.json + model.safetensors
                               (cm3leon.tokenizers.load_image_tokenizer reads it)
      README.md                model card: YAML metadata (data, config, eval numbers)

so that::

    model = AutoModelForCausalLM.from_pretrained(OUT)
    tok = AutoTokenizer.from_pretrained(OUT)      # PreTrainedTokenizerFast
    ids = tok("a red cube<break>", return_tensors="pt").input_ids   # <eos> a red cube <break>
    out = model.generate(ids, max_new_tokens=64)  # the image's codes as <img_k> tokens

**The unified tokenizer.**  Every id of :class:`~cm3leon.core.vocab.Vocabulary` is an
entry of one BPE model's vocabulary: the specials (``<pad>``, ``<eos>``, ``<break>``,
``<unk>``, ``<mask:i>``, ``<infill:i>``) at their ids, the text BPE's tokens at
``S + t`` (its merges and byte-level pipeline unchanged), and ``<img_c>`` at
``S + T + c``.  The specials and image tokens are also *added tokens* (matched in the
raw string before pre-tokenization), so ``"...<break><img_5><img_9>..."`` encodes to
exactly cm3leon's serialisation.  (``tokenizers`` gives an added token that is not in
the model's vocabulary the next free id, so putting all ids in the model's vocabulary
is the one way to choose them.)  The post-processor prepends ``<eos>``, as cm3leon's
training examples begin (and as OPT's tokenizer does with ``</s>``):
``tok(text).input_ids == DocumentTokenizer.encode_example(doc)`` and
``tok(text, add_special_tokens=False)`` equals ``DocumentTokenizer.encode(doc)``.  One
difference: cm3leon encodes a literal ``"<break>"`` *inside a text segment* as text,
while the string-level tokenizer reads it as the token (cm3leon's own decoder renders
sentinels as these markers too).

**Why this command lives in cm3leon-tokenizers.**  It needs the model (core) and the
tokenizers' file formats: the BPE's ``tokenizer.json`` and the VQ export.  This member
already depends on core, and it is the only one that knows those formats, so the
dependency graph of ``docs/architecture.md`` is unchanged.  Core resolving the
tokenizers by name would still need a ``tokenizer.json``, which the ``TextTokenizer``
protocol does not expose.  The tokenizers themselves are resolved by core's
:func:`~cm3leon.core.tokenization.resolve_tokenizer` (``NAME``, ``NAME:DIR``, ``DIR``).

Requires ``transformers`` (``pip install 'cm3leon-core[hf]'``), imported on use.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cm3leon.core.exported import EXPORT_CONFIG, EXPORT_FORMAT, ExportedModel, load_exported
from cm3leon.core.io import atomic_directory
from cm3leon.core.vocab import Vocabulary
from cm3leon.tokenizers.text_bpe import BPETokenizer
from tokenizers import Tokenizer, processors

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "IMAGE_TOKEN",
    "VQ_FOLDER",
    "export_hf",
    "hf_tokenizer",
    "load_model_source",
    "unified_tokenizer",
]

#: Name of VQ code ``c`` in the exported tokenizer (``<img_0>`` ... ``<img_8191>``).
IMAGE_TOKEN = "<img_{}>"
#: Sub-folder of the export holding the VQ image tokenizer.
VQ_FOLDER = "vq"
MODEL_CARD = "README.md"


def _text_backend(text_tokenizer: Any) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` of a BPE text tokenizer, or of the byte tokenizer's equivalent."""
    if isinstance(text_tokenizer, BPETokenizer):
        return text_tokenizer.backend
    if getattr(text_tokenizer, "name", None) == "bytes" and text_tokenizer.vocab_size == 256:
        # core's ByteTokenizer: id b is byte b, which is the untrained byte-level BPE's id b.
        return BPETokenizer.byte_level().backend
    raise ValueError(
        f"text tokenizer {type(text_tokenizer).__name__} has no tokenizer.json; "
        "the Hugging Face export supports the byte-level BPE ('bpe') and 'bytes'"
    )


def unified_tokenizer(text_tokenizer: Any, vocab: Vocabulary) -> Tokenizer:
    """One ``tokenizers.Tokenizer`` whose ids are exactly ``vocab``'s (see the module docstring).

    Raises:
        ValueError: the text tokenizer's size differs from ``vocab.text_size``, or one of its
            tokens is spelled like a special or image token (the two ids would collide).
    """
    spec = json.loads(_text_backend(text_tokenizer).to_str())
    text_vocab: dict[str, int] = spec["model"]["vocab"]
    if len(text_vocab) != vocab.text_size:
        raise ValueError(f"text tokenizer has {len(text_vocab)} tokens, the model's vocabulary {vocab.text_size}")
    specials = vocab.special_tokens()
    images = [IMAGE_TOKEN.format(c) for c in range(vocab.image_size)]
    ids = {name: i for i, name in enumerate(specials)}
    ids |= {name: vocab.image_offset + c for c, name in enumerate(images)}
    clash = sorted(set(ids) & set(text_vocab))
    if clash:
        raise ValueError(f"text tokens {clash[:5]} are spelled like special/image tokens; cannot export")
    ids |= {token: vocab.text_offset + t for token, t in text_vocab.items()}
    spec["model"]["vocab"] = dict(sorted(ids.items(), key=lambda kv: kv[1]))
    spec["added_tokens"] = [_added(name, ids[name], special=True) for name in specials]
    spec["added_tokens"] += [_added(name, ids[name], special=False) for name in images]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<eos> $A", pair="<eos> $A <eos> $B", special_tokens=[("<eos>", vocab.eos_id)]
    )
    return tok


def _added(content: str, token_id: int, *, special: bool) -> dict[str, Any]:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}  # fmt: skip


def hf_tokenizer(text_tokenizer: Any, vocab: Vocabulary, *, max_length: int | None = None) -> PreTrainedTokenizerFast:
    """:func:`unified_tokenizer` wrapped as a ``transformers.PreTrainedTokenizerFast``.

    ``<eos>`` is also BOS (metaseq), ``<break>`` and the sentinels are additional special
    tokens, padding is on the left (batched generation), and decoding does not "clean up"
    spaces (that would break the byte-level round trip).
    """
    from transformers import PreTrainedTokenizerFast

    specials = vocab.special_tokens()
    return PreTrainedTokenizerFast(
        tokenizer_object=unified_tokenizer(text_tokenizer, vocab),
        bos_token="<eos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=specials[2:3] + specials[4:],  # <break>, <mask:i>, <infill:i>
        clean_up_tokenization_spaces=False, padding_side="left",
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: generate(**tok(...)) works
        model_max_length=max_length or int(1e30),
    )  # fmt: skip


def load_model_source(path: str | Path) -> ExportedModel:
    """An export (directory or lone ``model.safetensors``) or a training checkpoint, loaded.

    A checkpoint (``.pt``, ``latest-rank0.pt`` or a sharded directory) goes through
    ``cm3leon train export``'s code into a temporary export first (needs ``cm3leon-core[train]``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such export or checkpoint")
    if path.suffix == ".safetensors" or _is_export_dir(path):
        return load_exported(path)
    from cm3leon.core.train.export import export_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="cm3leon-hf-export-"))
    try:
        exported = load_exported(export_checkpoint(path, tmp / "export"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    exported.path = path
    return exported


def _is_export_dir(path: Path) -> bool:
    config = path / EXPORT_CONFIG
    if not path.is_dir() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (ValueError, AttributeError):
        return False


def _require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise ImportError("the Hugging Face export needs transformers: pip install 'cm3leon-core[hf]'") from err


def _check_tokenizers(vocab: Vocabulary, text_tokenizer: Any, image_tokenizer: Any) -> None:
    problems = []
    if text_tokenizer.vocab_size != vocab.text_size:
        problems.append(f"text tokenizer has {text_tokenizer.vocab_size} ids, the model {vocab.text_size}")
    if image_tokenizer.codebook_size != vocab.image_size:
        problems.append(f"image tokenizer has {image_tokenizer.codebook_size} codes, the model {vocab.image_size}")
    if problems:
        raise ValueError("the tokenizers do not match the model's vocabulary: " + "; ".join(problems))


def _generation_config(vocab: Vocabulary, max_length: int) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=vocab.eos_id, eos_token_id=vocab.eos_id, pad_token_id=vocab.pad_id,
                            decoder_start_token_id=None, max_length=max_length)  # fmt: skip


def export_hf(
    source: str | Path,
    out: str | Path,
    *,
    text_tokenizer: str | Any,
    image_tokenizer: str | Any,
    summary: str | Path | None = None,
    train_config: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``source`` (an export or a checkpoint) as a Hugging Face folder ``out``.

    Args:
        source: see :func:`load_model_source`.
        out: folder to create (atomically).
        text_tokenizer / image_tokenizer: tokenizer objects, or values for
            :func:`cm3leon.core.tokenization.resolve_tokenizer` (``NAME``, ``NAME:DIR``, ``DIR``).
        summary: a ``summary.json`` (``cm3leon demo``'s, or any ``{"metrics": {...}}``)
            whose evaluation numbers go into the model card.
        train_config: the training ``config.yaml`` for the card's data and training sections
            (default: the one of the run that wrote the checkpoint, when found).
        overwrite: replace an existing ``out``.

    Raises:
        ValueError: the tokenizers do not match the model's vocabulary, the text tokenizer
            has no ``tokenizer.json``, or the architecture cannot be expressed in OPT.
    """
    from cm3leon.core.model.hf_opt import to_hf_opt
    from cm3leon.core.tokenization import resolve_tokenizer
    from cm3leon.tokenizers.hf_card import CardInputs, write_model_card

    _require_transformers()
    text_tok = resolve_tokenizer(text_tokenizer, "text") if isinstance(text_tokenizer, str) else text_tokenizer
    image_tok = resolve_tokenizer(image_tokenizer, "image") if isinstance(image_tokenizer, str) else image_tokenizer
    exported = load_model_source(source)
    vocab, config = exported.vocab, exported.model.config
    _check_tokenizers(vocab, text_tok, image_tok)
    tokenizer = hf_tokenizer(text_tok, vocab, max_length=config.max_seq_len)
    cm3leon_entry = {"vocab": vocab.to_dict(), "image_token": IMAGE_TOKEN, "image_tokenizer": VQ_FOLDER,
                     "tokens_per_image": int(image_tok.num_tokens), "image_size": int(image_tok.image_size)}  # fmt: skip
    hf = to_hf_opt(exported.model, cm3leon=cm3leon_entry)
    hf.generation_config = _generation_config(vocab, config.max_seq_len)
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        image_tok.save(tmp / VQ_FOLDER)
        write_model_card(tmp / MODEL_CARD, CardInputs(
            exported=exported, source=Path(source), out_name=out.name, text_tokenizer=text_tok,
            image_tokenizer=image_tok, cm3leon=cm3leon_entry,
            summary=Path(summary) if summary else None,
            train_config=Path(train_config) if train_config else None,
        ))  # fmt: skip
    return out
