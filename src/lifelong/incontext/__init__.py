"""In-context learning studies: prompt samplers (function classes), small sequence models, one training loop,
reference learners and probes.

- :mod:`lifelong.incontext.prompts`: the :class:`Prompts` batch every part shares;
- :mod:`lifelong.incontext.tasks`: samplers (linear regression, Boolean functions, GPICL projections, ...);
- :mod:`lifelong.incontext.models`: :class:`PromptTransformer` (causal, interleaved x/y tokens), :class:`PromptLSTM`;
- :mod:`lifelong.incontext.train`: :func:`train` (checkpoints, resume, eval history, hooks) and per-position metrics;
- :mod:`lifelong.incontext.references`: OLS, ridge, k-step GD, kNN, averaging, elimination, nearest neighbour, SPD;
- :mod:`lifelong.incontext.attention_probes`: attention-pattern probes (induction heads); SPD is in ``references``;
- :mod:`lifelong.incontext.studies`: the study registry (task family -> sampler, model, references);
- :mod:`lifelong.incontext.report`: :func:`train_study` / :func:`evaluate_study` (``lifelong incontext``), plots.
"""

from lifelong.incontext.models import PromptLSTM, PromptTransformer
from lifelong.incontext.prompts import Prompts, cat_prompts
from lifelong.incontext.report import StudyRun, evaluate_study, train_study
from lifelong.incontext.studies import STUDIES, list_studies
from lifelong.incontext.train import History, TrainConfig, per_position_accuracy, per_position_error, predict, train

__all__ = [
    "Prompts",
    "cat_prompts",
    "PromptTransformer",
    "PromptLSTM",
    "TrainConfig",
    "History",
    "train",
    "predict",
    "per_position_accuracy",
    "per_position_error",
    "STUDIES",
    "list_studies",
    "StudyRun",
    "train_study",
    "evaluate_study",
]
