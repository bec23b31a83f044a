"""Helpers that fabricate installed distributions (dist-info + module) for plugin tests."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(site: Path, dist: str, module: str, source: str, *, entry_name: str | None = None) -> Path:
    """Create ``site/<module>.py`` and a ``<dist>-0.1.dist-info`` exposing it as a cm3leon plugin.

    ``importlib.metadata`` discovers it once ``site`` is on ``sys.path``, exactly as it
    discovers an installed wheel.
    """
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cm3leon]\n{entry_name or module} = {module}\n")
    return info
