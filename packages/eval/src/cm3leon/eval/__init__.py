"""cm3leon.eval: FID, CLIP score, CIDEr-D, VQA accuracy, protocols and ablation matrices.

Import the submodules directly (``cm3leon.eval.metrics.fid``, ``cm3leon.eval.protocols.vqa``, ...); this
package module stays import-light because the plugin entry point imports it.
"""

__version__ = "0.1.0"
