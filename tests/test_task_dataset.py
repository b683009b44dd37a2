"""``kml.data.TaskDataset``: episodes from a map-style torch ``Dataset`` of ``(image, label)``
(here ``torchvision.datasets.FakeData`` with its transforms): the learners' episode tensors,
labels up front reading no item, seeded and resumable sampling, ``EpisodeDataset`` /
``DataLoader``, class splits, and a mode of a ``MixtureSampler`` in Python training."""

from __future__ import annotations

import pytest
import torch
from fixtures_engine import TINY, TINY_MODEL, compose_config
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from kml.data import ClassSplit, DataError, DatasetMode, EpisodeDataset, MixtureSampler, TaskDataset, load_modes
from kml.data.imaging import PIXEL_SCALE
from kml.data.splits import seeded_class_split
from kml.data.task_dataset import read_labels

SIZE = TINY_MODEL["image_size"]


def fake_data(size: int = 60, classes: int = 5, transform=None) -> datasets.FakeData:
    """Random 16x16 RGB images (PIL) with random labels, as tensors in [0, 1] by default."""
    return datasets.FakeData(size=size, image_size=(3, SIZE, SIZE), num_classes=classes,
                             transform=transform or transforms.ToTensor())


class Counting(Dataset):
    """A dataset that counts the items read from it."""

    def __init__(self, inner):
        self.inner, self.reads = inner, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        self.reads += 1
        return self.inner[index]


def lookup(dataset) -> dict[bytes, tuple[int, int]]:
    """``image bytes -> (index, label)`` of every item (FakeData's images are all distinct)."""
    return {image.numpy().tobytes(): (i, label) for i, (image, label) in enumerate(dataset)}


def test_episodes_are_the_learners_tensors_drawn_from_the_datasets_classes():
    fake = fake_data()
    tasks = TaskDataset(fake, ways=3, shots=2, queries=3, labels=read_labels(fake, verbose=False), name="fake")
    batch = tasks.sample(4)
    assert batch.support.shape == (4, 6, 3, SIZE, SIZE) and batch.query.shape == (4, 9, 3, SIZE, SIZE)
    assert batch.support.dtype == torch.float32 and batch.mode_names == ("fake",) and batch.modes.tolist() == [0] * 4
    assert batch.support_labels.tolist() == [[0, 0, 1, 1, 2, 2]] * 4
    assert batch.query_labels.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2]] * 4
    items = lookup(fake)
    for t in range(4):
        support = [items[image.numpy().tobytes()] for image in batch.support[t]]  # the items, transforms applied
        query = [items[image.numpy().tobytes()] for image in batch.query[t]]
        classes = [{label for (_, label), y in zip(support + query, [*batch.support_labels[t], *batch.query_labels[t]])
                    if y == j} for j in range(3)]
        assert all(len(c) == 1 for c in classes) and len(set.union(*classes)) == 3  # slot j = one class, 3 classes
        indices = [i for i, _ in support + query]
        assert len(set(indices)) == len(indices)  # K + Q distinct items per class
    # grayscale items are served as 3 equal channels, as the prepared grayscale datasets
    gray = datasets.FakeData(size=30, image_size=(1, SIZE, SIZE), num_classes=3, transform=transforms.ToTensor())
    support = TaskDataset(DatasetMode(gray, verbose=False), 3, 1, 1).sample(2).support
    assert support.shape == (2, 3, 3, SIZE, SIZE) and torch.equal(support[:, :, 0], support[:, :, 2])


def test_labels_given_up_front_read_no_item_to_index_the_classes():
    fake = fake_data()
    labels = read_labels(fake, verbose=False)
    counted = Counting(fake)
    tasks = TaskDataset(counted, ways=3, shots=1, queries=2, labels=labels)
    assert counted.reads == 1  # only the first item, for the image shape
    tasks.sample(2)
    assert counted.reads == 1 + 2 * 3 * (1 + 2)  # then exactly the items of the episodes
    without = Counting(fake)
    TaskDataset(DatasetMode(without, verbose=False), ways=3, shots=1, queries=2)
    assert without.reads == len(fake) + 1  # every item once for its label
    with pytest.raises(DataError, match=r"labels has 3 entries but the dataset 60 items; pass one label per item"):
        TaskDataset(fake, 3, 1, 2, labels=[0, 1, 2])


def test_sampling_is_seeded_and_resumes_from_the_state_dict(tmp_path):
    fake = fake_data()
    labels = read_labels(fake, verbose=False)

    def make(seed=0):
        return TaskDataset(fake, ways=3, shots=1, queries=2, labels=labels, seed=seed)

    a, b = make(), make()
    first = a.sample(3)
    second = b.sample(3)
    assert torch.equal(first.support, second.support) and torch.equal(first.query, second.query)
    assert not torch.equal(first.support, make(seed=1).sample(3).support)
    # a saved state (weights_only-safe) continues the same stream in a new TaskDataset
    torch.save(a.state_dict(), tmp_path / "state.pt")
    expected = [a.sample(3) for _ in range(2)]
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for batch in expected:
        again = resumed.sample(3)
        assert torch.equal(again.support, batch.support) and torch.equal(again.query, batch.query)
    # fixed evaluation tasks, whatever the sampler's state
    assert torch.equal(next(a.eval_tasks("dataset", 2, 2)).query, next(make().eval_tasks("dataset", 2, 2)).query)


