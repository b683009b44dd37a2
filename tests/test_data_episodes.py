"""Episode sampling: label permutation, rotations, round-robin, reproducibility, resume, eval tasks, errors.

Modes are built from arrays whose every image is unique random noise, so each
sampled image can be traced back to (mode, class, image, rotation).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from kml.data import DataError, EpisodeBatch, MixtureSampler, ModeData, fixed_eval_tasks

SIZE = 8


def make_mode(name, counts, channels=3, rotations=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(sum(counts), SIZE, SIZE, channels), dtype=np.uint8)
    return ModeData.from_arrays(name, "train", images, counts, [f"{name}-c{i}" for i in range(len(counts))], rotations)


class Lookup:
    """Maps the bytes of a served image (3 channels, float) to (mode, class, index, quarter turns)."""

    def __init__(self, modes):
        self.table = {}
        for m, mode in enumerate(modes):
            offsets, counts = mode.offsets.tolist(), mode.counts.tolist()
            for c, (start, count) in enumerate(zip(offsets, counts)):
                for i in range(count):
                    stored = mode.images[start + i]
                    for k in range(4):
                        key = torch.rot90(stored, k, dims=(-2, -1)).expand(3, -1, -1).contiguous().numpy().tobytes()
                        self.table.setdefault(key, (m, c, i, k))

    def __call__(self, image):
        key = (image * 255).round().to(torch.uint8).contiguous().numpy().tobytes()
        return self.table[key]


@pytest.fixture
def modes():
    return [
        make_mode("alpha", [8] * 12, seed=1),
        make_mode("beta", [5, 9, 7, 6, 12, 8, 10], seed=2),  # variable class sizes
        make_mode("gamma", [6] * 10, channels=1, rotations=True, seed=3),  # Omniglot-like
    ]


def test_batch_shapes_dtypes_and_labels(modes):
    sampler = MixtureSampler(modes, ways=5, shots=2, queries=3, seed=0)
    batch = sampler.sample(6)
    assert isinstance(batch, EpisodeBatch) and (batch.ways, batch.shots, batch.queries) == (5, 2, 3)
    assert batch.support.shape == (6, 10, 3, SIZE, SIZE) and batch.query.shape == (6, 15, 3, SIZE, SIZE)
    assert batch.support.dtype == torch.float32 and batch.support.is_contiguous() and batch.query.is_contiguous()
    assert 0.0 <= float(batch.support.min()) and float(batch.query.max()) <= 1.0
    assert batch.support_labels.dtype == torch.int64 and batch.modes.dtype == torch.int64
    assert batch.support_labels.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]] * 6
    assert batch.query_labels.tolist() == [[j for j in range(5) for _ in range(3)]] * 6
    assert sampler.mode_names == ["alpha", "beta", "gamma"] and sampler.device == torch.device("cpu")
    moved = batch.to("cpu")
    assert torch.equal(moved.query, batch.query) and moved.ways == 5 and len(moved) == 6


def test_labels_permuted_per_task_and_images_distinct(modes):
    lookup = Lookup(modes)
    sampler = MixtureSampler(modes, ways=4, shots=2, queries=3, seed=5)
    labels_of_class = {}
    for _ in range(40):
        batch = sampler.sample(6)
        for t in range(6):
            mode = int(batch.modes[t])
            support = [lookup(x) for x in batch.support[t]]
            query = [lookup(x) for x in batch.query[t]]
            assert {m for m, *_ in support + query} == {mode}
            class_of_label = {}
            labels = batch.support_labels[t].tolist() + batch.query_labels[t].tolist()
            for (_, c, _, _), label in zip(support + query, labels):
                assert class_of_label.setdefault(label, c) == c  # one class per label, support and query alike
            assert sorted(class_of_label) == [0, 1, 2, 3] and len(set(class_of_label.values())) == 4
            picked = [(c, i) for _, c, i, _ in support + query]
            assert len(set(picked)) == len(picked)  # K + Q distinct images per class, no reuse
            for label, c in class_of_label.items():
                labels_of_class.setdefault((mode, c), set()).add(label)
                assert all(i < modes[mode].counts[c] for _, cc, i, _ in support + query if cc == c)
    # labels are permuted per task: a class shows up under several different labels
    assert np.mean([len(labels) >= 3 for labels in labels_of_class.values()]) > 0.9


def test_rotations_are_quarter_turns_of_stored_images_per_task_and_class(modes):
    lookup = Lookup(modes)
    sampler = MixtureSampler(modes, ways=3, shots=1, queries=2, seed=2)
    seen = {0: set(), 1: set(), 2: set()}
    for _ in range(30):
        batch = sampler.sample(3)
        for t in range(3):
            mode = int(batch.modes[t])
            images = torch.cat([batch.support[t], batch.query[t]])
            labels = torch.cat([batch.support_labels[t], batch.query_labels[t]]).tolist()
            turns = {}
            for image, label in zip(images, labels):
                m, c, i, k = lookup(image)
                stored = modes[m].images[modes[m].offsets[c] + i]
                expected = torch.rot90(stored, k, dims=(-2, -1)).expand(3, -1, -1)
                assert torch.equal((image * 255).round().to(torch.uint8), expected)
                assert torch.allclose(image, expected.float() / 255, atol=1e-7, rtol=0)
                assert turns.setdefault(label, k) == k  # same rotation for every image of the class in the task
                seen[mode].add(k)
    assert seen[2] == {0, 1, 2, 3}  # the rotating mode uses all four quarter turns
    assert seen[0] == {0} and seen[1] == {0}  # the others are never rotated
    plain = MixtureSampler(modes, ways=3, shots=1, queries=2, seed=2, rotations=False)
    for _ in range(10):
        batch = plain.sample_mode("gamma", 4)
        assert {lookup(x)[3] for x in batch.support.flatten(0, 1)} == {0}


def test_round_robin_with_rotating_start(modes):
    five = modes + [make_mode("delta", [6] * 6, seed=4), make_mode("eps", [6] * 6, seed=5)]
    sampler = MixtureSampler(five, ways=2, shots=1, queries=1, seed=0)
    lookup = Lookup(five)
    for call in range(3):
        batch = sampler.sample(10)
        # 5 modes x 10 tasks -> 2 each, round-robin from a start that rotates every call
        assert batch.modes.tolist() == [(call + i) % 5 for i in range(10)]
        assert torch.bincount(batch.modes).tolist() == [2, 2, 2, 2, 2]
        assert [lookup(batch.support[t, 0])[0] for t in range(10)] == batch.modes.tolist()
    sampler = MixtureSampler(five, ways=2, shots=1, queries=1, seed=0)
    starts, totals = [], torch.zeros(5, dtype=torch.long)
    for _ in range(5):
        batch = sampler.sample(3)
        starts.append(int(batch.modes[0]))
        assert batch.modes.tolist() == [(starts[-1] + i) % 5 for i in range(3)]
        totals += torch.bincount(batch.modes, minlength=5)
    assert starts == [0, 3, 1, 4, 2]  # the start advances each call
    assert totals.tolist() == [3, 3, 3, 3, 3]  # exact balance over a cycle
    single = sampler.sample_mode("delta", 4)
    assert single.modes.tolist() == [3, 3, 3, 3]
    assert {lookup(x)[0] for x in single.query.flatten(0, 1)} == {3}


def test_same_seed_same_episodes_without_global_rng(modes):
    torch.manual_seed(123)
    global_state = torch.random.get_rng_state()
    a = MixtureSampler(modes, 3, 1, 2, seed=11)
    b = MixtureSampler(modes, 3, 1, 2, seed=11)
    c = MixtureSampler(modes, 3, 1, 2, seed=12)
    for _ in range(4):
        x, y, z = a.sample(5), b.sample(5), c.sample(5)
        assert torch.equal(x.support, y.support) and torch.equal(x.query, y.query) and torch.equal(x.modes, y.modes)
        torch.rand(3)  # the global RNG does not influence the sampler ...
    assert not torch.equal(x.support, z.support)
    torch.manual_seed(123)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # ... and the sampler does not touch it
    a2 = MixtureSampler(modes, 3, 1, 2, seed=11)
    np.random.seed(0)
    first = a2.sample(5)
    a3 = MixtureSampler(modes, 3, 1, 2, seed=11)
    np.random.seed(99)
    assert torch.equal(first.support, a3.sample(5).support)


def test_state_dict_resume_is_bit_exact(modes):
    reference = MixtureSampler(modes, 3, 2, 2, seed=4)
    expected = [reference.sample(4) for _ in range(7)]

    run = MixtureSampler(modes, 3, 2, 2, seed=4)
    for _ in range(3):
        run.sample(4)
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    del run  # "killed"
    buffer.seek(0)
    resumed = MixtureSampler(modes, 3, 2, 2, seed=999)  # the seed argument is overridden by the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for want in expected[3:]:
        got = resumed.sample(4)
        assert torch.equal(got.support, want.support) and torch.equal(got.query, want.query)
        assert torch.equal(got.modes, want.modes)

    other = MixtureSampler(modes[:2], 3, 2, 2)
    with pytest.raises(DataError, match="sampler state is for modes"):
        other.load_state_dict(reference.state_dict())
    with pytest.raises(DataError, match="shots=2"):
        MixtureSampler(modes, 3, 1, 2).load_state_dict(reference.state_dict())


def test_fixed_eval_tasks_are_independent_of_state_chunking_and_mixture(modes):
    a = MixtureSampler(modes, 3, 1, 2, seed=0)
    b = MixtureSampler(modes, 3, 1, 2, seed=77)
    for _ in range(5):
        b.sample(4)  # a different training history
    specialist = MixtureSampler([modes[1]], 3, 1, 2, seed=3)

    def tasks(sampler, mode, n, chunk, seed=0):
        batches = list(sampler.eval_tasks(mode, n, chunk, seed=seed))
        assert [len(x) for x in batches] == [min(chunk, n - i) for i in range(0, n, chunk)]
        return torch.cat([x.support for x in batches]), torch.cat([x.query for x in batches])

    ref = tasks(a, "beta", 7, 7)
    for other in (tasks(b, "beta", 7, 3), tasks(a, 1, 7, 2), tasks(specialist, "beta", 7, 4)):
        assert torch.equal(ref[0], other[0]) and torch.equal(ref[1], other[1])
    assert torch.equal(tasks(a, "beta", 3, 3)[0], ref[0][:3])  # a prefix of a longer run
    assert not torch.equal(tasks(a, "beta", 7, 7, seed=1)[0], ref[0])  # the seed matters
    # evaluation does not advance the training stream
    fresh, used = MixtureSampler(modes, 3, 1, 2, seed=0), MixtureSampler(modes, 3, 1, 2, seed=0)
    list(used.eval_tasks("alpha", 5, 2))
    assert torch.equal(fresh.sample(3).support, used.sample(3).support)
    # fixed_eval_tasks walks the modes in order
    seen = [(name, len(batch), batch.modes.tolist()) for name, batch in fixed_eval_tasks(a, 3, 2, seed=0)]
    assert seen == [("alpha", 2, [0, 0]), ("alpha", 1, [0]), ("beta", 2, [1, 1]), ("beta", 1, [1]),
                    ("gamma", 2, [2, 2]), ("gamma", 1, [2])]
    assert [name for name, _ in fixed_eval_tasks(a, 1, 1, modes=["gamma"])] == ["gamma"]


def test_bad_episode_settings(modes):
    with pytest.raises(DataError,
                       match=r"13-way tasks need 13 classes but split 'train' of alpha has 12; lower episode.ways"):
        MixtureSampler(modes, ways=13, shots=1, queries=1)
    with pytest.raises(DataError) as info:
        MixtureSampler(modes, ways=2, shots=2, queries=4)
    message = str(info.value)
    assert "shots + queries = 6 but class 'beta-c0' of split 'train' of beta has only 5 images" in message
    assert "data.replacement=true" in message
    with_replacement = MixtureSampler(modes, ways=2, shots=2, queries=10, replacement=True, seed=1)
    lookup = Lookup(modes)
    batch = with_replacement.sample_mode("beta", 5)
    for t in range(5):
        for image in torch.cat([batch.support[t], batch.query[t]]):
            _, c, i, _ = lookup(image)
            assert i < modes[1].counts[c]
    for bad in (0, -1, 2.5, True, "5"):
        with pytest.raises(DataError, match="ways must be a positive integer"):
            MixtureSampler(modes, ways=bad, shots=1, queries=1)
    sampler = MixtureSampler(modes, 2, 1, 1)
    with pytest.raises(DataError, match=r"mode 'zeta' is not in this sampler; its modes are alpha, beta, gamma"):
        sampler.sample_mode("zeta", 2)
    with pytest.raises(DataError, match="num_tasks must be a positive integer"):
        sampler.sample(0)
    with pytest.raises(DataError, match="different image sizes"):
        other = ModeData.from_arrays("big", "train", np.zeros((4, 4, 4, 3), np.uint8), [2, 2])
        MixtureSampler([modes[0], other], 2, 1, 1)


def test_without_classes_repacks(modes):
    mode = modes[1]
    kept = mode.without_classes(["beta-c1", "beta-c4", "not-there"])
    assert kept.class_names == ["beta-c0", "beta-c2", "beta-c3", "beta-c5", "beta-c6"]
    assert kept.counts.tolist() == [5, 7, 6, 8, 10] and kept.offsets.tolist() == [0, 5, 12, 18, 26]
    assert kept.excluded_classes == ["beta-c1", "beta-c4"]
    assert torch.equal(kept.images[5:12], mode.images[14:21])  # class 2 moved next to class 0
