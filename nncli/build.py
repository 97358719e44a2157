"""Config -> model, objective, optimizer and training step: the only door from a
:class:`~nncli.config.Config` into ``nncli.nn`` (and its annex ``nncli.fast``).

``nncli.nn`` knows nothing of configs or data; this module reads the config (and, for
gradcheck, its data) and calls the math with plain values.
"""

from __future__ import annotations

import numpy as np

from nncli.config import Config
from nncli.data import TrainingData, class_weight_vector, load_training_data
from nncli.fast.step import FusedStep
from nncli.nn.gradcheck import (
    DEFAULT_SAMPLES,
    GradcheckReport,
    Progress,
    check_gradients,
    check_options,
)
from nncli.nn.losses import Objective
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer, learning_rate
from nncli.nn.step import TrainingStep

STEPS: dict[str, type[TrainingStep]] = {"textbook": TrainingStep, "fused": FusedStep}
# train.step: auto is the fused step. On 784-256-10, batch 128, float32 (bench/RESULTS.md,
# "Textbook step against fused step") it ran 1.16-1.30x the textbook step with plain SGD
# (the update inside the weight-gradient GEMM) and 0.91-1.05x (median of runs ~1.01) with
# adam, where the trainer with the textbook step ran 2-5% below today's fused one.
AUTO_STEP = "fused"


def model_from_config(cfg: Config, input_dim: int, n_classes: int,
                      dtype: str | None = None) -> MLP:
    """The freshly initialized network of ``cfg`` (init RNG stream ``[seed, 0]``)."""
    return MLP.create(input_dim, cfg.model.hidden, n_classes, cfg.model.activation,
                      cfg.model.init, np.random.default_rng([cfg.seed, 0]),
                      dtype=dtype or cfg.train.dtype)


def output_units(task: str, classes: list[str]) -> int:
    """Width of the last layer: a score per class, or one value for ``task: regression``."""
    return 1 if task == "regression" else len(classes)


def class_weights(cfg: Config, data: TrainingData) -> np.ndarray | None:
    """The loss's per-class weights (K,) of ``cfg.loss.class_weight`` on ``data``'s training
    split, or None for none (always for regression, which the config checks)."""
    return class_weight_vector(cfg.loss.class_weight, data.classes, data.train.y)


def objective_from_config(cfg: Config, weights: np.ndarray | None) -> Objective:
    """``cfg``'s loss: ``loss.type``, ``loss.margin`` and ``reg.lambda``, with the class
    ``weights`` (K,) from :func:`class_weights` (or a checkpoint), None for none."""
    return Objective(cfg.loss.type, cfg.loss.margin, weights, cfg.reg_lambda)


def optimizer_from_config(cfg: Config) -> Optimizer:
    """``train.optimizer`` with ``train.momentum`` (its state slots start empty)."""
    return Optimizer(cfg.train.optimizer, cfg.train.momentum)


def epoch_learning_rate(cfg: Config, epoch: int) -> float:
    """The rate of 1-based ``epoch``: ``train.lr`` under ``train.lr_schedule``."""
    return learning_rate(cfg.train.lr, cfg.train.lr_schedule, epoch, cfg.train.epochs)


def training_step(model: MLP, objective: Objective, capacity: int,
                  kind: str = "auto") -> TrainingStep:
    """The training step ``kind`` (``train.step``: ``textbook``, ``fused``, or ``auto``, the
    one measured faster: :data:`AUTO_STEP`) for batches of up to ``capacity`` rows."""
    return STEPS[AUTO_STEP if kind == "auto" else kind](model, objective, capacity)


def gradcheck_config(cfg: Config, samples: int | None = DEFAULT_SAMPLES, tol: float = 1e-6,
                     n_examples: int = 16, progress: Progress | None = None
                     ) -> GradcheckReport:
    """Gradient-check the model of ``cfg`` in float64 on ``n_examples`` of its training data.

    The model is initialized as training would initialize it, the examples are drawn from
    the seed, and class weights and lambda are those of the config. ``samples`` as in
    :func:`~nncli.nn.gradcheck.check_gradients` (default
    :data:`~nncli.nn.gradcheck.DEFAULT_SAMPLES`, as the CLI; None for all).
    """
    check_options(samples, tol)  # before the data is read
    data = load_training_data(cfg, splits=("train",), dtype="float64")
    rng = np.random.default_rng([cfg.seed, 3])
    n = data.train.X.shape[0]
    pick = np.sort(rng.choice(n, size=min(n, n_examples), replace=False))
    model = model_from_config(cfg, data.train.X.shape[1], output_units(cfg.task, data.classes),
                              "float64")
    return check_gradients(model, data.train.X[pick], data.train.y[pick],
                           objective_from_config(cfg, class_weights(cfg, data)),
                           samples, tol, rng, progress)
