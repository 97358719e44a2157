"""Losses against the lecture's worked numbers, the SPEC formulas, and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nncli.data import class_weight_vector
from nncli.errors import NncliError
from nncli.nn.losses import (
    Objective,
    data_loss,
    log_softmax,
    multiclass_svm,
    softmax,
    softmax_cross_entropy,
    squared_error,
)
from nncli.nn.model import MLP

CAT, CAR, FROG = 0, 1, 2
# Columns are examples in the lecture; here each row is one example: scores for cat, car, frog.
LECTURE_SCORES = np.array([[3.2, 5.1, -1.7],
                           [1.3, 4.9, 2.0],
                           [2.2, 2.5, -3.1]])
LECTURE_Y = np.array([CAT, CAR, FROG])

# ---------------------------------------------------------------- the lecture's worked numbers


def test_softmax_loss_of_the_cat_example_is_2_0404():
    losses, _ = softmax_cross_entropy(LECTURE_SCORES[:1].copy(), LECTURE_Y[:1])
    by_hand = -math.log(math.exp(3.2) / (math.exp(3.2) + math.exp(5.1) + math.exp(-1.7)))
    assert losses[0] == pytest.approx(by_hand, rel=1e-12)
    assert round(float(losses[0]), 4) == 2.0404


def test_svm_losses_of_the_three_examples_are_2_9_0_12_9_mean_5_2667():
    losses, _ = multiclass_svm(LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
    np.testing.assert_allclose(losses, [2.9, 0.0, 12.9], atol=1e-12)
    loss, _ = data_loss("svm", LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
    assert round(loss, 4) == 5.2667


def test_one_weight_regression_loss_1_and_gradient_minus_2():
    """(x w - y)^2 at x=1, y=2, w=1: loss 1, dL/dw = 2 (x w - y) x = -2."""
    x, y, w = 1.0, 2.0, 1.0
    loss, dloss_dw = (x * w - y) ** 2, 2 * (x * w - y) * x
    h = 1e-6
    assert (loss, dloss_dw) == (1.0, -2.0)
    numeric = (((x * (w + h) - y) ** 2) - ((x * (w - h) - y) ** 2)) / (2 * h)
    assert numeric == pytest.approx(-2.0, rel=1e-9)
    # The same thing through nncli's mse, whose targets are one-hot (1 for the true class):
    # a linear model with D=1, K=2, W = [[w], [0]], b = [-1, 0] and true class 0 scores
    # s = [x w - 1, 0], so L = (x w - 1 - 1)^2 + 0^2 = (x w - 2)^2.
    model = MLP({"W1": np.array([[w], [0.0]]), "b1": np.array([-1.0, 0.0])}, "linear")
    data, reg, grads, _ = model.loss(np.array([[x]]), np.array([0]), Objective("mse"))
    assert (data, reg) == (1.0, 0.0)
    assert grads["W1"][0, 0] == -2.0
    assert grads["b1"].tolist() == [-2.0, 0.0]


# ---------------------------------------------------------------- the formulas


def test_softmax_gradient_is_probabilities_minus_onehot():
    _, dscores = softmax_cross_entropy(LECTURE_SCORES.copy(), LECTURE_Y)
    expected = softmax(LECTURE_SCORES.copy()) - np.eye(3)[LECTURE_Y]
    np.testing.assert_allclose(dscores, expected, atol=1e-15)


def test_svm_gradient_counts_violators_and_margin_is_delta():
    losses, dscores = multiclass_svm(LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
    # cat example: car violates (5.1 - 3.2 + 1 > 0), frog does not (-1.7 - 3.2 + 1 < 0)
    assert dscores[0].tolist() == [-1.0, 1.0, 0.0]
    assert dscores[1].tolist() == [0.0, 0.0, 0.0]
    assert dscores[2].tolist() == [1.0, 1.0, -2.0]
    zero_margin, _ = multiclass_svm(LECTURE_SCORES.copy(), LECTURE_Y, 0.0)
    np.testing.assert_allclose(zero_margin, [1.9, 0.0, 10.9], atol=1e-12)
    wide, _ = multiclass_svm(LECTURE_SCORES.copy(), LECTURE_Y, 2.0)
    np.testing.assert_allclose(wide, [3.9, 0.0, 14.9], atol=1e-12)


def test_squared_error_is_sum_over_classes_against_onehot():
    losses, dscores = squared_error(LECTURE_SCORES.copy(), LECTURE_Y)
    diff = LECTURE_SCORES - np.eye(3)[LECTURE_Y]
    np.testing.assert_allclose(losses, (diff ** 2).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(dscores, 2 * diff, rtol=1e-14)
    assert losses[0] == pytest.approx(2.2 ** 2 + 5.1 ** 2 + 1.7 ** 2)


@pytest.mark.parametrize("fn", [softmax_cross_entropy, multiclass_svm, squared_error])
def test_loss_functions_leave_scores_untouched(fn):
    scores = LECTURE_SCORES.copy()
    fn(scores, LECTURE_Y, 1.0)
    np.testing.assert_array_equal(scores, LECTURE_SCORES)


@pytest.mark.parametrize("kind", ["softmax", "svm", "mse"])
def test_data_loss_is_the_mean_and_its_gradient_divides_by_n(kind):
    fn = {"softmax": softmax_cross_entropy, "svm": multiclass_svm, "mse": squared_error}[kind]
    losses, dscores = fn(LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
    loss, dmean = data_loss(kind, LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
    assert loss == pytest.approx(losses.mean(), rel=1e-14)
    np.testing.assert_allclose(dmean, dscores / 3, rtol=1e-14)


@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(2, 6)),
              elements=st.floats(-50, 50)))
def test_softmax_rows_are_probabilities_and_match_log_softmax(scores):
    p = softmax(scores.copy())
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(scores)), p, rtol=1e-9, atol=1e-300)
    y = np.zeros(len(scores), dtype=int)
    losses, _ = softmax_cross_entropy(scores.copy(), y)
    np.testing.assert_allclose(losses, -log_softmax(scores)[:, 0], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_is_stable_for_huge_scores(dtype):
    scores = np.array([[1e4, -1e4, 0.0],
                       [1e4, 1e4, 1e4],
                       [-1e4, -1e4, -1e4 + 1],
                       [3e4, -2e4, 1e4]], dtype=dtype)
    y = np.array([1, 2, 2, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        losses, dscores = softmax_cross_entropy(scores.copy(), y)
        loss, dmean = data_loss("softmax", scores.copy(), y)
        p = softmax(scores.copy())
        logp = log_softmax(scores.copy())
    for arr in (losses, dscores, dmean, p, logp):
        assert np.isfinite(arr).all()
    assert np.isfinite(loss)
    assert losses[0] == pytest.approx(2e4, rel=1e-6)
    assert losses[1] == pytest.approx(math.log(3), rel=1e-6)
    assert losses[2] == pytest.approx(math.log(2 + math.e) - 1, rel=1e-5)
    assert losses[3] == pytest.approx(0.0, abs=1e-6)
    assert dscores[0].tolist() == pytest.approx([1.0, -1.0, 0.0])
    assert losses.dtype == dtype and dscores.dtype == dtype


# ---------------------------------------------------------------- class weights


def test_weighted_mean_is_pytorch_style():
    w = np.array([0.5, 2.0, 3.0])
    for kind, fn in (("softmax", softmax_cross_entropy), ("svm", multiclass_svm),
                     ("mse", squared_error)):
        losses, dscores = fn(LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
        wy = w[LECTURE_Y]
        loss, dweighted = data_loss(kind, LECTURE_SCORES.copy(), LECTURE_Y, 1.0, w)
        assert loss == pytest.approx((wy * losses).sum() / wy.sum(), rel=1e-14)
        np.testing.assert_allclose(dweighted, dscores * (wy / wy.sum())[:, None], rtol=1e-14)
    svm_loss, _ = data_loss("svm", LECTURE_SCORES.copy(), LECTURE_Y, 1.0, w)
    assert svm_loss == pytest.approx((0.5 * 2.9 + 3.0 * 12.9) / 5.5)


def test_equal_class_weights_give_the_plain_mean():
    for c in (1.0, 0.3, 7.0):
        weighted, dw = data_loss("softmax", LECTURE_SCORES.copy(), LECTURE_Y, 1.0,
                                 np.full(3, c))
        plain, dp = data_loss("softmax", LECTURE_SCORES.copy(), LECTURE_Y, 1.0)
        assert weighted == pytest.approx(plain, rel=1e-14)
        np.testing.assert_allclose(dw, dp, rtol=1e-14)


def test_batch_of_only_zero_weight_examples_contributes_nothing():
    loss, dscores = data_loss("softmax", LECTURE_SCORES.copy(), LECTURE_Y, 1.0,
                              np.array([0.0, 0.0, 0.0]))
    assert loss == 0.0 and not dscores.any()


def test_balanced_weights_are_n_over_k_times_class_count():
    y = np.array([0, 0, 0, 1, 2, 2])
    w = class_weight_vector("balanced", ["a", "b", "c"], y)
    np.testing.assert_allclose(w, [6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)], rtol=1e-15)
    # Every class then carries the same total weight N / K.
    np.testing.assert_allclose(np.bincount(y, weights=w[y]), [2.0, 2.0, 2.0])


@given(st.lists(st.integers(0, 4), min_size=2, max_size=40))
def test_balanced_weights_equalize_every_present_class(labels):
    y = np.array(labels)
    K = 5
    w = class_weight_vector("balanced", [str(k) for k in range(K)], y)
    counts = np.bincount(y, minlength=K)
    np.testing.assert_allclose(w[counts > 0], len(y) / (K * counts[counts > 0]), rtol=1e-14)
    totals = np.bincount(y, weights=w[y], minlength=K)
    np.testing.assert_allclose(totals[counts > 0], len(y) / K, rtol=1e-12)


def test_class_weight_mapping_names_classes_and_defaults_to_one():
    classes = ["bird", "cat", "dog"]
    y = np.array([0, 1, 2])
    np.testing.assert_array_equal(class_weight_vector({"cat": 3.0}, classes, y), [1, 3, 1])
    assert class_weight_vector(None, classes, y) is None
    with pytest.raises(NncliError, match="loss.class_weight.cow"):
        class_weight_vector({"cow": 2.0}, classes, y)
    # Numeric class names match however the config spells them (3, 3.0, "3").
    np.testing.assert_array_equal(class_weight_vector({"3.0": 2.0}, ["1", "3"], y[:2]), [1, 2])
