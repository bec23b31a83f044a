"""cm3leon.tasks: CM3Leon's supervised fine-tuning tasks (§4, Table 5) as plugins.

* :mod:`cm3leon.tasks.builtin` -- one module per Table 5 task (templates + rendering);
* :mod:`cm3leon.tasks.records` -- the canonical record schemas readers yield and tasks render;
* :mod:`cm3leon.tasks.template` -- Table 5 template notation -> documents;
* :mod:`cm3leon.tasks.conditions` -- scikit-image condition extractors (canny, soft edge,
  scribble, segmentation, depth, normals, pose);
* :mod:`cm3leon.tasks.readers` -- readers of the public dataset formats;
* :mod:`cm3leon.tasks.mixture` -- declarative SFT mixtures with the 3/0.3 balancing;
* :mod:`cm3leon.tasks.testing` -- the conformance suite task plugins subclass;
* :mod:`cm3leon.tasks.plugin` -- registration through the ``cm3leon`` entry points.
"""

from __future__ import annotations

from cm3leon.tasks.records import RecordError
from cm3leon.tasks.template import TemplateSet

__all__ = ["RecordError", "TemplateSet", "__version__"]

__version__ = "0.1.0"
