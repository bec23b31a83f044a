"""Sources of real corpora for ``cm3leon data prepare --source NAME PATH``.

Each is registered by core's plugin like the built-in ``folder`` and ``jsonl`` sources
(:mod:`cm3leon.core.sources`) and yields ``caption, image`` documents (Figure 8 order;
``caption_first=false`` gives ``image, caption``):

``webdataset`` (:mod:`~cm3leon.core.corpora.tars`)
    tar shards in the img2dataset layout (``<key>.jpg|png|webp``, ``<key>.txt``,
    ``<key>.json``): a shard, a folder of shards, a glob/brace pattern, or remote URLs.
``parquet`` (:mod:`~cm3leon.core.corpora.tables`)
    image bytes per row (img2dataset's ``jpg``), or a path/URL column resolved against
    ``image_root``; columns configurable; streamed a row group batch at a time.
``hf`` (:mod:`~cm3leon.core.corpora.tables`)
    a Hugging Face ``datasets`` ``save_to_disk`` folder, or HF parquet files.
``tsv`` (:mod:`~cm3leon.core.corpora.tsv`)
    ``caption<TAB>url`` lines (CC3M; columns configurable), images from ``image_root``.

Contract (shared with every source): unknown options and options of the wrong type are a
``ValueError`` naming them; a bad sample (corrupt or missing image, missing or empty
caption, failed download, unreadable shard) raises a ``ValueError`` naming the shard/file
and the key/row/line, or with ``skip_bad=True`` is listed in the source's ``skipped`` as
``(where, reason)``; nothing is dropped silently.  Images go through core's hardened
loader (:func:`cm3leon.core.images.to_pil_rgb`).  The libraries (``pyarrow``,
``datasets``, ``braceexpand`` for brace patterns) come with ``cm3leon-core[corpora]`` and
are imported only when a source reads; a missing one is a :class:`MissingExtraError`
naming the extra.  Remote webdataset shards (``s3://`` ...) are downloaded into
``cache_dir`` by mosaicml-streaming's downloader (as the trainer's datasets download); the
other sources read local files only.
"""

from __future__ import annotations

from cm3leon.core.corpora.common import MissingExtraError
from cm3leon.core.corpora.tables import hf_source, parquet_source
from cm3leon.core.corpora.tars import webdataset_source
from cm3leon.core.corpora.tsv import tsv_source

__all__ = ["MissingExtraError", "hf_source", "parquet_source", "tsv_source", "webdataset_source"]
