"""VQA v2 (Goyal et al., 2017), Table 5: 1.3M examples.

Templates (Table 5, shared by VQA2, VizWiz and OKVQA)::

    Question: {question} Answer: {answer}. <break> {image}
    Question: {question} [newline] {answer} <break> {image}
    Question: {question} The answer is {answer}. <break> {image}

Rendered record ``{"question": "What color is the bench?", "answer": "blue"}`` with template 2::

    Question: What color is the bench? The answer is blue. <break> [image]

Reader: :func:`cm3leon.tasks.readers.vqa.read_vqa2` (v2_OpenEnded_mscoco_<split>_questions.json + v2_mscoco_<split>_annotations.json).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.vqa import VQA_TEMPLATES, VQATask

__all__ = ["TEMPLATES", "vqa2"]

TEMPLATES = VQA_TEMPLATES


def vqa2() -> VQATask:
    """The vqa2 task."""
    return VQATask("vqa2", TEMPLATES)
