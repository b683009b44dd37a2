"""The schemas of the tools around training: ``scripts/eval.py``, ``scripts/compare.py``,
``scripts/bench.py`` and ``scripts/reproduce.py`` (with the campaign schema of
``configs/campaign/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

__all__ = [
    "EvalOverrides",
    "EvalModeOverrides",
    "EvalEpisodeOverrides",
    "EvalDataOverrides",
    "EvalScriptConfig",
    "CompareScriptConfig",
    "BenchScriptConfig",
    "CampaignMethod",
    "CampaignGroup",
    "CampaignBudget",
    "CampaignTransference",
    "CampaignDiagnostics",
    "PaperReference",
    "CampaignConfig",
    "ReproduceScriptConfig",
]


@dataclass
class EvalOverrides:
    tasks_per_mode: Optional[int] = None
    split: Optional[str] = None
    batch_size: Optional[int] = None


@dataclass
class EvalModeOverrides:
    """Evaluate on other datasets than the run was trained on (``mode.datasets=[gtsrb]``)."""

    name: Optional[str] = None  # default: the datasets joined by '+'
    datasets: Optional[list[str]] = None


@dataclass
class EvalEpisodeOverrides:
    ways: Optional[int] = None
    shots: Optional[int] = None
    queries: Optional[int] = None


@dataclass
class EvalDataOverrides:
    root: Optional[str] = None  # default: the run's data.root


@dataclass
class EvalScriptConfig:
    """``kml-eval``: evaluate a saved run on fixed, seeded tasks: its own test tasks by
    default, or those of another mode, data folder or episode shape."""

    run_dir: Optional[str] = None
    checkpoint: Optional[str] = None  # last (default), best, an iteration number, or a path
    eval: EvalOverrides = field(default_factory=EvalOverrides)
    mode: EvalModeOverrides = field(default_factory=EvalModeOverrides)
    episode: EvalEpisodeOverrides = field(default_factory=EvalEpisodeOverrides)
    data: EvalDataOverrides = field(default_factory=EvalDataOverrides)
    device: str = "auto"
    output: Optional[str] = None  # default: <run_dir>/eval_<checkpoint>_<split>[_<mode>][_<N>w<K>s].json
    progress: bool = True


@dataclass
class CompareScriptConfig:
    """``scripts/compare.py``: the paper-style table of several runs."""

    run_dirs: list[str] = field(default_factory=list)  # run directories or globs
    baseline: Optional[str] = None  # method name or run directory for paired differences; default: the first method
    # the markdown file (beside it <output>.json and <stem>_paired.json); default:
    # outputs/compare/<YYYY-MM-DD_HH-MM-SS>/comparison.md (kml.analysis.comparison.default_output)
    output: Optional[str] = None


@dataclass
class BenchScriptConfig:
    """``scripts/bench.py``: speed of meta-training and evaluation (see docs/performance.md).

    ``preset`` picks the defaults of the device: ``cpu`` (small images so the suite
    takes minutes on a laptop) or ``gpu`` (paper settings, 84x84); ``auto`` by device.
    Any value set here overrides the preset.
    """

    device: str = "auto"
    preset: str = "auto"  # auto | cpu | gpu
    # vectorized cuda_graphs determinism eval meta_batch inner_steps peer paper_cpu options eval_1000 resnet12
    # candidates (speed options against the current path) candidates_profile (the fastest candidates' GPU kernels)
    # conv_layers (one modulated layer, each per-task convolution) cudnn (its kernel choice) compile
    # profile (GPU kernels) memory (largest meta-batch)
    sections: Optional[list[str]] = None
    image_size: Optional[int] = None
    shots: Optional[list[int]] = None
    meta_batch_sizes: Optional[list[int]] = None
    inner_steps: Optional[list[int]] = None
    repeats: Optional[int] = None
    warmup: Optional[int] = None
    eval_tasks: Optional[int] = None
    # the task shape of the cases (default: meta-batches of 10 tasks, 5-way with 15 queries), e.g. tiny for a dry run
    meta_batch_size: Optional[int] = None
    ways: Optional[int] = None
    queries: Optional[int] = None
    output_dir: str = "bench_results"


@dataclass
class CampaignMethod:
    """One method of a campaign: a learner, a modulation, Multi-* or not, and any extra
    config overrides of its runs."""

    name: str = MISSING  # the display name, e.g. MProtoNet+KML (and the paired-test label)
    learner: str = MISSING  # maml | protonet | a registered learner
    modulation: str = "none"  # none | film | kml | a registered modulation
    multi: bool = False  # Multi-* specialists
    overrides: list[str] = field(default_factory=list)  # extra overrides of this method's runs
    # earlier names of this method: the runs recorded under one of them stay its runs (a
    # rename keeps the records), and reports show them under ``name``
    aliases: list[str] = field(default_factory=list)


@dataclass
class CampaignGroup:
    """A group of a campaign's runs: these methods, at these seeds and shots. A campaign
    with groups runs exactly the runs its groups name (each once); without, every method
    at every one of the campaign's seeds and shots."""

    methods: list[str] = field(default_factory=list)  # method names; empty: every method
    seeds: Optional[list[int]] = None  # default: the campaign's seeds
    shots: Optional[list[int]] = None  # default: the campaign's shots


