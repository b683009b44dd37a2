"""The built-in learners, backbones and modulations, registered by importing their modules.

A registry (:mod:`kml.registry`) knows a class once its module has run its
``register_*`` decorator. This module imports the built-ins, so that ``maml``,
``protonet``, ``conv4``, ``resnet12``, ``film`` and ``kml`` are registered; the public
packages that look names up (:mod:`kml.learners`, the config validation) import it. Nothing
it imports imports it back: the import graph stays acyclic.
"""

import kml.learners.maml  # noqa: F401  (maml)
import kml.learners.protonet  # noqa: F401  (protonet)
import kml.modulation  # noqa: F401  (film, kml)
import kml.nets  # noqa: F401  (conv4)
import kml.resnet  # noqa: F401  (resnet12)
