"""Campaigns: a grid of runs under one budget, their committed records and the results
report (``scripts/reproduce.py campaign=<name>``).

- :mod:`kml.campaign.plan` -- the runs of a campaign and their status;
- :mod:`kml.campaign.runner` -- run, resume, skip, record, estimate;
- :mod:`kml.campaign.launch` -- the missing runs as jobs of a Hydra launcher (SLURM);
- :mod:`kml.campaign.records` -- the records of finished runs, as a report reads them;
- :mod:`kml.campaign.contrasts` -- paired contrasts of two methods, per seed and across seeds;
- :mod:`kml.campaign.findings` -- findings text whose verdicts and figures come from the records;
- :mod:`kml.campaign.claims`, :mod:`kml.campaign.sections`, :mod:`kml.campaign.figures` -- the
  report's claims table, its per-setting sections and its figures;
- :mod:`kml.campaign.report` -- ``docs/results.md`` and its figures from ``results/``.
"""

from kml.campaign.plan import PlannedRun, plan_campaign
from kml.campaign.report import write_report
from kml.campaign.runner import run_campaign

__all__ = ["PlannedRun", "plan_campaign", "run_campaign", "write_report"]
