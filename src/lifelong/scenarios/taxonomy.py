"""The vocabulary used to name continual-learning scenarios.

It follows Continual Learning of Large Language Models: A Comprehensive Survey (arXiv 2404.16789):
:class:`CLStage` (continual pre-training, domain-adaptive pre-training, continual fine-tuning),
:class:`Continuity` (vertical or horizontal shift) and :class:`IncrementalSetting` (class-, task-,
domain-incremental, online, task-free). Every member carries a one-line ``description`` written for this
library; :func:`describe` returns the whole taxonomy as a JSON-able dict (``lifelong list scenarios``).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["CLStage", "Continuity", "IncrementalSetting", "describe"]


class CLStage(str, Enum):
    """Stage of a model's life at which learning continues (the survey's vertical axis).

    The stages run from general to specific: CPT -> DAP -> CFT.
    """

    CPT = "cpt"
    """Continual pre-training: the general-purpose model keeps training, self-supervised,
    on new general corpora as the world changes (new facts, languages, content)."""

    DAP = "dap"
    """Domain-adaptive pre-training: self-supervised training on unlabelled text of one
    domain (law, medicine, code, ...) before fine-tuning for that domain's tasks."""

    CFT = "cft"
    """Continual fine-tuning: supervised training on a sequence of downstream tasks or
    instruction sets, with labels, after pre-training."""

    @property
    def full_name(self) -> str:
        """Spelled-out name, e.g. ``"continual pre-training"``."""
        return _STAGE_NAMES[self]

    @property
    def description(self) -> str:
        """One line saying what the stage trains on and why."""
        return _STAGE_DOCS[self]


class Continuity(str, Enum):
    """The direction of the distribution shift a continually learning model faces."""

    VERTICAL = "vertical"
    """From general to specific: the same model moves down the stages CPT -> DAP -> CFT,
    each narrower than the one before, and should not lose what earlier stages gave it."""

    HORIZONTAL = "horizontal"
    """Across time or domains at the same level of generality: the data of one stage
    drifts (new periods, new domains, new tasks) and the model must follow it."""

    @property
    def description(self) -> str:
        """One line describing this direction of shift."""
        return _CONTINUITY_DOCS[self]


class IncrementalSetting(str, Enum):
    """How a stream of experiences is built and what the learner is told about it."""

    CLASS = "class-incremental"
    """New classes arrive over experiences; at test time no task id is given and the
    model must choose among all classes seen so far."""

    TASK = "task-incremental"
    """Each experience is a separate task whose id is given at training and at test time,
    so the model only chooses among that task's classes."""

    DOMAIN = "domain-incremental"
    """The label set stays the same while the input distribution changes from one
    experience to the next; no task id at test time."""

    ONLINE = "online"
    """Data arrives as a stream of small batches that is seen once (single pass),
    possibly with classes or domains overlapping between experiences."""

    TASK_FREE = "task-free"
    """The data distribution changes without any announced boundary: the learner gets
    neither task ids nor the moments where the tasks change."""

    @property
    def description(self) -> str:
        """One line saying what is incremental and what the learner is told."""
        return _SETTING_DOCS[self]

    @property
    def task_id_at_test(self) -> bool:
        """Whether the task id is available at prediction time (only task-incremental)."""
        return self is IncrementalSetting.TASK

    @property
    def boundaries_known(self) -> bool:
        """Whether the learner is told where one experience ends and the next begins.

        True for every setting but task-free; an online stream here announces its
        experience boundaries (a blurry online stream still has them, only its classes overlap).
        """
        return self is not IncrementalSetting.TASK_FREE


_STAGE_NAMES = {
    CLStage.CPT: "continual pre-training",
    CLStage.DAP: "domain-adaptive pre-training",
    CLStage.CFT: "continual fine-tuning",
}

_STAGE_DOCS = {
    CLStage.CPT: "keep pre-training a general model, self-supervised, on new general data as the world changes",
    CLStage.DAP: "self-supervised training on unlabelled text of one domain before its downstream tasks",
    CLStage.CFT: "supervised training on a sequence of downstream tasks or instruction sets",
}

_CONTINUITY_DOCS = {
    Continuity.VERTICAL: "from general to specific capabilities, down the stages CPT -> DAP -> CFT",
    Continuity.HORIZONTAL: "across time periods or domains at the same level of generality",
}

_SETTING_DOCS = {
    IncrementalSetting.CLASS: "new classes per experience; no task id at test, predict among all classes seen",
    IncrementalSetting.TASK: "one task per experience; the task id is given at training and at test",
    IncrementalSetting.DOMAIN: "same labels, shifting input distribution; no task id at test",
    IncrementalSetting.ONLINE: "a single pass over a stream of small batches, experiences may overlap",
    IncrementalSetting.TASK_FREE: "the distribution shifts without announced task boundaries or ids",
}


def describe() -> dict:
    """The whole taxonomy as a JSON-able dict.

    Keys ``"stages"``, ``"continuity"`` and ``"settings"`` map each member's value to
    its description (stages also give their full name and order, general to specific).
    """
    return {
        "stages": {
            s.value: {"name": s.name, "full_name": s.full_name, "order": i, "description": s.description}
            for i, s in enumerate(CLStage)
        },
        "continuity": {c.value: {"name": c.name, "description": c.description} for c in Continuity},
        "settings": {
            s.value: {
                "name": s.name,
                "description": s.description,
                "task_id_at_test": s.task_id_at_test,
                "boundaries_known": s.boundaries_known,
            }
            for s in IncrementalSetting
        },
    }
