"""``kml-transference`` (``python scripts/transference.py``): transference LR_{i->j} of saved
runs: histograms over checkpoints, runs overlaid, mode-to-mode matrix, and a JSON with
every LR value.

    # every saved checkpoint of one run (300 meta-train tasks of its first mode onto one
    # seeded meta-test task of its second mode)
    kml-transference run_dirs='[outputs/2026-11-26/10-00-00_synthetic_protonet-kml]'

    # the paper's protocol: mini-ImageNet -> FC100, MProtoNet vs MProtoNet+KML
    kml-transference run_dirs='[runs/mprotonet,runs/mprotonet_kml]' \\
        checkpoints='[5000,10000,15000,20000]' source_mode=miniimagenet target_mode=fc100

    # plus the mode-to-mode matrix
    kml-transference run_dirs='[runs/mprotonet_kml]' matrix=true

Outputs (in ``output_dir``, default ``<run_dir>/transference`` for one run,
``./transference`` for several): ``lr_histograms_<run>.png``, ``lr_overlay.png``
(several runs), ``mode_matrix_<run>.png`` (``matrix=true``) and ``transference.json``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.config import TransferenceScriptConfig

__all__ = ["main"]


@hydra_main(config_name="transference", schema=TransferenceScriptConfig)
def main(cfg: DictConfig) -> None:
    from kml.analysis.transference_runs import run
    from kml.data import tune_cpu_allocator

    tune_cpu_allocator()
    run(cfg)