@dataclass
class CampaignBudget:
    """The budget of every run of a campaign (the train.py overrides it sets)."""

    image_size: int = 84
    iterations: int = 1000
    meta_batch_size: Optional[int] = None  # default: the learner's recipe
    checkpoint_every: int = 1000
    log_every: int = 50
    eval_tasks_per_mode: int = 1000
    val_every: int = 0
    val_tasks_per_mode: int = 200
    eval_checkpoint: str = "last"  # last | best


@dataclass
class CampaignTransference:
    """Transference histograms of some of a campaign's runs at several checkpoints."""

    methods: list[str] = field(default_factory=list)  # method names; empty: no transference
    source_mode: str = MISSING
    source_split: str = "train"
    target_mode: str = MISSING
    target_split: str = "test"
    checkpoints: list[int] = field(default_factory=list)
    sources: int = 300
    targets: int = 1
    alpha: float = MISSING  # the source step size (the paper states none: a choice)
    neutral: float = 0.01  # |LR - 1| <= neutral is neutral transfer (the paper states none: a choice)
    seed: int = 0
    # how the histograms depend on alpha: these step sizes at one checkpoint (the last of
    # checkpoints unless sweep_checkpoint is set); recorded as LR quantiles and shares
    alpha_sweep: list[float] = field(default_factory=list)
    sweep_checkpoint: Optional[int] = None


@dataclass
class CampaignDiagnostics:
    """Modulation diagnostics (kml.analysis.diagnostics) of some runs at several checkpoints."""

    methods: list[str] = field(default_factory=list)  # method names; empty: none
    checkpoints: list[int] = field(default_factory=list)  # empty: the last checkpoint
    tasks_per_mode: int = 20


@dataclass
class PaperReference:
    """The paper's numbers for the closest setting, shown in their own column."""

    # e.g. "2Mode, 5-way 1-shot (84x84, 60k iterations)"; "{shots}" stands for each section's shots
    setting: str = ""
    note: str = ""  # how our setting differs
    values: dict[str, float] = field(default_factory=dict)  # method name -> accuracy (%), the campaign's first shots
    # other shots: {shots: {method name: accuracy (%)}}, e.g. {5: {ProtoNet: 58.91}}
    by_shots: dict[int, dict[str, float]] = field(default_factory=dict)
    # the paper's share of positive transfer (LR < 1) per method name, in %
    transference_positive: dict[str, float] = field(default_factory=dict)


@dataclass
class CampaignConfig:
    """A campaign (``configs/campaign/<name>.yaml``): methods x modes x shots x seeds
    under one budget, the paired comparisons to report and, optionally, transference."""

    name: str = MISSING
    title: str = ""
    description: str = ""
    order: int = 0  # position in docs/results.md
    modes: list[str] = field(default_factory=list)  # mode configs (configs/mode/<name>.yaml)
    ways: int = 5
    shots: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: [0])
    methods: list[CampaignMethod] = field(default_factory=list)
    # the runs, as groups of methods x seeds x shots; empty: every method x seeds x shots
    groups: list[CampaignGroup] = field(default_factory=list)
    baseline: str = MISSING  # method name every other method is paired against
    pairs: list[list[str]] = field(default_factory=list)  # further [method, reference] paired comparisons
    # an ablation table: [method, reference, what the method changes] rows, each a paired contrast
    ablation: list[list[str]] = field(default_factory=list)
    budget: CampaignBudget = field(default_factory=CampaignBudget)
    overrides: list[str] = field(default_factory=list)  # train.py overrides of every run
    # modules imported before the campaign is checked, and by each of its runs (imports=[...]):
    # the modulations and learners they register can be the campaign's methods
    imports: list[str] = field(default_factory=list)
    paper: PaperReference = field(default_factory=PaperReference)
    transference: CampaignTransference = field(default_factory=CampaignTransference)
    diagnostics: CampaignDiagnostics = field(default_factory=CampaignDiagnostics)


@dataclass
class ReproduceScriptConfig:
    """``scripts/reproduce.py campaign=<name>``: run a campaign, keep its records, write the report."""

    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    dry_run: bool = False  # print the plan and an estimated time, run nothing
    report_only: bool = False  # rebuild the report from the records in results_dir only
    max_runs: int = 0  # stop after this many runs (0: all); a campaign can continue elsewhere
    # run only the runs of these methods (names as in campaign.methods; []: all), e.g. one
    # process per method on one GPU, or a campaign split across machines; dry_run times only these
    only_methods: list[str] = field(default_factory=list)
    # record runs trained from a work tree with uncommitted changes (marked so in the report),
    # and resume runs on another commit than they started on (marked too)
    allow_dirty: bool = False
    allow_commit_change: bool = False
    # hand the missing runs to a Hydra launcher, one job per run, all launched at once, and
    # record them when they end: a hydra/launcher option (submitit_slurm, submitit_local;
    # the [slurm] extra); null: train them in this process, one after the other
    launcher: Optional[str] = None
    # the launcher's settings, as Hydra overrides: ['hydra.launcher.partition=gpu', ...]
    launcher_overrides: list[str] = field(default_factory=list)
    data_root: str = "data"  # prepared datasets
    work_dir: str = "outputs/campaigns"  # run directories (checkpoints live here, never in results_dir)
    results_dir: str = "results"  # the small records of finished runs, one folder per campaign
    report: str = "docs/results.md"  # the report of every campaign in results_dir
    figures_dir: str = "docs/figures"
    device: str = "auto"
    progress: bool = True
