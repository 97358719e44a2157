"""Config -> model: the only door from a :class:`~nncli.config.Config` into ``nncli.nn``.

``nncli.nn`` knows nothing of configs or data; this module reads the config (and, for
gradcheck, its data) and calls the math with plain values.
"""

from __future__ import annotations

import numpy as np

from nncli.config import Config
from nncli.data import TrainingData, class_weight_vector, load_training_data
from nncli.nn.gradcheck import (
    DEFAULT_SAMPLES,
    GradcheckReport,
    Progress,
    check_gradients,
    check_options,
)
from nncli.nn.model import MLP


def model_from_config(cfg: Config, input_dim: int, n_classes: int,
                      dtype: str | None = None) -> MLP:
    """The freshly initialized network of ``cfg`` (init RNG stream ``[seed, 0]``)."""
    return MLP.create(input_dim, cfg.model.hidden, n_classes, cfg.model.activation,
                      cfg.model.init, np.random.default_rng([cfg.seed, 0]),
                      dtype=dtype or cfg.train.dtype)


def class_weights(cfg: Config, data: TrainingData) -> np.ndarray | None:
    """The loss's per-class weights (K,) of ``cfg.loss.class_weight`` on ``data``'s training
    split, or None for none."""
    return class_weight_vector(cfg.loss.class_weight, data.classes, data.train.y)


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
    model = model_from_config(cfg, data.train.X.shape[1], len(data.classes), "float64")
    return check_gradients(model, data.train.X[pick], data.train.y[pick], cfg.loss.type,
                           cfg.reg_lambda, cfg.loss.margin, class_weights(cfg, data),
                           samples, tol, rng, progress)
