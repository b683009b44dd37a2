"""Meta-training and evaluation engine: runs, checkpoints, metrics, reports.

- :mod:`kml.engine.runs` -- a whole run (``run_training``, ``evaluate_run``);
- :mod:`kml.engine.trainer` -- the meta-training loop;
- :mod:`kml.engine.checkpoints` -- safe checkpoints and ``load_run``;
- :mod:`kml.engine.evaluation` -- accuracy with 95% confidence intervals;
- :mod:`kml.engine.reporting` -- plots and comparison tables;
- :mod:`kml.engine.distributed` -- multi-process training with torch.distributed.
"""
