"""The common learner interface (a meta-batch of tasks in, query loss and accuracy out)
and the learner registry (:func:`register_learner`)."""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone, ConvBlock, rename_feature_keys
from kml.nets import TaskEncoder
from kml.options import options_from
from kml.recipes import RECIPES, Recipe
from kml.registry import LEARNERS, get_learner, list_learners

__all__ = [
    "LearnerOutput",
    "LearnerOptions",
    "MetaLearner",
    "upgrade_state_dict",
    "register_learner",
    "get_learner",
    "list_learners",
]


@dataclass(frozen=True)
class LearnerOptions:
    """The options of a learner: its class's ``Options``, a frozen dataclass whose fields
    (written with :func:`kml.options.option`: type, default, one line of doc) are the
    learner's settings, ``learner.<field>`` in a run config and keywords of
    :func:`kml.learners.build_learner`. A subclass checks its values in ``__post_init__``
    (a ``ValueError`` that starts with the field, ``"inner_steps=-1 is out of range: ..."``).
    This base declares none."""


@dataclass
class LearnerOutput:
    """What a learner returns for a meta-batch of ``T`` tasks.

    Attributes:
        loss: scalar, mean over tasks of each task's mean query cross-entropy;
            differentiable w.r.t. every meta-parameter.
        task_losses: ``(T,)`` per-task query losses.
        accuracy: ``(T,)`` per-task query accuracy in ``[0, 1]``.
        logits: ``(T, N*Q, N)`` query logits.
        task_embedding: ``(T, task_dim)`` for modulated learners, else ``None``.
    """

    loss: Tensor
    task_losses: Tensor
    accuracy: Tensor
    logits: Tensor
    task_embedding: Tensor | None

    @staticmethod
    def from_logits(logits: Tensor, labels: Tensor, task_embedding: Tensor | None) -> "LearnerOutput":
        """Build the output from query ``logits (T, M, N)`` and ``labels (T, M)``."""
        num_tasks, num_query, ways = logits.shape
        per_example = F.cross_entropy(logits.reshape(-1, ways), labels.reshape(-1), reduction="none")
        task_losses = per_example.reshape(num_tasks, num_query).mean(dim=1)
        accuracy = (logits.argmax(dim=-1) == labels).to(logits.dtype).mean(dim=1)
        return LearnerOutput(task_losses.mean(), task_losses, accuracy, logits, task_embedding)

    @staticmethod
    def concatenate(outputs: list["LearnerOutput"]) -> "LearnerOutput":
        """Join the outputs of task subsets (the per-task loop path)."""
        task_losses = torch.cat([o.task_losses for o in outputs])
        embeddings = [o.task_embedding for o in outputs]
        return LearnerOutput(
            loss=task_losses.mean(),
            task_losses=task_losses,
            accuracy=torch.cat([o.accuracy for o in outputs]),
            logits=torch.cat([o.logits for o in outputs]),
            task_embedding=None if embeddings[0] is None else torch.cat(embeddings),
        )


