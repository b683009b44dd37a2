"""Benchmarks of meta-training and evaluation speed (``kml-bench``, ``scripts/bench.py``).

- :mod:`kml.bench.timing` -- one timed case (:class:`BenchCase`): real meta-updates on
  device-resident random images;
- :mod:`kml.bench.suite` -- the sections, their ratios and the report.
"""

from typing import Any

from kml.bench.suite import PRESETS, SECTIONS, markdown_table, methods, run_from_config, run_suite, suite_markdown
from kml.bench.timing import BenchCase, device_name, random_sampler, time_evaluation, time_training

__all__ = [
    "BenchCase",
    "METHODS",
    "PRESETS",
    "SECTIONS",
    "device_name",
    "markdown_table",
    "methods",
    "random_sampler",
    "run_from_config",
    "run_suite",
    "suite_markdown",
    "time_evaluation",
    "time_training",
]


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # the registered methods, at the time of access
        return methods()
    raise AttributeError(f"module 'kml.bench' has no attribute {name!r}")
