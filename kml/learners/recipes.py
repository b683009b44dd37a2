"""The learners' recipes, under the import path of kml 0.1: they live in :mod:`kml.recipes`
(importable without torch, so the run-config schema can read them)."""

from kml.recipes import (  # noqa: F401
    BATCH_NORMS,
    DEFAULT_LEARNER,
    EPISODE_DEFAULTS,
    MODULATION_DEFAULTS,
    PROTOCOLS,
    PROTOTYPE_REFINEMENTS,
    QUERY_MODULATIONS,
    RECIPES,
    EpisodeDefaults,
    ModulationDefaults,
    Recipe,
    __all__,
    plain,
    recipe,
)
