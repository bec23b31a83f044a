"""The public dataset formats: one module per family, its readers and writers side by side.

=======================  ==============================================================
module                   format
=======================  ==============================================================
:mod:`.common`           :class:`FormatError` / :class:`EntryError`, JSON and JSONL I/O,
                         field checks, JPEG/PNG writers
:mod:`.coco`             COCO 2017 captions, instances, person keypoints; caption results
:mod:`.depth`            cm3leon's depth layout (COCO captions + 16-bit depth PNGs)
:mod:`.vqa`              VQA v2, OK-VQA, VizWiz; VQA results and annotations
:mod:`.flickr30k`        Karpathy's ``dataset_flickr30k.json``
:mod:`.paragraph`        Stanford Image Paragraph
:mod:`.narratives`       Localized Narratives JSONL
:mod:`.scienceqa`        ScienceQA ``problems.json`` + ``pid_splits.json``
:mod:`.instruct_pix2pix` InstructPix2Pix sample folders and parquet release
:mod:`.ocr`              cm3leon's ``ocr.jsonl``
=======================  ==============================================================

Readers parse a file into plain typed rows and check each entry; errors name the file
and the entry.  Writers write exactly the public layout (sorted-key JSON).  The
procedural world's export (``cm3leon.world.formats``), the task readers
(``cm3leon.tasks.readers``) and evaluation (``cm3leon.eval.datasets``) all go through
these modules.
"""

from __future__ import annotations

from cm3leon.core.formats.common import EntryError, FormatError

__all__ = ["EntryError", "FormatError"]
