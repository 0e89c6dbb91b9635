"""The weight-learning rules: invariants of loss-softmax, DoReMi's update and the collapse guard."""
import numpy as np
import pytest

from curate.tasks.learn.updates import check_collapse, domain_excess, doremi_update, loss_softmax


def test_loss_softmax_is_the_design_documents_rule():
    losses = np.array([2.0, 3.0, 5.0])
    p = loss_softmax(losses, tau=1.0)
    expected = np.exp(-losses) / np.exp(-losses).sum()
    assert np.allclose(p, expected) and abs(p.sum() - 1) < 1e-12
    assert p[0] > p[1] > p[2], "lower loss, more weight"
    assert np.allclose(loss_softmax(np.full(4, 7.0)), 0.25), "equal losses give a uniform mixture"
    assert np.allclose(loss_softmax(losses, tau=1e6), 1 / 3, atol=1e-6), "a hot temperature flattens it"
    assert np.isfinite(loss_softmax(np.array([1000.0, 1001.0]))).all(), "no overflow for large losses"


def test_doremi_update_moves_weight_toward_excess_loss_and_keeps_a_floor():
    alpha = np.full(4, 0.25)
    assert np.allclose(doremi_update(alpha, np.zeros(4)), alpha), "no excess anywhere: nothing moves"
    after = doremi_update(alpha, np.array([0.5, 0.0, 0.0, 0.0]), eta=1.0, epsilon=1e-3)
    assert after[0] > 0.25 and np.allclose(after[1:], after[1]) and abs(after.sum() - 1) < 1e-12
    raw = np.exp(0.5) / (np.exp(0.5) + 3)
    assert after[0] == pytest.approx((1 - 1e-3) * raw + 1e-3 / 4)
    extreme = doremi_update(alpha, np.array([500.0, 0.0, 0.0, 0.0]), eta=1.0, epsilon=0.01)
    assert np.isfinite(extreme).all() and extreme.min() >= 0.01 / 4 - 1e-15, "smoothing keeps every domain alive"


def test_domain_excess_is_the_clipped_per_token_mean_per_domain():
    proxy = np.array([[3.0, 1.0], [2.0, 4.0]])
    ref = np.array([[1.0, 2.0], [2.0, 1.0]])
    dom = np.array([[0, 0], [2, 2]])
    lam = domain_excess(proxy, ref, dom, 3)
    assert lam.tolist() == [1.0, 0.0, 1.5]  # (2 + 0) / 2, absent, (0 + 3) / 2


def test_a_collapsed_vector_is_smoothed_and_named():
    w, warning = check_collapse(np.array([0.97, 0.02, 0.01]), ["code", "legal", "web"], 0.95, 0.1)
    assert warning and "'code'" in warning and abs(w.sum() - 1) < 1e-12
    assert w[0] == pytest.approx(0.9 * 0.97 + 0.1 / 3) and w.min() > 0.03
    same, none = check_collapse(np.array([0.5, 0.3, 0.2]), ["a", "b", "c"], 0.95, 0.1)
    assert none is None and same.tolist() == [0.5, 0.3, 0.2]