class MetaLearner(nn.Module, abc.ABC):
    """Base class of MAML and ProtoNet, with optional task-aware modulation.

    Holds the ``backbone`` (any :class:`~kml.backbone.Backbone`: :class:`~kml.nets.Conv4`,
    :class:`~kml.resnet.ResNet12`, ...) and, for modulated methods (MMAML, MMAML+KML,
    MProtoNet, MProtoNet+KML), the task ``encoder``; the backbone's modulated layers
    (:class:`~kml.modulation.KernelModulatedConv2d`, :class:`~kml.modulation.FiLM`, ...)
    own the generators. The task embedding is computed from the support set only and
    modulates the backbone for both support and query.

    ``forward(support, support_labels, query, query_labels)`` takes

    - ``support (T, N*K, C, H, W)``, ``support_labels (T, N*K)`` in ``0..N-1``,
    - ``query (T, N*Q, C, H, W)``, ``query_labels (T, N*Q)``,

    and returns a :class:`LearnerOutput`; :meth:`predict` takes no query labels and
    returns the ``(T, N*Q, N)`` query logits. Subclasses implement :meth:`query_logits`.
    With ``vectorized=True`` (default) the ``T`` tasks run as one vectorised computation;
    ``vectorized=False`` is the plain per-task loop, kept as the reference the vectorised
    path must agree with.

    A learner class is registered by name with :func:`register_learner`, which sets the
    class attributes below; :func:`kml.learners.build_learner` builds it through
    :meth:`from_options`.
    """

    #: the registered name (``learner.name``)
    learner_name: str = ""
    #: the paper's name of the unmodulated method (``"MAML"``); method names derive from it
    display_name: str = ""
    #: the backbone, inner-loop and training defaults (:mod:`kml.recipes`)
    recipe: Recipe | None = None
    #: whether the backbone carries a ``ways``-way classification head (MAML) or returns features
    uses_head: bool = False
    #: the ProtoNet protocol options (``learner.query_modulation``, ...) this learner honours
    protocol_options: tuple[str, ...] = ()
    #: whether the backbone runs with weights of its own per task (MAML's inner loop), so
    #: that every convolution has a kernel per task; ``False``: one backbone weight for
    #: all tasks (ProtoNet), which ``train.per_task_conv=shared`` needs
    per_task_weights: bool = True
    #: the learner's options (:class:`LearnerOptions`): the one declaration of its settings
    Options: ClassVar[type[LearnerOptions]] = LearnerOptions

    def __init__(self, backbone: Backbone, encoder: TaskEncoder | None = None,
                 options: LearnerOptions | None = None, **fields: Any) -> None:
        super().__init__()
        #: the learner's options (``options``, or one made of ``fields``: option names as keywords)
        self.options = self.resolve_options(options, fields)
        if (encoder is None) != (backbone.modulation == "none"):
            raise ValueError(
                "a modulated backbone needs a task encoder and a plain one none; got "
                f"modulation={backbone.modulation!r} with {'no ' if encoder is None else 'an '}encoder"
            )
        if encoder is not None and encoder.task_dim != backbone.task_dim:
            raise ValueError(
                f"the encoder's task_dim {encoder.task_dim} differs from the backbone's {backbone.task_dim}"
            )
        self.backbone = backbone
        self.encoder = encoder
        self._register_load_state_dict_pre_hook(_upgrade_state_dict_hook)

    @classmethod
    def resolve_options(cls, options: LearnerOptions | None, fields: Mapping[str, Any]) -> LearnerOptions:
        """``options`` (an instance of :attr:`Options`), or one made of ``fields`` (option
        names as keywords; missing ones take their defaults).

        Raises:
            ValueError: an unknown option (the message lists the learner's options) or a
                value the options refuse, in one line.
            TypeError: both ``options`` and ``fields``, or ``options`` of another type.
        """
        if options is not None:
            if fields:
                raise TypeError(f"pass {cls.__name__}'s options once: options=... or keywords, not both")
            if not isinstance(options, cls.Options):
                raise TypeError(f"options must be {cls.Options.__name__}, got {type(options).__name__}")
            return options
        return options_from(cls.Options, fields, "learner", f"learner {cls.learner_name or cls.__name__}")

    @classmethod
    def from_options(cls, backbone: Backbone, encoder: TaskEncoder | None, options: LearnerOptions) -> "MetaLearner":
        """The learner of :func:`kml.learners.build_learner` with its ``options`` (an
        instance of :attr:`Options`). The default passes them to the constructor."""
        return cls(backbone, encoder, options)

    @property
    def modulation(self) -> str:
        """The modulation's name: ``"none"``, ``"film"``, ``"kml"``, ..."""
        return self.backbone.modulation

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Conv, BN and head parameters: what MAML's inner loop adapts and the backbone
        optimiser updates (the generators are not among them)."""
        return self.backbone.adaptable_parameters()

    def modulation_parameters(self) -> list[nn.Parameter]:
        """Parameters of the task encoder and the generators (empty when unmodulated)."""
        if self.encoder is None:
            return []
        return list(self.encoder.parameters()) + self.backbone.generator_parameters()

    def modulate(self, support: Tensor) -> tuple[Tensor | None, list | None]:
        """Task embedding ``(T, task_dim)`` and per-layer modulation from ``support``."""
        if self.encoder is None:
            return None, None
        task_embedding = self.encoder(support)
        return task_embedding, self.backbone.modulations(task_embedding)

    def forward(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor,
        ways: int | None = None,
        vectorized: bool = True,
    ) -> LearnerOutput:
        if support.dim() != 5 or query.dim() != 5:
            raise ValueError(
                "support and query must be (T, N*K, C, H, W) and (T, N*Q, C, H, W); "
                f"got {tuple(support.shape)} and {tuple(query.shape)}"
            )
        if ways is None:
            ways = self.default_ways(support_labels)
        if vectorized:
            return self.run_tasks(support, support_labels, query, query_labels, ways, vectorized=True)
        outputs = [
            self.run_tasks(
                support[t : t + 1], support_labels[t : t + 1], query[t : t + 1], query_labels[t : t + 1],
                ways, vectorized=False,
            )
            for t in range(support.shape[0])
        ]
        return LearnerOutput.concatenate(outputs)

    @torch.no_grad()
    def predict(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        ways: int | None = None,
        vectorized: bool = True,
    ) -> Tensor:
        """Classify the query images of ``T`` tasks: no query labels needed.

        Runs under ``torch.no_grad()`` (MAML's inner loop still takes its gradient steps
        on the support set) in the learner's current mode: call ``eval()`` first for
        evaluation settings (MAML's ``eval_inner_steps``); :func:`kml.load_run` returns
        the learner in eval mode. The images must be preprocessed as in training:
        :func:`kml.data.load_images` ``(paths, config.data.image_size, dataset=<name>)``
        turns image files into such tensors with the named dataset's preprocessing (see
        :func:`kml.load_run` for an example).

        Args:
            support: ``(T, N*K, C, H, W)`` in ``[0, 1]``; support_labels: ``(T, N*K)`` in
                ``0..N-1``.
            query: ``(T, M, C, H, W)``, e.g. ``M = N*Q``.
            ways: ``N`` (default: MAML's head size; ProtoNet: ``support_labels.max() + 1``).
            vectorized: the ``T`` tasks as one computation, or the per-task loop.

        Returns:
            ``(T, M, N)`` logits, the same as ``forward(...).logits``.
        """
        if support.dim() != 5 or query.dim() != 5:
            raise ValueError(
                "support and query must be (T, N*K, C, H, W) and (T, M, C, H, W); "
                f"got {tuple(support.shape)} and {tuple(query.shape)}"
            )
        if ways is None:
            ways = self.default_ways(support_labels)
        if vectorized:
            return self.query_logits(support, support_labels, query, ways, vectorized=True)[0]
        return torch.cat([
            self.query_logits(
                support[t : t + 1], support_labels[t : t + 1], query[t : t + 1], ways, vectorized=False
            )[0]
            for t in range(support.shape[0])
        ])

    def default_ways(self, support_labels: Tensor) -> int:
        return int(support_labels.max().item()) + 1

    def run_tasks(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor,
        ways: int,
        vectorized: bool,
    ) -> LearnerOutput:
        """Run the tasks of ``support``/``query``; ``vectorized=False`` means one task with
        plain (task-dimension-free) parameters: the loop reference path."""
        logits, task_embedding = self.query_logits(support, support_labels, query, ways, vectorized)
        return LearnerOutput.from_logits(logits, query_labels, task_embedding)

    @abc.abstractmethod
    def query_logits(
        self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int, vectorized: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The query logits ``(T, M, ways)`` and the task embedding ``(T, task_dim)``
        (``None`` unmodulated) of the tasks; ``vectorized=False`` means one task with
        plain parameters (the loop reference path)."""




def register_learner(
    name: str,
    *,
    recipe: Recipe | str | None = None,
    display_name: str | None = None,
):
    """Class decorator: register a :class:`MetaLearner` subclass under ``name``.

    After registration ``learner.name=<name>`` (with a ``learner/<name>.yaml`` config and
    the module listed in ``imports``), :func:`kml.learners.build_learner` and campaigns
    select it.

    Args:
        name: the learner's name (``learner.name``).
        recipe: its defaults, a :class:`~kml.recipes.Recipe` or the name of a built-in
            recipe (``"protonet"``). Default: the recipe of the class it derives from.
        display_name: the paper-style name of the unmodulated method, from which method
            names derive (``"CosineProtoNet"`` -> ``MCosineProtoNet+KML``). Default: ``name``.

    Example:
        ```python
        @register_learner("cosine_protonet", display_name="CosineProtoNet")
        class CosineProtoNet(ProtoNet):
            ...
        ```
    """

    def prepare(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, MetaLearner)):
            raise TypeError(f"register_learner({name!r}): {cls!r} must subclass kml.learners.MetaLearner")
        chosen = RECIPES[recipe] if isinstance(recipe, str) else recipe
        if chosen is None:
            chosen = cls.recipe
        if chosen is None:
            raise ValueError(f"register_learner({name!r}): pass recipe= (a kml.recipes.Recipe or 'maml'/'protonet')")
        cls.learner_name = name
        cls.display_name = display_name or name
        cls.recipe = chosen

    return LEARNERS.decorator(name, prepare)




