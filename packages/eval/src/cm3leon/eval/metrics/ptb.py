"""PTB tokenisation of captions, as the COCO caption evaluation does it.

coco-caption (``pycocoevalcap``) lower-cases and tokenises every caption with Stanford
CoreNLP 3.4.1's ``PTBTokenizer`` (Java) and then drops punctuation tokens.  This wrapper
runs the same jar with the same flags, once for a whole batch of sentences (the JVM start
dominates), from a private temporary directory.  The jar ships with ``pycocoevalcap``
(``pip install 'cm3leon-eval[cider]'``); Java must be on ``PATH``.

As in coco-caption, lower-casing happens inside CoreNLP, so brackets come out as
``-lrb-``/``-rrb-`` and survive the (upper-case) punctuation filter.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "PTB_PUNCTUATION",
    "PTBTokenizerError",
    "find_corenlp_jar",
    "ptb_tokenize",
    "whitespace_tokenize",
]

# Tokens coco-caption removes after PTB tokenisation (brackets appear as -LRB- etc.).
PTB_PUNCTUATION = frozenset(
    [
        "''",
        "'",
        "``",
        "`",
        "-LRB-",
        "-RRB-",
        "-LCB-",
        "-RCB-",
        ".",
        "?",
        "!",
        ",",
        ":",
        "-",
        "--",
        "...",
        ";",
    ]
)
_JAR_NAME = "stanford-corenlp-3.4.1.jar"


class PTBTokenizerError(RuntimeError):
    """PTB tokenisation is unavailable (no Java, no jar) or failed."""


def find_corenlp_jar() -> Path:
    """Path of the CoreNLP jar bundled with ``pycocoevalcap``."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None:
        raise PTBTokenizerError(
            "PTB tokenisation needs the Stanford CoreNLP jar shipped with pycocoevalcap: "
            "pip install 'cm3leon-eval[cider]' (or pass tokenizer='whitespace')"
        )
    # pycocoevalcap is a namespace package (no __init__.py): search its locations.
    roots = list(spec.submodule_search_locations or [])
    if spec.origin:
        roots.append(str(Path(spec.origin).parent))
    for root in roots:
        jar = Path(root) / "tokenizer" / _JAR_NAME
        if jar.is_file():
            return jar
    raise PTBTokenizerError(f"{_JAR_NAME} missing from the pycocoevalcap installation ({roots})")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise PTBTokenizerError(
            "PTB tokenisation (COCO caption evaluation) runs Stanford CoreNLP and needs Java: "
            "'java' was not found on PATH. Install a Java runtime (e.g. apt-get install "
            "openjdk-17-jre-headless) or pass tokenizer='whitespace' (not comparable to COCO numbers)."
        )
    return java


def ptb_tokenize(sentences: Sequence[str], *, timeout: float = 600.0) -> list[str]:
    """Tokenise ``sentences`` like coco-caption: PTB tokens, lower case, no punctuation.

    Newlines inside a sentence become spaces.  Blank sentences are returned as ``""``
    without being sent to Java (CoreNLP would drop their lines and shift the others).

    Raises:
        PTBTokenizerError: Java or the jar is missing, or the tokenizer failed.
    """
    cleaned = [str(s).replace("\n", " ").replace("\r", " ") for s in sentences]
    todo = [i for i, s in enumerate(cleaned) if s.strip()]
    out = [""] * len(cleaned)
    if not todo:
        return out
    java, jar = _java(), find_corenlp_jar()
    with tempfile.TemporaryDirectory(prefix="cm3leon-ptb-") as tmp:
        src = Path(tmp) / "sentences.txt"
        src.write_bytes("\n".join(cleaned[i] for i in todo).encode("utf-8"))
        cmd = [
            java,
            "-cp",
            str(jar),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            str(src),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PTBTokenizerError(
                f"PTB tokenizer could not run ({' '.join(cmd[:4])} ...): {err}"
            ) from err
    if proc.returncode != 0:
        raise PTBTokenizerError(
            f"PTB tokenizer exited with {proc.returncode}: {proc.stderr.decode('utf-8', 'replace')[-2000:]}"
        )
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(todo) or any(line.strip() for line in lines[len(todo) :]):
        raise PTBTokenizerError(
            f"PTB tokenizer returned {len([x for x in lines if x.strip()])} lines for {len(todo)} sentences"
        )
    for i, line in zip(todo, lines[: len(todo)], strict=True):
        out[i] = " ".join(
            tok for tok in line.rstrip().split(" ") if tok and tok not in PTB_PUNCTUATION
        )
    return out


def whitespace_tokenize(sentences: Sequence[str]) -> list[str]:
    """Lower-case and split on whitespace (no Java; numbers differ from COCO's)."""
    return [" ".join(str(s).lower().split()) for s in sentences]
