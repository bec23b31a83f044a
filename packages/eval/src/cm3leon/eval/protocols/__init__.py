"""The evaluation protocols: one module each, scoring prediction files or a checkpoint.

=====================  ==================================  ================================
module and runner      command                             paper
=====================  ==================================  ================================
``text_to_image``      ``cm3leon eval text-to-image``      §3.2, Table 1, Figure 4 (FID, CLIP
                                                           score, world accuracies vs chance)
``captioning``         ``cm3leon eval captioning``         §4.2, Table 2 (CIDEr-D vs the
                                                           nearest-caption baseline)
``vqa``                ``cm3leon eval vqa``                §4.2, Table 2 (VQA accuracy vs
                                                           the majority-answer baselines)
``editing``            ``cm3leon eval editing``            §4.1 (world edit accuracy vs the
                                                           identity/target baselines)
=====================  ==================================  ================================

Each protocol module holds its config schema (``TextToImageConfig``, ...), its scoring over
files (``score_text_to_image``, ``score_caption_files``, ``score_vqa_files``,
``score_edits``) and ``run_<protocol>(cfg, run_dir)``: without ``predictions`` it
generates from the checkpoint first (through the registered generator runner,
cm3leon-decoding's ``generate``: :mod:`cm3leon.eval.protocols.generation`; finished
generations are reused), with ``predictions`` it scores that file or folder instead.  Every
run writes ``results.json``; generated runs also a ``samples.png`` grid.  The metrics are
their own modules (:mod:`cm3leon.eval.metrics.cider`, :mod:`cm3leon.eval.metrics.vqa`,
:mod:`cm3leon.eval.metrics.fid`, :mod:`cm3leon.eval.metrics.clip_score`); :mod:`~cm3leon.eval.protocols.fid`
is the file-only FID between two image sets (``cm3leon eval fid``, runner ``fid``).
"""

from cm3leon.eval.protocols.captioning import CaptioningConfig, run_captioning
from cm3leon.eval.protocols.editing import EditingConfig, run_editing
from cm3leon.eval.protocols.text_to_image import TextToImageConfig, run_text_to_image
from cm3leon.eval.protocols.vqa import VQAConfig, run_vqa

__all__ = [
    "PROTOCOLS",
    "CaptioningConfig",
    "EditingConfig",
    "TextToImageConfig",
    "VQAConfig",
    "run_captioning",
    "run_editing",
    "run_text_to_image",
    "run_vqa",
]

#: Command name -> (runner name, config schema, run function, one-line help).
PROTOCOLS = {
    "text-to-image": (
        "text_to_image", TextToImageConfig, run_text_to_image,
        "Zero-shot text-to-image: N samples per caption, CLIP re-ranking, FID, CLIP score, "
        "world accuracy vs chance.",
    ),
    "captioning": (
        "captioning", CaptioningConfig, run_captioning,
        "Captioning with the SFT task prompt: CIDEr-D vs the nearest-caption baseline.",
    ),
    "vqa": (
        "vqa", VQAConfig, run_vqa,
        "VQA with the SFT task prompt: short answers, VQA accuracy vs majority baselines.",
    ),
    "editing": (
        "editing", EditingConfig, run_editing,
        "InstructPix2Pix editing with dual guidance: world edit accuracy vs identity/target.",
    ),
}  # fmt: skip