_LEGACY_GENERATOR_KEY = re.compile(r"^(?P<prefix>.*)modulator\.generators\.(?P<block>\d+)\.(?P<rest>.*)$")


def upgrade_state_dict(state_dict: dict[str, Tensor], learner: nn.Module | None = None) -> dict[str, Tensor]:
    """Rename the keys of a learner state dict saved by kml 0.1 to today's layout.

    Generators held in a separate ``modulator`` now belong to the backbone's modulated
    layers: ``modulator.generators.<i>.g1...`` becomes
    ``backbone.blocks.<i>.conv.generator.g1...`` (KML) and
    ``modulator.generators.<i>.head...`` becomes ``backbone.blocks.<i>.film.generator.head...``
    (FiLM). Given the ``learner`` the state is for, a user feature modulation's keys
    stored under its registered name (``blocks.<i>.<name>.``) become
    ``blocks.<i>.features.``. Other keys, and current state dicts, are unchanged (a
    current state dict is returned as it is)."""
    if learner is not None:
        renamed = dict(state_dict)
        for path, module in learner.named_modules():
            if isinstance(module, ConvBlock) and hasattr(module, "feature_modulation"):
                rename_feature_keys(renamed, f"{path}.", module.feature_modulation)
        if renamed.keys() != state_dict.keys():
            state_dict = renamed
    if not any("modulator.generators." in key for key in state_dict):
        return state_dict
    upgraded = {}
    for key, value in state_dict.items():
        match = _LEGACY_GENERATOR_KEY.match(key)
        if match:
            rest = match["rest"]
            layer = "film" if rest.startswith("head.") else "conv"
            key = f"{match['prefix']}backbone.blocks.{match['block']}.{layer}.generator.{rest}"
        upgraded[key] = value
    return upgraded


def _upgrade_state_dict_hook(module, state_dict, prefix, *args) -> None:
    upgraded = upgrade_state_dict(state_dict)
    if upgraded is not state_dict:
        state_dict.clear()
        state_dict.update(upgraded)
