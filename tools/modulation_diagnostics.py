#!/usr/bin/env python
"""What the modulation of saved runs does, per mode and block, at chosen checkpoints.

    python tools/modulation_diagnostics.py <run_dir> [<run_dir> ...] [--checkpoints 1000 5000]
        [--tasks 20] [--data-root data] [--output diagnostics.json]

For every run and checkpoint, on the first ``--tasks`` fixed test tasks of each mode:
the query feature norm, the task embedding's mean and spread across tasks, FiLM's
scales (mean, minimum, share negative) and shifts or KML's |W_hat / W - 1| and |db(v)|,
with their spread across tasks (each modulation reports its own; one without statistics
is skipped with a line), and the relative change of the logits when the conv biases and
db(v) are zeroed (kml.analysis.diagnostics). Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories of kml-train")
    parser.add_argument("--checkpoints", nargs="*", default=["last"], help="iterations (default: last)")
    parser.add_argument("--tasks", type=int, default=20, help="test tasks per mode (default: 20)")
    parser.add_argument("--data-root", default=None, help="prepared datasets (default: each run's data.root)")
    parser.add_argument("--output", default="modulation_diagnostics.json", help="the JSON to write")
    args = parser.parse_args(argv)

    from omegaconf import OmegaConf

    from kml.analysis.diagnostics import bias_inertness, modulation_statistics
    from kml.data import fixed_eval_tasks
    from kml.engine.checkpoints import load_run
    from kml.engine.from_config import tasksets_for
    from kml.errors import KmlError
    from kml.io import atomic_write_json
    from kml.modulation import get_modulation

    report = []
    try:
        for run_dir in args.run_dirs:
            for checkpoint in args.checkpoints:
                run = load_run(run_dir, checkpoint)
                config = run.config
                if args.data_root:
                    config = OmegaConf.merge(config, {"data": {"root": args.data_root}})
                test = tasksets_for(config, "cpu").test
                seed = int(config.eval.seed)
                batches = list(fixed_eval_tasks(test, args.tasks, args.tasks, seed=seed))
                stats = modulation_statistics(run.learner, batches)
                inert = max(bias_inertness(run.learner, batch) for _, batch in batches)
                report.append({"run_dir": str(run_dir), "method": run.method, "iteration": run.iteration,
                               "tasks_per_mode": args.tasks, "bias_zeroed_logit_change": inert, "modes": stats})
                print(f"{run.method} @ {run.iteration} ({run_dir}): zeroing b and db(v) changes the logits by "
                      f"{inert:.1e} (relative)")
                for mode, entry in stats.items():
                    line = f"  {mode:14s} feature norm {entry['feature_norm']:7.2f}"
                    if "embedding" in entry:
                        line += f"  v spread {entry['embedding']['task_spread']:.3f}"
                    for i, block in enumerate(entry.get("blocks", [])):
                        line += f" | b{i} {get_modulation(block['kind']).summary(block)}"
                    if "skipped" in entry:
                        line += f" | modulation {entry['skipped']} provides no statistics: skipped"
                    print(line)
    except KmlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    atomic_write_json(Path(args.output), report)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
