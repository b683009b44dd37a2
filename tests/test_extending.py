"""Open for extension: registered modulations, learners and backbones are selectable
everywhere (command line, build_learner, method names, the campaign planner, the
benchmark); unknown names fail with the list; generators are found by type; and the
worked example of docs/extending.md runs as written from a folder of its own."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from fixtures_engine import TINY, TINY_MODEL, run_script
from helpers import build, perturb, tiny_episode
from omegaconf import OmegaConf

from kml.config import ConfigError, validate
from kml.learners import MAML, ProtoNet, build_learner, method_name, register_learner
from kml.modulation import Generator, ModulatedConv2d, ModulatedFeatures, register_modulation
from kml.registry import UnknownNameError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture
def registries():
    """Registrations made by a test are removed after it (the registries are per process)."""
    import sys

    import kml.catalogue  # noqa: F401  (the built-ins are registered before the snapshot is taken)
    from kml.registry import BACKBONES, LEARNERS, MODULATIONS

    kept = [(r, dict(r._entries)) for r in (MODULATIONS, LEARNERS, BACKBONES)]
    modules = set(sys.modules)
    yield
    for registry, entries in kept:
        registry._entries.clear()
        registry._entries.update(entries)
    for name in set(sys.modules) - modules:  # a user module imported by the test registers again next time
        if name in ("channel_scale", "cosine_protonet", "channel_gate"):
            del sys.modules[name]


class _ShiftGenerator(Generator):
    """(T, task_dim) -> per-channel shift (T, C), 0 at initialisation."""

    def __init__(self, task_dim: int, channels: int) -> None:
        super().__init__()
        self.head = nn.Linear(task_dim, channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, v):
        return self.head(v)


def _register_shift_modulation(name="shift"):
    """A feature modulation whose generator lives under the attribute ``hyper``."""

    @register_modulation(name)
    class ShiftFeatures(ModulatedFeatures):
        def __init__(self, channels, task_dim, bound):
            super().__init__()
            self.bound = bound
            self.hyper = _ShiftGenerator(task_dim, channels)

        @classmethod
        def from_spec(cls, site, spec):
            return cls(site.out_channels, spec.task_dim, spec.options.get("bound", 1.0))

        @classmethod
        def check_spec(cls, spec):
            if set(spec.options) - {"bound"}:
                raise ValueError(f"options: shift has one setting, bound; got {sorted(spec.options)}")

        def modulation(self, v):
            return self.bound * torch.tanh(self.hyper(v))

        def forward_grouped(self, x, modulation):
            return x if modulation is None else x + modulation.reshape(1, -1, 1, 1)

    return ShiftFeatures


# ------------------------------------------------------------------ generators by type
def test_a_generator_under_another_attribute_name_is_a_generator(registries, compose):
    """Not adapted in MAML's inner loop, trained by the modulation optimiser, learning from
    the outer loss; and a modulated layer without a Generator is refused."""
    from kml.engine.optim import build_optimizers

    _register_shift_modulation()
    torch.manual_seed(0)
    net = build("maml", "shift", inner_steps=2, inner_lr=0.3, modulation_options={"bound": 2.0},
                        **TINY_MODEL).double()
    hyper = [p for n, p in net.backbone.named_parameters() if ".features.hyper." in n]
    assert len(hyper) == 8  # 4 blocks x (weight, bias)
    generator_ids = {id(p) for p in net.backbone.generator_parameters()}
    assert generator_ids == {id(p) for p in hyper}
    assert not any(".hyper." in n for n, _ in net.backbone.named_adaptable_parameters())
    perturb(hyper, 0.5)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=3, size=16, seed=1, dtype=torch.float64)
    _, modulation = net.modulate(support)
    fast = net.adapt(support, s_labels, modulation)
    assert set(fast) == {n for n, _ in net.backbone.named_adaptable_parameters()}
    out = net(support, s_labels, query, q_labels)
    grads = torch.autograd.grad(out.loss, hyper)
    assert all(g.abs().sum() > 0 for g in grads)
    cfg = compose(["learner=maml", "train.lr=0.002", "train.lr_modulation=0.0003"])
    backbone_opt, modulation_opt = build_optimizers(net, cfg)
    assert {id(p) for p in hyper} <= {id(p) for p in modulation_opt.param_groups[0]["params"]}
    assert not {id(p) for p in hyper} & {id(p) for p in backbone_opt.param_groups[0]["params"]}

    @register_modulation("unmarked")
    class Unmarked(ModulatedConv2d):
        def __init__(self, site, task_dim):
            super().__init__(site.in_channels, site.out_channels, site.kernel_size, site.stride, site.padding,
                             site.bias)
            self.hyper = nn.Linear(task_dim, site.out_channels)  # not a Generator
            self.reset_parameters()

        @classmethod
        def from_spec(cls, site, spec):
            return cls(site, spec.task_dim)

    with pytest.raises(TypeError, match="holds no kml.modulation.Generator"):
        build("maml", "unmarked", **TINY_MODEL)


def test_feature_modulation_keys_do_not_depend_on_its_name_and_old_checkpoints_load(registries):
    """A user feature modulation's layer is the block's ``features`` whatever it is registered
    as; a checkpoint that stored it under its name (``blocks.N.<name>.``) still loads; FiLM
    keeps ``film``."""
    _register_shift_modulation("my_shift")
    torch.manual_seed(0)
    net = build("protonet", "my_shift", modulation_options={"bound": 2.0}, **TINY_MODEL)
    keys = list(net.state_dict())
    assert any(".features.hyper." in k for k in keys) and not any("my_shift" in k for k in keys)
    perturb([p for n, p in net.named_parameters() if ".hyper." in n], 0.5)
    old = {k.replace(".features.", ".my_shift."): v.clone() for k, v in net.state_dict().items()}
    assert any(".my_shift.hyper." in k for k in old)
    torch.manual_seed(1)
    fresh = build("protonet", "my_shift", modulation_options={"bound": 2.0}, **TINY_MODEL)
    fresh.load_state_dict(old)
    for (name, expected), got in zip(net.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(expected, got), name
    # load_run, kml-eval and resume check a checkpoint's keys before loading it: upgraded first
    from kml.engine.checkpoints import check_state_dict
    from kml.learners import upgrade_state_dict

    upgraded = upgrade_state_dict(old, fresh)
    check_state_dict(fresh, upgraded, "checkpoint old.pt", methods=("MProtoNet+my_shift",) * 2)
    assert upgraded.keys() == net.state_dict().keys() and upgrade_state_dict(upgraded, fresh) is upgraded
    film = build("protonet", "film", **TINY_MODEL)
    assert any(".film." in k for k in film.state_dict())


# ------------------------------------------------------------------ selectable everywhere
def test_registered_modulation_and_learner_are_selectable_everywhere(registries, compose, tmp_path):
    from kml.bench import methods
    from kml.campaign.plan import plan_campaign
    from kml.config import CampaignConfig
    from kml.engine.from_config import build_learner_from_config

    _register_shift_modulation()

    @register_learner("cosine", display_name="CosineProtoNet")
    class Cosine(ProtoNet):
        def class_logits(self, query_features, protos):
            return 10 * nn.functional.normalize(query_features, dim=-1) @ nn.functional.normalize(protos, dim=-1).mT

    # build_learner and method names
    net = build("cosine", "shift", **TINY_MODEL)
    assert type(net) is Cosine and net.backbone.pool == "flatten"  # ProtoNet's recipe, not a silent ProtoNet
    assert (method_name("cosine", "shift") == "MCosineProtoNet+shift"
            and method_name("cosine", "kml") == "MCosineProtoNet+KML")
    assert (method_name("maml", "shift") == "MMAML+shift"
            and method_name("cosine", "none", multi=True) == "Multi-CosineProtoNet")
    # the run config (as the command line composes it)
    cfg = compose(["learner.name=cosine", "modulation.name=shift", "+modulation.options.bound=0.5", *TINY])
    validate(cfg)
    built = build_learner_from_config(cfg)
    assert type(built) is Cosine and built.backbone.modulated_layers()[0].bound == 0.5
    with pytest.raises(ConfigError, match=r"^modulation.options: shift has one setting, bound; got \['scale'\]$"):
        validate(compose(["modulation.name=shift", "+modulation.options.scale=1"]))
    with pytest.raises(ConfigError,
                       match=r"modulation.options=\{'rank': 2\} is not valid: modulation kml takes no options"):
        validate(compose(["modulation=kml", "+modulation.options.rank=2"]))
    # the campaign planner and the benchmark
    campaign = OmegaConf.merge(OmegaConf.structured(CampaignConfig), {
        "name": "mine", "modes": ["synthetic"], "baseline": "ProtoNet",
        "methods": [{"name": "ProtoNet", "learner": "protonet"},
                    {"name": "MCosineProtoNet+shift", "learner": "cosine", "modulation": "shift"}]})
    runs = plan_campaign(campaign, tmp_path / "work", tmp_path / "results")
    assert [r.method for r in runs] == ["ProtoNet", "MCosineProtoNet+shift"]
    assert {"learner=cosine", "modulation=shift"} <= set(runs[1].overrides)
    assert ("cosine", "shift") in methods() and ("maml", "shift") in methods()


def test_unknown_names_fail_with_the_registered_names(compose, tmp_path):
    from kml.campaign.plan import plan_campaign
    from kml.config import CampaignConfig

    imports = "; a {} of your own is registered when its module is imported: list it in imports=[...]"
    with pytest.raises(UnknownNameError, match=r"^learner must be one of \('maml', 'protonet'\), got 'reptile'"
                                               + re.escape(imports.format("learner")) + "$"):
        build_learner("reptile")
    with pytest.raises(ValueError, match=r"^modulation must be one of \('none', 'film', 'kml'\), got 'attention'"
                                         + re.escape(imports.format("modulation")) + "$"):
        build_learner("maml", "attention")
    with pytest.raises(ValueError, match=r"^backbone must be one of \('conv4', 'resnet12'\), got 'vit'"
                                         + re.escape(imports.format("backbone")) + "$"):
        build_learner("maml", backbone="vit")
    with pytest.raises(UnknownNameError, match="learner must be one of"):
        method_name("reptile", "none")
    for override, message in (("learner.name=reptile",
                               "learner.name='reptile' is not valid; use one of: maml, protonet"),
                              ("modulation.name=foo",
                               "modulation.name='foo' is not valid; use one of: none, film, kml"),
                              ("learner.backbone.name=vit", "learner.backbone.name='vit' is not valid; use one of: "
                                                            "conv4, resnet12")):
        hint = "; a name of your own is registered when its module is imported: list it in imports=[...]"
        with pytest.raises(ConfigError, match=f"^{re.escape(message + hint)}$"):
            validate(compose([override]))
    with pytest.raises(ConfigError, match=r"imports: no module named 'no_such_module_of_mine'"):
        validate(compose(["imports=[no_such_module_of_mine]"]))
    campaign = OmegaConf.merge(OmegaConf.structured(CampaignConfig), {
        "name": "mine", "modes": ["synthetic"], "baseline": "A",
        "methods": [{"name": "A", "learner": "reptile"}]})
    with pytest.raises(ConfigError, match="learner=reptile modulation=none is not a method; use learner "
                                          "maml|protonet and modulation none|film|kml"):
        plan_campaign(campaign, tmp_path, tmp_path)


# ------------------------------------------------------------------ the worked example of docs/extending.md
def _documented_files() -> dict[str, str]:
    """``{path: text}`` of every code block of docs/extending.md introduced by ``File `<path>`:``."""
    text = DOCS.read_text()
    blocks = re.findall(r"^File `([^`]+)`[^\n]*:\n\n```[a-z]*\n(.*?)```", text, flags=re.S | re.M)
    return dict(blocks)


def _documented_command(program: str, containing: str) -> list[str]:
    for line in re.findall(r"```bash\n(.*?)```", DOCS.read_text(), flags=re.S):
        for command in line.splitlines():
            if command.startswith(program + " ") and containing in command:
                return shlex.split(command)[1:]
    raise AssertionError(f"docs/extending.md shows no {program} command with {containing}")


def test_the_documented_feature_modulation_gates_channels_per_task_in_the_grouped_layout(registries, tmp_path,
                                                                                          monkeypatch):
    """docs/extending.md's ChannelGate as written: the identity at initialisation, each task's
    gate on its own channels (direct call against the grouped path), under ``features`` in a
    learner whose batched and per-task paths agree."""
    import importlib

    (tmp_path / "channel_gate.py").write_text(_documented_files()["channel_gate.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    gate_module = importlib.import_module("channel_gate")
    torch.manual_seed(0)
    layer = gate_module.ChannelGate(channels=4, task_dim=5).double()
    x = torch.randn(3, 2, 4, 6, 6, dtype=torch.float64)  # (T, B, C, H, W)
    v = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x, v), x)  # 2 * sigmoid(0) = 1
    perturb(layer, 0.5)
    gates = layer.modulation(v)  # (T, C)
    torch.testing.assert_close(layer(x, v), x * gates[:, None, :, None, None])
    torch.testing.assert_close(layer(x[1], v[1]), x[1] * gates[1][None, :, None, None])
    net = build("protonet", "channel_gate", **TINY_MODEL).double()
    assert method_name("protonet", "channel_gate") == "MProtoNet+channel_gate"
    assert all(type(block.features) is gate_module.ChannelGate for block in net.backbone.blocks)
    import pickle

    pickle.loads(pickle.dumps(net))  # a learner with a feature modulation of one's own pickles (torch.save(net))
    perturb(net.backbone.generator_parameters(), 0.5)
    from helpers import assert_batched_equals_loop

    episode = tiny_episode(tasks=2, ways=3, size=16, seed=2, dtype=torch.float64)
    assert_batched_equals_loop(net, episode)


@pytest.mark.slow
def test_the_documented_modulation_trains_evaluates_and_is_not_adapted_in_the_inner_loop(registries, synthetic_root,
                                                                                           tmp_path):
    files = _documented_files()
    assert {"channel_scale.py", "configs/modulation/channel_scale.yaml", "cosine_protonet.py"} <= set(files)
    project = tmp_path / "my_project"
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    train = _documented_command("kml-train", "modulation=channel_scale")
    run_dir = project / "runs" / "channel_scale"
    run_script("train.py", *train, f"data.root={synthetic_root}", *TINY, "train.iterations=3",
               "train.checkpoint_every=1", cwd=project)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "MMAML+channel_scale" and results["iterations"] == {"all": 3}
    assert results["config"]["modulation"]["options"] == {"max_scale": 0.5}
    run_script("eval.py", *_documented_command("kml-eval", "channel_scale"), "checkpoint=2", "progress=false",
               cwd=project)
    assert json.loads((run_dir / "eval_2_test.json").read_text())["checkpoint_iterations"] == {"all": 2}
    # out of range: one line, from the modulation's own check
    refused = run_script("train.py", *train, f"data.root={synthetic_root}", *TINY,
                         "modulation.options.max_scale=2", "hydra.run.dir=refused", cwd=project, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: modulation.options.max_scale=2 is out of range: it must be in (0, 1]"
    # the trained learner, loaded as kml-eval loads it: the generator is never adapted
    import os

    from kml.engine.checkpoints import load_run

    previous = os.getcwd()
    os.chdir(project)
    try:
        loaded = load_run(run_dir)
    finally:
        os.chdir(previous)
    learner = loaded.learner.double()
    assert isinstance(learner, MAML)
    scales = [p for n, p in learner.backbone.named_parameters() if ".scales." in n]
    assert scales and {id(p) for p in scales} == {id(p) for p in learner.backbone.generator_parameters()}
    support, s_labels, _, _ = tiny_episode(tasks=2, ways=3, size=16, seed=3, dtype=torch.float64)
    _, modulation = learner.modulate(support)
    before = [p.detach().clone() for p in scales]
    fast = learner.adapt(support, s_labels, modulation)
    assert not any(".scales." in name for name in fast)
    assert all(torch.equal(a, b) for a, b in zip(before, scales))


@pytest.mark.slow
def test_a_learner_with_an_option_of_its_own_is_set_from_the_command_line(synthetic_root, tmp_path):
    """The documented learner of a temporary module, with an option of its own, trained with that
    option set on the command line; no file of kml is touched."""
    project = tmp_path / "my_project"
    for path, text in _documented_files().items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    train = _documented_command("kml-train", "learner=cosine_protonet")
    assert "learner.scale=5" in train  # the learner's own option, from the command line
    run_script("train.py", *train, f"data.root={synthetic_root}", *TINY, "train.iterations=2", cwd=project)
    results = json.loads((project / "runs" / "cosine" / "results.json").read_text())
    assert results["method"] == "MCosineProtoNet+KML" and results["config"]["learner"]["name"] == "cosine_protonet"
    assert results["config"]["learner"]["scale"] == 5.0
    assert results["config"]["learner"]["backbone"]["pool"] == "flatten"  # ProtoNet's recipe
    refused = run_script("train.py", *train, "learner.scale=0", f"data.root={synthetic_root}", *TINY,
                         "hydra.run.dir=runs/refused", cwd=project, check=False)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        "error: learner.scale=0.0 is out of range: it must be > 0")
    unknown = run_script("train.py", *train, "learner.scal=2", f"data.root={synthetic_root}", *TINY,
                         "hydra.run.dir=runs/unknown", cwd=project, check=False)
    assert unknown.returncode == 1
    assert ("(did you mean learner.scale?); valid keys of learner (cosine_protonet): name, backbone, specialist, "
            "query_modulation, prototype_refinement, batch_norm, scale") in unknown.stderr
