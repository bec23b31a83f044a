"""Helpers that fabricate installed distributions (dist-info + module) for plugin tests."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(
    site: Path, dist: str, module: str, source: str, *, entry_name: str | None = None, version: str = "0.1"
) -> Path:
    """Create ``site/<module>.py`` and a ``<dist>-<version>.dist-info`` exposing it as a cm3leon plugin.

    ``importlib.metadata`` discovers it once ``site`` is on ``sys.path``, exactly as it
    discovers an installed wheel.
    """
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[cm3leon]\n{entry_name or module} = {module}\n")
    return info
