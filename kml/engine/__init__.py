"""Meta-training and evaluation engine: runs, checkpoints, metrics, reports.

- :mod:`kml.engine.runs` -- a whole run (``run_training``, ``evaluate_run``);
- :mod:`kml.engine.trainer` -- the meta-training loop;
- :mod:`kml.engine.loggers` -- CSV, TensorBoard and W&B loggers fed the records of ``metrics.jsonl``;
- :mod:`kml.engine.checkpoints` -- safe checkpoints and ``load_run`` (``kml.load_run``);
- :mod:`kml.engine.evaluation` -- accuracy with 95% confidence intervals;
- :mod:`kml.engine.reporting` -- plots and comparison tables;
- :mod:`kml.engine.distributed` -- multi-process training with torch.distributed;
- :mod:`kml.engine.rundir` -- the run directory, its lock, and the config of a resumed run.
"""
