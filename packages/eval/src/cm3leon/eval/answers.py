"""Short answers from generated text, per the answer layouts of Table 5's VQA templates.

The VQA templates (shared by VQA2, VizWiz and OKVQA; ScienceQA ends the same way) put
the answer in one of these places::

    Question: {question} Answer: {answer}. <break> {image}
    Question: {question} [newline] {answer} <break> {image}
    Question: {question} The answer is {answer}. <break> {image}
    ... Let's think step-by-step: {explanation} So the answer is {answer}. <break> {image}

The evaluation prompt is the SFT example with exactly ``{answer}`` masked
(``... The answer is<mask:0>. <break> [image] <break> <infill:0>``, see
``cm3leon.decoding.tasks.prompt_from_task``), the layout the CM3 objective's task-aware
option trains (``CM3Config.target_prob``), so a fine-tuned model infills the bare field
(``" blue"``) and stops with ``<eos>``: extraction is then just stripping whitespace.  A
model trained otherwise may run on (the template's period, a new line, a restated lead),
so :func:`extract_short_answer` keeps the answer only:

1. text after the first "the answer is" (any case; covers "So the answer is"), else after
   a leading "Answer:";
2. up to the first line break;
3. up to the first period that is not a decimal point (``2.5`` stays);
4. whitespace collapsed, surrounding quotes and ``, ; : ! ?`` stripped.

The official VQA normalisation (:mod:`cm3leon.eval.metrics.vqa`) then applies when scoring.
"""

from __future__ import annotations

import re

__all__ = ["extract_short_answer"]

_ANSWER_IS = re.compile(r"\bthe answer is\b\s*:?", re.IGNORECASE)
_ANSWER_COLON = re.compile(r"^\s*answer\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?!\d)")


def extract_short_answer(text: str) -> str:
    """The short answer in a generated answer span (see the module docstring).

    >>> extract_short_answer(" blue")
    'blue'
    >>> extract_short_answer(" blue. Question: what shape?")
    'blue'
    >>> extract_short_answer("So the answer is 2.5 metres.")
    '2.5 metres'
    """
    found = _ANSWER_IS.search(text)
    text = text[found.end() :] if found is not None else _ANSWER_COLON.sub("", text, count=1)
    text = text.lstrip().split("\n", 1)[0]
    end = _SENTENCE_END.search(text)
    if end is not None:
        text = text[: end.start()]
    return " ".join(text.split()).strip(" ,;:!?\"'")
