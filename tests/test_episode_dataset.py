"""``kml.data.EpisodeDataset``: a sampler's meta-batches through ``torch.utils.data``, and
the plain-PyTorch training loop of docs/data.md."""

from __future__ import annotations

import pytest
import torch
from fixtures_engine import TINY_MODEL
from helpers import build
from torch.utils.data import DataLoader

from kml.data import DataError, EpisodeBatch, EpisodeDataset, get_tasksets


def _train(root, seed=0):
    return get_tasksets("synthetic", 3, 1, 2, root=root, image_size=16, seed=seed).train


def _same(a: EpisodeBatch, b: EpisodeBatch) -> bool:
    return all(torch.equal(x, y) for x, y in zip((*a.tensors, a.modes), (*b.tensors, b.modes)))


def test_a_dataloader_yields_the_samplers_own_tasks(synthetic_root):
    sampler, reference = _train(synthetic_root), _train(synthetic_root)
    dataset = EpisodeDataset(sampler, meta_batch_size=4, num_batches=3)
    batches = list(DataLoader(dataset, batch_size=None))
    assert len(batches) == len(dataset) == 3
    for batch in batches:
        assert isinstance(batch, EpisodeBatch) and batch.support.shape == (4, 3, 3, 16, 16)
        assert _same(batch, reference.sample(4))
    # the dataset advanced the sampler itself: its state resumes the stream
    assert torch.equal(sampler.state_dict()["generator"], reference.state_dict()["generator"])
    # one mode, as a Multi-* specialist trains
    one_mode = next(iter(DataLoader(EpisodeDataset(sampler, 2, num_batches=1, mode="synthetic_shapes"),
                                    batch_size=None)))
    assert _same(one_mode, reference.sample_mode("synthetic_shapes", 2))
    assert one_mode.task_modes == ["synthetic_shapes"] * 2


def test_workers_draw_distinct_reproducible_streams(synthetic_root):
    dataset = EpisodeDataset(_train(synthetic_root), meta_batch_size=2, num_batches=4)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, generator=torch.Generator().manual_seed(0))
    first = list(loader)
    again = list(DataLoader(dataset, batch_size=None, num_workers=2, generator=torch.Generator().manual_seed(0)))
    assert len(first) == 4 and all(_same(a, b) for a, b in zip(first, again))  # same loader seed, same stream
    assert not _same(first[0], first[1])  # the two workers do not repeat each other
    assert not _same(first[0], list(loader)[0])  # the next pass draws new tasks
    one = DataLoader(EpisodeDataset(_train(synthetic_root), meta_batch_size=2, num_batches=1), batch_size=None,
                     num_workers=1)
    assert not _same(list(one)[0], list(one)[0])  # one worker too: each pass draws new tasks
    kept = DataLoader(EpisodeDataset(_train(synthetic_root), meta_batch_size=2, num_batches=1), batch_size=None,
                      num_workers=1, persistent_workers=True)
    assert not _same(list(kept)[0], list(kept)[0])  # a persistent worker keeps its seed, yet draws anew


def test_bad_arguments_are_refused(synthetic_root):
    sampler = _train(synthetic_root)
    with pytest.raises(DataError, match="meta_batch_size must be a positive integer"):
        EpisodeDataset(sampler, 0)
    with pytest.raises(DataError, match="mode 'nope' is not in this sampler"):
        EpisodeDataset(sampler, 2, mode="nope")
    with pytest.raises(TypeError, match="endless"):
        len(EpisodeDataset(sampler, 2))


def test_the_documented_plain_pytorch_loop_trains(synthetic_root):
    """docs/data.md's loop, at the tests' tiny size: EpisodeDataset + build_learner + Adam."""

    torch.manual_seed(0)
    train, _, test = get_tasksets("synthetic", ways=3, shots=1, queries=2, root=synthetic_root, image_size=16, seed=0)
    episodes = DataLoader(EpisodeDataset(train, meta_batch_size=3, num_batches=3), batch_size=None)
    learner = build("protonet", "kml", **TINY_MODEL)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in learner.parameters()]
    learner.train()
    for batch in episodes:
        out = learner(*batch.tensors)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        assert torch.isfinite(out.loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.parameters()))
    learner.eval()
    with torch.no_grad():
        accuracy = torch.cat([learner(*b.tensors).accuracy for b in test.eval_tasks("synthetic_glyphs", 4, 2)])
    assert accuracy.shape == (4,) and bool(((accuracy >= 0) & (accuracy <= 1)).all())
