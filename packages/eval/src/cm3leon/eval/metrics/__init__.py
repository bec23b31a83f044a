"""The evaluation metrics, each exact across ranks (torchmetrics states) and checked
against its reference implementation:

* :mod:`.fid` -- FID (:mod:`.frechet` the distance, :mod:`.inception` the FID Inception-v3
  and its strict weights loader, :mod:`.features` the registered feature extractors);
* :mod:`.clip_score` -- CLIP score;
* :mod:`.cider` -- CIDEr-D (:mod:`.ptb` the COCO evaluation's PTB tokenisation);
* :mod:`.vqa` -- VQA accuracy, both versions of ``vqaEval.py``;
* :mod:`.records` -- JSON records through torchmetrics' cross-rank gather.

The protocols that use them live in :mod:`cm3leon.eval.protocols`.
"""
