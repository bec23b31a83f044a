"""Readers for the public dataset formats, one module per format family.

Every reader has the signature documented in :mod:`cm3leon.tasks.readers.common`::

    reader(path, *, split=None, skip_bad=False, stats=None, **options) -> Iterator[record]

and yields the records of :mod:`cm3leon.tasks.records` (images loaded as RGB PIL).
The files are parsed by :mod:`cm3leon.core.formats` (one module per format, beside its
writer); these modules locate the files and images and map the rows to records.

=======================  ===================================================  ==========================
task(s)                  reader                                               format
=======================  ===================================================  ==========================
coco_captioning          :func:`.coco.read_coco_captions`                     ``captions_<split>.json``
edge/hed/scribble        :func:`.coco.read_coco_images`                       ``captions_<split>.json``
object_detection, seg    :func:`.coco.read_coco_instances`                    ``instances_<split>.json``
pose_to_image            :func:`.coco.read_coco_keypoints`                    ``person_keypoints_<split>.json``
depth/norm_to_image      :func:`.coco.read_coco_depth`                        captions + ``depth/<stem>.png``
flickr30k                :func:`.flickr30k.read_flickr30k`                    ``dataset_flickr30k.json``
vqa2, okvqa              :func:`.vqa.read_vqa2`, :func:`.vqa.read_okvqa`      questions + annotations JSON
vizwiz                   :func:`.vqa.read_vizwiz`                             ``<split>.json``
scienceqa                :func:`.scienceqa.read_scienceqa`                    ``problems.json`` + images
image_paragraph          :func:`.paragraph.read_image_paragraph`              ``paragraphs_v1.json``
localized_narratives     :func:`.narratives.read_localized_narratives`        ``*.jsonl``
instructpix2pix          :func:`.pix2pix.read_instructpix2pix`                sample folders or parquet
ocr                      :func:`.ocr.read_ocr`                                ``ocr.jsonl``
=======================  ===================================================  ==========================
"""

from __future__ import annotations

from cm3leon.tasks.readers.common import FormatError, ReadContext, RecordError, reader

__all__ = ["FormatError", "ReadContext", "RecordError", "reader"]
