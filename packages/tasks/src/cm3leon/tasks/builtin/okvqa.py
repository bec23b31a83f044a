"""OK-VQA (Marino et al., 2019), Table 5: 26k examples.

Templates (Table 5, shared by VQA2, VizWiz and OKVQA)::

    Question: {question} Answer: {answer}. <break> {image}
    Question: {question} [newline] {answer} <break> {image}
    Question: {question} The answer is {answer}. <break> {image}

Rendered record ``{"question": "What sport can you use this for?", "answer": "surfing"}`` with template 2::

    Question: What sport can you use this for? The answer is surfing. <break> [image]

Reader: :func:`cm3leon.tasks.readers.vqa.read_okvqa` (OpenEnded_mscoco_<split>_questions.json + mscoco_<split>_annotations.json).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.vqa import VQA_TEMPLATES, VQATask

__all__ = ["TEMPLATES", "okvqa"]

TEMPLATES = VQA_TEMPLATES


def okvqa() -> VQATask:
    """The okvqa task."""
    return VQATask("okvqa", TEMPLATES)
