"""kml: multimodal few-shot meta-learning with Kernel Modulation (NeurIPS 2021).

Public entry points:

- :mod:`kml.modulation` -- :class:`~kml.modulation.KernelModulatedConv2d`, FiLM and
  the parameter generators (usable on their own in other research code);
- :mod:`kml.nets` -- the Conv-4 backbones and the task encoder;
- :mod:`kml.learners` -- MAML and ProtoNet, with none / FiLM / KML modulation,
  vectorised over the tasks of a meta-batch;
- :mod:`kml.data` -- prepared datasets, episodes and multimodal meta-batches.
"""

__version__ = "0.1.0"
