"""Distillation losses against values worked out by hand (numpy, float64)."""

import numpy as np
import pytest

from keras_bert_kit.distillation.losses import (
    attention_kl_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    soft_target_loss,
)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_soft_target_loss_is_kl_of_softened_distributions_times_t_squared():
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], "float32")
    student = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]], "float32")
    t = 2.0
    p, q = _softmax(teacher / t), _softmax(student / t)
    kl = (p * np.log(p / q)).sum(-1)
    expected = kl.mean() * t * t
    got = float(soft_target_loss(teacher, student, t, np.ones(2, "float32")))
    assert got == pytest.approx(expected, rel=1e-5)
    # First example only: the second's weight is 0.
    got = float(soft_target_loss(teacher, student, t, np.array([1.0, 0.0], "float32")))
    assert got == pytest.approx(kl[0] * 4.0, rel=1e-5)


def test_soft_target_loss_scales_with_t_squared_for_the_same_distributions():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    weights = np.ones(4)
    # Logits scaled by T at temperature T give the T=1 distributions: only T² differs.
    base = float(soft_target_loss(teacher, student, 1.0, weights))
    scaled = float(soft_target_loss(3.0 * teacher, 3.0 * student, 3.0, weights))
    assert scaled == pytest.approx(9.0 * base, rel=1e-4)


def test_soft_target_loss_is_zero_for_identical_logits():
    logits = np.random.default_rng(1).normal(size=(2, 3, 7))
    assert float(soft_target_loss(logits, logits, 2.0, np.ones((2, 3)))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_cosine_loss_averages_real_tokens_only():
    teacher = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], "float32")
    student = np.array([[[1.0, 0.0], [1.0, 0.0], [-3.0, 1.0]]], "float32")
    mask = np.array([[1, 1, 0]], "int32")
    # Token 0: cos 1 -> 0; token 1: cos 0 -> 1; token 2 is padding.
    assert float(hidden_cosine_loss(teacher, student, mask)) == pytest.approx(0.5, rel=1e-6)
    all_tokens = np.ones_like(mask)
    cos_2 = (5 * -3 + 5 * 1) / (np.hypot(5, 5) * np.hypot(-3, 1))
    expected = (0.0 + 1.0 + (1.0 - cos_2)) / 3
    assert float(hidden_cosine_loss(teacher, student, all_tokens)) == pytest.approx(
        expected, rel=1e-6
    )


def test_mse_loss_averages_real_tokens_and_width():
    teacher = np.zeros((1, 3, 2), "float32")
    student = np.array([[[1.0, 1.0], [2.0, 0.0], [9.0, 9.0]]], "float32")
    mask = np.array([[1, 1, 0]])
    assert float(hidden_mse_loss(teacher, student, mask)) == pytest.approx(1.5, rel=1e-6)


def test_attention_kl_skips_padding_keys_and_queries():
    # One head, 3 positions, the last is padding: probabilities 0 at its key.
    teacher = np.array([[[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.3, 0.7, 0.0]]]], "float32")
    student = np.array([[[[0.25, 0.75, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]]], "float32")
    mask = np.array([[1, 1, 0]])
    kl = [
        0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75),
        0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5),
    ]
    got = float(attention_kl_loss(teacher, student, mask))
    assert np.isfinite(got)
    assert got == pytest.approx(np.mean(kl), rel=1e-5)
