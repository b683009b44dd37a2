#!/usr/bin/env python
"""Transference LR_{i->j} of saved runs: histograms over checkpoints, runs overlaid,
mode-to-mode matrix, and a JSON with every LR value.

    # every saved checkpoint of one run (defaults: 300 meta-train tasks of its first
    # mode onto one seeded meta-test task of its second mode, alpha = its train.lr)
    python scripts/transference.py run_dirs='[outputs/2026-11-26/10-00-00_synthetic_protonet-kml]'

    # the paper's protocol: mini-ImageNet -> FC100, MProtoNet vs MProtoNet+KML
    python scripts/transference.py run_dirs='[runs/mprotonet,runs/mprotonet_kml]' \\
        checkpoints='[5000,10000,15000,20000]' source_mode=miniimagenet target_mode=fc100

    # plus the mode-to-mode matrix
    python scripts/transference.py run_dirs='[runs/mprotonet_kml]' matrix=true

Outputs (in ``output_dir``, default ``<run_dir>/transference`` for one run,
``./transference`` for several): ``lr_histograms_<run>.png``, ``lr_overlay.png``
(several runs), ``mode_matrix_<run>.png`` (``matrix=true``) and ``transference.json``.
"""

from omegaconf import DictConfig

from kml.cli import hydra_main, register_resolvers
from kml.transference_config import TransferenceScriptConfig, register_transference_config
from kml.transference_runs import run

register_resolvers()
register_transference_config()


@hydra_main(config_name="transference", schema=TransferenceScriptConfig)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
