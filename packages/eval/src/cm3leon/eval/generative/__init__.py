"""Generation-driven protocols: a checkpoint and a dataset in, JSON results and grids out.

=====================  ===========================  =====================================
runner                 function                     paper
=====================  ===========================  =====================================
``eval_text_to_image`` :func:`run_text_to_image_eval` §3.2, Table 1, Figure 4 (FID, CLIP
                                                     score, world accuracies vs chance)
``eval_captioning``    :func:`run_captioning_eval`   §4.2, Table 2 (CIDEr-D vs the
                                                     nearest-caption baseline)
``eval_vqa``           :func:`run_vqa_eval`          §4.2, Table 2 (VQA accuracy vs the
                                                     majority-answer baselines)
``eval_editing``       :func:`run_editing_eval`      §4.1 (world edit accuracy vs the
                                                     identity/target baselines)
=====================  ===========================  =====================================

Each is a registered runner (``cm3leon ablate`` sweeps them) and a command
(``cm3leon eval protocol text-to-image|captioning|vqa|editing CONFIG key=value ...``).
Generation goes through the registered generator runner (cm3leon-decoding's
``generate``), never an import: see :mod:`cm3leon.eval.generative.generation`.  Every run
writes ``results.json`` (``protocol``, ``metrics``, ``baselines``, counts, files, the
config) and a ``samples.png`` grid; finished generations are reused.
"""

from cm3leon.eval.generative.captioning import CaptioningEvalConfig, run_captioning_eval
from cm3leon.eval.generative.config import (
    STRATEGIES,
    ClipChoice,
    DecodingChoice,
    FidChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.generative.editing import EditingEvalConfig, run_editing_eval
from cm3leon.eval.generative.generation import Generation, run_generator
from cm3leon.eval.generative.text_to_image import TextToImageEvalConfig, run_text_to_image_eval
from cm3leon.eval.generative.vqa import VQAEvalConfig, run_vqa_eval

__all__ = [
    "PROTOCOLS",
    "STRATEGIES",
    "CaptioningEvalConfig",
    "ClipChoice",
    "DecodingChoice",
    "EditingEvalConfig",
    "FidChoice",
    "Generation",
    "ModelSource",
    "RetrievalChoice",
    "TextToImageEvalConfig",
    "VQAEvalConfig",
    "generate_config",
    "run_captioning_eval",
    "run_editing_eval",
    "run_generator",
    "run_text_to_image_eval",
    "run_vqa_eval",
]

#: Command name -> (runner name, config schema, run function, one-line help).
PROTOCOLS = {
    "text-to-image": (
        "eval_text_to_image", TextToImageEvalConfig, run_text_to_image_eval,
        "Zero-shot text-to-image: N samples per caption, CLIP re-ranking, FID, CLIP score, "
        "world accuracy vs chance.",
    ),
    "captioning": (
        "eval_captioning", CaptioningEvalConfig, run_captioning_eval,
        "Captioning with the SFT task prompt: CIDEr-D vs the nearest-caption baseline.",
    ),
    "vqa": (
        "eval_vqa", VQAEvalConfig, run_vqa_eval,
        "VQA with the SFT task prompt: short answers, VQA accuracy vs majority baselines.",
    ),
    "editing": (
        "eval_editing", EditingEvalConfig, run_editing_eval,
        "InstructPix2Pix editing with dual guidance: world edit accuracy vs identity/target.",
    ),
}  # fmt: skip
