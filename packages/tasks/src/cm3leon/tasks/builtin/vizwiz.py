"""VizWiz (Gurari et al., 2018), Table 5: 92k examples.

Templates (Table 5, shared by VQA2, VizWiz and OKVQA)::

    Question: {question} Answer: {answer}. <break> {image}
    Question: {question} [newline] {answer} <break> {image}
    Question: {question} The answer is {answer}. <break> {image}

Rendered record ``{"question": "What is this?", "answer": "unanswerable"}`` with template 2::

    Question: What is this? The answer is unanswerable. <break> [image]

Reader: :func:`cm3leon.tasks.readers.vqa.read_vizwiz` (<split>.json with images in <split>/).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.vqa import VQA_TEMPLATES, VQATask

__all__ = ["TEMPLATES", "vizwiz"]

TEMPLATES = VQA_TEMPLATES


def vizwiz() -> VQATask:
    """The vizwiz task."""
    return VQATask("vizwiz", TEMPLATES)
