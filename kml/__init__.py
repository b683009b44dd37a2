"""kml: multimodal few-shot meta-learning with Kernel Modulation (NeurIPS 2021).

The front door (imported on first use, so ``import kml`` stays light):

    from kml import KernelModulatedConv2d, FiLM, build_learner, get_tasksets, load_run

Packages and modules:

- :mod:`kml.modulation` -- :class:`~kml.modulation.KernelModulatedConv2d`, FiLM and the
  generators (usable on their own in other research code, and the layers the
  learners train with), and the modulation registry;
- :mod:`kml.modulation_spec` -- the generator settings, from the config to each layer;
- :mod:`kml.backbone` -- the backbone protocol and registry; :mod:`kml.nets` -- the
  Conv-4 backbone and the task encoder; :mod:`kml.resnet` -- ResNet-12;
- :mod:`kml.learners` -- MAML and ProtoNet with none / FiLM / KML modulation,
  vectorised over the tasks of a meta-batch, and the learner registry;
  :mod:`kml.recipes` -- their recipes; :mod:`kml.registry` -- the registries' class
  (``docs/extending.md``: your own modulation, learner or backbone);
- :mod:`kml.data` -- prepared datasets, episodes and multimodal meta-batches;
- :mod:`kml.engine` -- runs: training, validation, evaluation, checkpoints;
- :mod:`kml.analysis` -- paired comparisons and the transference analysis;
- :mod:`kml.campaign` -- campaigns of runs and the results report;
- :mod:`kml.config` -- every configuration schema; :mod:`kml.cli` -- the commands.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "KernelModulatedConv2d": "kml.modulation",
    "FiLM": "kml.modulation",
    "build_learner": "kml.learners",
    "get_tasksets": "kml.data",
    "EpisodeBatch": "kml.data",
    "load_run": "kml.engine.checkpoints",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kml' has no attribute {name!r}")
