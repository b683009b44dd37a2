"""Prepared datasets, few-shot episodes and multimodal meta-batches.

Quick start (see ``docs/data.md``):

    from kml.data import get_tasksets
    train, val, test = get_tasksets(["omniglot", "miniimagenet"], ways=5, shots=1, queries=15,
                                    root="data", image_size=84, device="cpu", seed=0)
    batch = train.sample(10)         # EpisodeBatch: support (10, 5, 3, 84, 84), ...

Datasets: ``omniglot``, ``miniimagenet``, ``fc100``, ``cub``, ``aircraft``,
``gtsrb``, ``tinyimagenet`` (prepare with ``scripts/prepare_data.py``), and the
embedded synthetic modes ``synthetic_glyphs``, ``synthetic_textures``,
``synthetic_shapes`` (the mixture ``synthetic``), generated on first use, and
folders of your own images prepared with ``prepare_folder`` (or
``scripts/prepare_data.py dataset=folder source=<folder> name=<name>``).
:class:`EpisodeDataset` serves a sampler's meta-batches as a ``torch.utils.data``
dataset; :class:`TaskDataset` samples episodes from any map-style torch ``Dataset`` of
``(image, label)``; :func:`load_images` turns image files into a learner's input.
"""

from kml.data.archives import file_digest, safe_extract, verify_checksum
from kml.data.datasets.folder import FolderSpec
from kml.data.episode_dataset import EpisodeDataset
from kml.data.episodes import EpisodeBatch, ModeData, TaskDraw, draw_tasks, gather_tasks
from kml.data.errors import DataError
from kml.data.image_files import load_images
from kml.data.mixture import MixtureSampler, derive_seed, fixed_eval_tasks
from kml.data.perf import tune_cpu_allocator
from kml.data.prepare import (
    ensure_prepared,
    prepare_all,
    prepare_command,
    prepare_dataset,
    prepare_folder,
    prepared_path,
)
from kml.data.registry import MIXTURES, SPECS, check_folder_name, get_spec, known_names, resolve_names
from kml.data.storage import Manifest, read_manifest
from kml.data.synthetic import SYNTHETIC_MIXTURE
from kml.data.task_dataset import ClassSplit, DatasetMode, TaskDataset
from kml.data.tasksets import DataOptions, TaskSets, get_tasksets, load_modes

__all__ = [
    "DataError",
    "ClassSplit",
    "DatasetMode",
    "EpisodeBatch",
    "EpisodeDataset",
    "FolderSpec",
    "Manifest",
    "MIXTURES",
    "MixtureSampler",
    "ModeData",
    "SPECS",
    "SYNTHETIC_MIXTURE",
    "TaskDataset",
    "TaskDraw",
    "TaskSets",
    "DataOptions",
    "check_folder_name",
    "derive_seed",
    "draw_tasks",
    "ensure_prepared",
    "file_digest",
    "fixed_eval_tasks",
    "gather_tasks",
    "get_spec",
    "get_tasksets",
    "known_names",
    "load_images",
    "load_modes",
    "prepare_all",
    "prepare_command",
    "prepare_dataset",
    "prepare_folder",
    "prepared_path",
    "read_manifest",
    "resolve_names",
    "safe_extract",
    "tune_cpu_allocator",
    "verify_checksum",
]