def test_a_task_dataset_feeds_episode_dataset_and_a_data_loader():
    fake = fake_data()
    labels = read_labels(fake, verbose=False)
    loader = DataLoader(EpisodeDataset(TaskDataset(fake, 3, 1, 2, labels=labels, seed=5), meta_batch_size=2,
                                       num_batches=3), batch_size=None)
    reference = TaskDataset(fake, 3, 1, 2, labels=labels, seed=5)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert batch.support.shape == (2, 3, 3, SIZE, SIZE)
        assert torch.equal(batch.support, reference.sample(2).support)


def test_classes_split_by_a_seed_or_by_given_lists():
    fake = fake_data(size=200, classes=10)
    labels = read_labels(fake, verbose=False)
    train, val, test = TaskDataset.splits(fake, ways=1, shots=1, queries=1, labels=labels, classes=ClassSplit(seed=3))
    expected = seeded_class_split(list(range(10)), 3)
    assert [s.mode.class_labels for s in (train, val, test)] == [expected[k] for k in ("train", "val", "test")]
    assert [s.split for s in (train, val, test)] == ["train", "val", "test"]
    items = lookup(fake)
    drawn = {items[image.numpy().tobytes()][1] for image in val.sample(10).support.flatten(0, 1)}
    assert drawn <= set(expected["val"])  # a split draws only its own classes
    given = TaskDataset.splits(fake, ways=2, shots=1, queries=1, labels=labels,
                               classes={"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]})
    assert [s.mode.class_labels for s in given] == [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]]
    with pytest.raises(DataError, match=r"class 6 is in both the val and the test split"):
        TaskDataset.splits(fake, 2, 1, 1, labels=labels, classes={"train": [0, 1], "val": [6, 7], "test": [6, 9]})
    with pytest.raises(DataError, match=r"item [345] of the dataset has shape \(3, 12, 12\), the first one"):
        mixed = [(torch.zeros(3, 16, 16), 0)] * 3 + [(torch.zeros(3, 12, 12), 1)] * 3
        TaskDataset(mixed, 2, 1, 1, labels=[0, 0, 0, 1, 1, 1]).sample(5)


def test_a_mode_of_a_mixture_trains_and_resumes_exactly_in_python(data_synthetic_root, tmp_path):
    """A TaskDataset as the second mode of a MixtureSampler next to a prepared dataset: one
    learner step changes the model, and the Trainer's checkpoint resumes the run exactly,
    random transforms included (they draw from the global generator the Trainer saves)."""
    from kml.engine.checkpoints import load_checkpoint
    from kml.engine.from_config import build_learner_from_config
    from kml.engine.trainer import Trainer

    flipped = fake_data(transform=transforms.Compose([transforms.ToTensor(), transforms.RandomHorizontalFlip()]))
    labels = read_labels(fake_data(), verbose=False)

    def mixture(seed=0):
        glyphs = load_modes("synthetic_glyphs", "train", data_synthetic_root, SIZE, verbose=False)
        fake = TaskDataset(flipped, 3, 1, 2, labels=labels, name="fake")
        return MixtureSampler([*glyphs, fake], ways=3, shots=1, queries=2, seed=seed)

    sampler = mixture()
    batch = sampler.sample(4)
    assert batch.task_modes == ["synthetic_glyphs", "fake", "synthetic_glyphs", "fake"]
    prepared = sampler.modes[0].images.float().mul(PIXEL_SCALE)  # (N, 1, H, W): the glyphs' arrays, scaled
    assert all(any(torch.equal(image[:1], row) for row in prepared) for image in batch.support[0])
    items = lookup(fake_data())  # the fake slots hold FakeData's images, flipped or not
    assert all(image.numpy().tobytes() in items or image.flip(-1).numpy().tobytes() in items
               for image in batch.support[1])

    cfg = compose_config([*TINY, "learner=protonet", "modulation=kml", "train.iterations=4", "train.checkpoint_every=2",
                          "eval.val_every=0"])
    torch.manual_seed(0)
    learner = build_learner_from_config(cfg)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    out = learner(*batch.tensors)
    out.loss.backward()
    torch.optim.SGD(learner.parameters(), lr=0.1).step()
    assert torch.isfinite(out.loss) and any(not torch.equal(before[k], v) for k, v in learner.state_dict().items())

    def trainer(run_dir, seed):
        run_dir.mkdir()
        torch.manual_seed(seed)
        model = build_learner_from_config(cfg)
        data = mixture(seed)
        return Trainer(cfg, model, data, run_dir, torch.device("cpu"), vectorized=True)

    full = trainer(tmp_path / "full", seed=0)
    full.fit()
    resumed = trainer(tmp_path / "resumed", seed=1)  # other weights and episodes until the checkpoint is loaded
    state = load_checkpoint(tmp_path / "full" / "checkpoints" / "iter_00000002.pt")
    assert "generator" in state["sampler"]  # the episode generator's state is in the checkpoint
    torch.manual_seed(123)  # the global generator is restored from the checkpoint, not from here
    resumed.load_state_dict(state, "iter_00000002.pt")
    resumed.fit()
    for name, tensor in full.learner.state_dict().items():
        assert torch.equal(tensor, resumed.learner.state_dict()[name]), name
