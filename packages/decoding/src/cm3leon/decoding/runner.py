"""The ``generate`` runner of ``cm3leon ablate``: one generation run per matrix cell.

Writes the samples into ``<run_dir>/samples`` (the config's ``output`` is ignored) and
returns the summary plus the path of ``manifest.json``, which the ``text_to_image``
runner of cm3leon-eval scores (CLIP re-ranking over the first ``num_candidates``, FID,
CLIP score).  A matrix over ``decoding.image.pipelines`` / ``retrieval.k`` /
``num_candidates`` reproduces Figure 4 and Table 1's ablations.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cm3leon.decoding.config import GenerateConfig

__all__ = ["run_generate"]


def run_generate(cfg: GenerateConfig, run_dir: Path) -> dict[str, Any]:
    """Generate with ``cfg`` into ``run_dir/samples``; return the run summary."""
    from cm3leon.decoding.run import run_generation

    out = Path(run_dir) / "samples"
    summary = run_generation(replace(cfg, output=str(out)), overwrite=True, progress=False)
    manifest = out / "manifest.json"
    return {**summary, "manifest": str(manifest) if manifest.is_file() else None}
