"""Multimodal meta-batches and fixed evaluation tasks.

:class:`MixtureSampler` serves meta-batches of T tasks from one split of M
modes (datasets). Slots are assigned to modes round-robin with a start that
rotates every call: slot ``i`` of a call goes to mode ``(start + i) % M``; the
next call starts where this one stopped (``start + T``, mod M), or one mode
further when that would repeat the same start (T a multiple of M). With 5
modes and 10 tasks every mode gets exactly 2 tasks per batch and the first
slot cycles 0, 1, 2, ...; with 3 tasks and 5 modes the starts are 0, 3, 1, 4,
2 and every mode gets exactly 3 tasks per 5 batches. A single-mode sampler is the same class with one mode
(Multi-* specialists use :meth:`MixtureSampler.sample_mode`).

Randomness comes from one ``torch.Generator`` on the sampler's device, seeded
from ``seed``; :meth:`state_dict` / :meth:`load_state_dict` capture it with the
round-robin position so a resumed run draws exactly the same next episodes.

Evaluation tasks (:meth:`MixtureSampler.eval_tasks`, :func:`fixed_eval_tasks`)
are independent of that state: task ``i`` of mode ``m`` is drawn from a CPU
generator seeded from ``(seed, m, split, i)``, so every method, on any device,
with any chunk size, sees the same tasks for the same dataset, split, ways,
shots, queries and seed.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import torch

from kml.data.episodes import (
    OUTPUT_CHANNELS,
    EpisodeBatch,
    ModeData,
    TaskDraw,
    draw_tasks,
    episode_labels,
)
from kml.data.errors import DataError
from kml.data.imaging import PIXEL_SCALE


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across runs and machines)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise DataError(f"{what} must be a positive integer, got {value!r}")
    value = int(value)  # type: ignore[arg-type]
    if value < 1:
        raise DataError(f"{what} must be a positive integer, got {value}")
    return value


class MixtureSampler:
    """Episode sampler over one split of one or more modes.

    Args:
        modes: the modes (same split, same image size): :class:`ModeData` (prepared
            arrays), :class:`~kml.data.task_dataset.DatasetMode` (a torch ``Dataset``), or a
            sampler, which contributes its modes (e.g. a :class:`~kml.data.TaskDataset`).
            A mode gives its drawn tasks' images through ``gather(draw, shots)``: uint8
            pixels, which the sampler scales by ``1 / 255``, or float ones, served as they are.
        ways: ``N``, the classes of every task.
        shots: ``K``, the support images per class.
        queries: ``Q``, the query images per class.
        seed: seed of the sampler's generator.
        device: where arrays, sampling and batches live (default: the modes').
        replacement: draw the K + Q images of a class with replacement
            (allows classes with fewer than K + Q images).
        rotations: apply the modes' k*90 degree rotations (Omniglot); False
            turns them off.
    """

    def __init__(
        self,
        modes: Sequence[ModeData | MixtureSampler],
        ways: int,
        shots: int,
        queries: int,
        seed: int = 0,
        device: torch.device | str | None = None,
        replacement: bool = False,
        rotations: bool = True,
    ):
        modes = [part for mode in modes for part in (mode.modes if isinstance(mode, MixtureSampler) else [mode])]
        if not modes:
            raise DataError("a sampler needs at least one mode; name at least one dataset")
        self.ways = _positive_int(ways, "ways")
        self.shots = _positive_int(shots, "shots")
        self.queries = _positive_int(queries, "queries")
        self.replacement = bool(replacement)
        self.device = torch.device(device) if device is not None else modes[0].device
        self.modes = [mode.to(self.device) for mode in modes]
        names = [mode.name for mode in self.modes]
        if len(set(names)) != len(names):
            raise DataError(f"mode names must be distinct, got {names}; list each dataset once")
        sizes = {mode.image_size for mode in self.modes}
        if len(sizes) != 1:
            raise DataError(f"modes have different image sizes {sorted(sizes)}; prepare them at one image_size")
        self.image_size = sizes.pop()
        self.rotations = [bool(rotations and mode.rotations) for mode in self.modes]
        for mode in self.modes:
            self._check_mode(mode)
        self.seed = int(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._start = 0
        self._counts_cpu = [mode.counts.cpu() for mode in self.modes]
        self._count_ranges = [(int(c.min()), int(c.max())) for c in self._counts_cpu]  # no device read per draw

    # ---------------------------------------------------------------- checks
    def _check_mode(self, mode: ModeData) -> None:
        if mode.num_classes < self.ways:
            raise DataError(
                f"{self.ways}-way tasks need {self.ways} classes but split {mode.split!r} of {mode.name} has "
                f"{mode.num_classes}; lower episode.ways to at most {mode.num_classes} or use another split/dataset"
            )
        needed = self.shots + self.queries
        if not self.replacement and mode.min_count < needed:
            smallest = int(torch.argmin(mode.counts.cpu()))
            raise DataError(
                f"shots + queries = {needed} but class {mode.class_names[smallest]!r} of split {mode.split!r} of "
                f"{mode.name} has only {mode.min_count} images; lower episode.shots/episode.queries or sample with "
                "replacement (data.replacement=true)"
            )

    # ------------------------------------------------------------ properties
    @property
    def mode_names(self) -> list[str]:
        return [mode.name for mode in self.modes]

    @property
    def split(self) -> str:
        return self.modes[0].split

    def mode_index(self, mode: int | str) -> int:
        """Index of a mode given by name or index."""
        if isinstance(mode, str):
            if mode not in self.mode_names:
                raise DataError(f"mode {mode!r} is not in this sampler; its modes are {', '.join(self.mode_names)}")
            return self.mode_names.index(mode)
        index = int(mode)
        if not 0 <= index < len(self.modes):
            raise DataError(f"mode index {index} out of range; this sampler has {len(self.modes)} modes")
        return index

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(modes={self.mode_names}, split={self.split!r}, ways={self.ways}, "
            f"shots={self.shots}, queries={self.queries}, image_size={self.image_size}, device={str(self.device)!r})"
        )

    # --------------------------------------------------------------- sampling
    def round_robin(self, num_tasks: int) -> list[int]:
        """Mode of each slot of the next meta-batch (does not advance)."""
        return [(self._start + i) % len(self.modes) for i in range(num_tasks)]

    def _next_start(self, num_tasks: int) -> int:
        """Continue the round-robin after the last slot; move by one if that would repeat the start."""
        count = len(self.modes)
        start = (self._start + num_tasks) % count
        return (start + 1) % count if start == self._start else start

    def sample(self, num_tasks: int) -> EpisodeBatch:
        """A meta-batch of ``num_tasks`` tasks, modes assigned round-robin."""
        num_tasks = _positive_int(num_tasks, "num_tasks")
        assignment = self.round_robin(num_tasks)
        self._start = self._next_start(num_tasks)
        groups = []
        for index in range(len(self.modes)):
            slots = [slot for slot, mode in enumerate(assignment) if mode == index]
            if slots:
                draw = self._draw(index, len(slots), self.generator)
                groups.append((index, slots, draw))
        return self._assemble(num_tasks, groups)

    def sample_mode(self, mode: int | str, num_tasks: int) -> EpisodeBatch:
        """A meta-batch of ``num_tasks`` tasks all from one mode."""
        index = self.mode_index(mode)
        num_tasks = _positive_int(num_tasks, "num_tasks")
        draw = self._draw(index, num_tasks, self.generator)
        return self._assemble(num_tasks, [(index, list(range(num_tasks)), draw)])

    def _draw(self, index: int, num_tasks: int, generator: torch.Generator) -> TaskDraw:
        counts = self.modes[index].counts if generator.device == self.device else self._counts_cpu[index]
        draw = draw_tasks(
            counts,
            num_tasks,
            self.ways,
            self.shots + self.queries,
            generator,
            replacement=self.replacement,
            rotations=self.rotations[index],
            count_range=self._count_ranges[index],
        )
        return draw.to(self.device)

    def _assemble(self, num_tasks: int, groups: list[tuple[int, list[int], TaskDraw]]) -> EpisodeBatch:
        device = self.device
        modes = torch.empty(num_tasks, dtype=torch.long)
        for index, slots, _ in groups:
            modes[slots] = index
        size = self.image_size
        support = torch.empty(
            (num_tasks, self.ways * self.shots, OUTPUT_CHANNELS, size, size), dtype=torch.float32, device=device
        )
        query = torch.empty(
            (num_tasks, self.ways * self.queries, OUTPUT_CHANNELS, size, size), dtype=torch.float32, device=device
        )
        pixel_slots, all_pixels = [], True  # slots holding uint8 pixels, to scale to [0, 1]
        for index, slots, draw in groups:
            support_part, query_part = self.modes[index].gather(draw, self.shots)
            if support_part.dtype == torch.uint8:
                pixel_slots += slots
            else:
                all_pixels = False
            for out, images in ((support, support_part), (query, query_part)):
                images = images.expand(-1, -1, OUTPUT_CHANNELS, -1, -1)
                if slots == list(range(num_tasks)):
                    out.copy_(images)
                else:  # round-robin slots: copy task by task into the output (no extra pass)
                    for row, slot in enumerate(slots):
                        out[slot].copy_(images[row])
        if all_pixels:
            support.mul_(PIXEL_SCALE)
            query.mul_(PIXEL_SCALE)
        else:
            for slot in pixel_slots:
                support[slot].mul_(PIXEL_SCALE)
                query[slot].mul_(PIXEL_SCALE)
        return EpisodeBatch(
            support=support,
            support_labels=episode_labels(num_tasks, self.ways, self.shots, device),
            query=query,
            query_labels=episode_labels(num_tasks, self.ways, self.queries, device),
            modes=modes.to(device),
            ways=self.ways,
            shots=self.shots,
            queries=self.queries,
            mode_names=tuple(self.mode_names),
        )

    # ------------------------------------------------------------ evaluation
    def eval_tasks(self, mode: int | str, num_tasks: int, batch_size: int, seed: int = 0) -> Iterator[EpisodeBatch]:
        """The fixed evaluation tasks of one mode, in chunks of ``batch_size``.

        Task ``i`` depends only on ``(seed, mode name, split, i)`` and the
        sampler's ways/shots/queries/replacement, never on the sampler's state
        or device; the first ``n`` tasks are the same for any ``num_tasks >= n``.
        """
        index = self.mode_index(mode)
        num_tasks = _positive_int(num_tasks, "num_tasks")
        batch_size = _positive_int(batch_size, "batch_size")
        name, split = self.modes[index].name, self.modes[index].split
        for start in range(0, num_tasks, batch_size):
            draws = []
            for task in range(start, min(start + batch_size, num_tasks)):
                generator = torch.Generator()
                generator.manual_seed(derive_seed("kml-eval", seed, name, split, task))
                draws.append(self._draw(index, 1, generator))
            draw = TaskDraw.cat(draws)
            yield self._assemble(len(draws), [(index, list(range(len(draws))), draw)])

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """Generator state and round-robin position (``torch.load(weights_only=True)``-safe)."""
        return {
            "generator": self.generator.get_state(),
            "start": self._start,
            "seed": self.seed,
            "mode_names": self.mode_names,
            "ways": self.ways,
            "shots": self.shots,
            "queries": self.queries,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; the next batches continue the saved run."""
        if list(state.get("mode_names", [])) != self.mode_names:
            raise DataError(
                f"sampler state is for modes {state.get('mode_names')}, not {self.mode_names}; "
                "resume with the same datasets"
            )
        for key in ("ways", "shots", "queries"):
            if key in state and int(state[key]) != getattr(self, key):
                raise DataError(
                    f"sampler state has {key}={state[key]}, this sampler {getattr(self, key)}; resume with the same "
                    f"{key}"
                )
        self.generator.set_state(state["generator"].cpu() if hasattr(state["generator"], "cpu") else state["generator"])
        self._start = int(state["start"]) % len(self.modes)


def fixed_eval_tasks(
    sampler: MixtureSampler,
    num_tasks: int,
    batch_size: int,
    seed: int = 0,
    modes: Sequence[int | str] | None = None,
) -> Iterator[tuple[str, EpisodeBatch]]:
    """``(mode_name, batch)`` for ``num_tasks`` fixed tasks of each mode, in chunks.

    Modes come in the sampler's order (or the order of ``modes``). See
    :meth:`MixtureSampler.eval_tasks` for what makes the tasks fixed.
    """
    chosen = [sampler.mode_index(m) for m in modes] if modes is not None else range(len(sampler.modes))
    for index in chosen:
        name = sampler.mode_names[index]
        for batch in sampler.eval_tasks(index, num_tasks, batch_size, seed):
            yield name, batch
