"""Property tests of the loss object every solver relies on: derivatives, stability, precision."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from logitlab.model import _loss, _solvers
from logitlab.model._loss import BinaryLogisticLoss, expit

from .tolerances import summation_tolerance

finite = st.floats(-3, 3, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, max_abs_coef: float = 3.0):
    """A small random problem: X, y in {0, 1}, normalised weights, coef, and a loss object."""
    n_samples = draw(st.integers(1, 12))
    n_features = draw(st.integers(1, 5))
    fit_intercept = draw(st.booleans())
    l2_strength = draw(st.sampled_from([0.0, 0.01, 1.0]))
    X = draw(arrays(np.float64, (n_samples, n_features), elements=finite))
    y = draw(arrays(np.float64, n_samples, elements=st.sampled_from([0.0, 1.0])))
    raw_weights = draw(arrays(np.float64, n_samples, elements=st.floats(0.1, 3)))
    loss = BinaryLogisticLoss(fit_intercept, l2_strength)
    coef = draw(arrays(np.float64, loss.n_params(n_features), elements=st.floats(-max_abs_coef, max_abs_coef)))
    return loss, coef, X, y, raw_weights / raw_weights.sum()


@settings(max_examples=60, deadline=None, database=None)
@given(problems())
def test_gradient_matches_central_differences(problem):
    loss, coef, X, y, weights = problem
    value, grad = loss.loss_gradient(coef, X, y, weights)
    assert value == pytest.approx(loss.loss(coef, X, y, weights), rel=1e-12)
    step = 1e-6
    numeric = np.array(
        [
            (loss.loss(coef + step * e, X, y, weights) - loss.loss(coef - step * e, X, y, weights)) / (2 * step)
            for e in np.eye(coef.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@settings(max_examples=60, deadline=None, database=None)
@given(problems(), st.data())
def test_hessian_product_matches_differences_of_the_gradient(problem, data):
    loss, coef, X, y, weights = problem
    vector = data.draw(arrays(np.float64, coef.size, elements=finite))
    _, grad, curvature = loss.loss_gradient_curvature(coef, X, y, weights)

    def hessian_product(v):
        return loss.hessian_product(curvature, X, v)

    step = 1e-6
    numeric = (
        loss.gradient(coef + step * vector, X, y, weights) - loss.gradient(coef - step * vector, X, y, weights)
    ) / (2 * step)
    np.testing.assert_allclose(hessian_product(vector), numeric, rtol=1e-5, atol=1e-7)
    grad_dense, hessian = loss.gradient_hessian(coef, X, y, weights)
    np.testing.assert_allclose(grad_dense, grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hessian @ vector, hessian_product(vector), rtol=1e-10, atol=1e-12)


@settings(max_examples=60, deadline=None, database=None)
@given(problems(max_abs_coef=1e4))
def test_loss_and_gradient_are_finite_and_silent_for_huge_scores(problem):
    loss, coef, X, y, weights = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = loss.loss_gradient(coef, X, y, weights)
        _, hessian = loss.gradient_hessian(coef, X, y, weights)
    assert np.isfinite(value) and value >= 0
    assert np.isfinite(grad).all() and np.isfinite(hessian).all()


def test_expit_is_exact_and_silent_at_extremes():
    z = np.array([-1e308, -1e4, -745.0, -40.0, 0.0, 40.0, 1e4, 1e308])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = expit(z)
        value = BinaryLogisticLoss(False).loss(np.ones(1), z[:, None], np.zeros(z.size), np.full(z.size, 1 / z.size))
    assert np.all((p >= 0) & (p <= 1))
    assert p[0] == 0.0 and p[-1] == 1.0 and p[4] == 0.5
    assert p[3] == pytest.approx(np.exp(-40.0), rel=1e-12)  # no cancellation in the tails
    assert np.isfinite(value)  # log(1 + e^z) is never clipped: its mean is ~ (1e308 + 1e4 + 40) / 8
    assert value == pytest.approx((1e308 + 1e4 + 40 + np.log(2) + np.logaddexp(0, -40)) / z.size, rel=1e-12)


@settings(max_examples=40, deadline=None, database=None)
@given(problems())
def test_float32_agrees_with_float64(problem):
    loss, coef, X, y, weights = problem
    value64, grad64 = loss.loss_gradient(coef, X, y, weights)
    as32 = [a.astype(np.float32) for a in (coef, X, y, weights)]
    value32, grad32 = loss.loss_gradient(*as32)
    assert grad32.dtype == np.float32
    # float32 sums over the samples and features; the terms are of magnitude up to |x| |coef| <= 9.
    tol = summation_tolerance(np.float32, X.shape[0], coef.size) * 9
    assert value32 == pytest.approx(value64, rel=tol, abs=tol)
    np.testing.assert_allclose(grad32, grad64, rtol=tol, atol=tol)


def _one_hot_design(dtype: type, n_samples: int = 4000, seed: int = 0) -> np.ndarray:
    """Standardised numbers between one-hot blocks of three categorical columns (as preprocess writes a CSV's
    text columns), F-ordered as a frame's values are."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n_samples, 12))
    blocks = [np.eye(levels)[rng.integers(0, levels, n_samples)] for levels in (7, 3, 40)]
    return np.asfortranarray(np.hstack([numbers[:, :5], blocks[0], numbers[:, 5:], *blocks[1:]]).astype(dtype))


def _one_hot_problem(dtype: type, fit_intercept: bool, seed: int, positive_share: float):
    """A binary loss, a coefficient vector and the data of `_one_hot_design`, labels drawn at `positive_share`."""
    X = _one_hot_design(dtype)
    rng = np.random.default_rng(seed)
    y = (rng.random(X.shape[0]) < positive_share).astype(dtype)
    weights = np.full(X.shape[0], 1 / X.shape[0], dtype=dtype)
    loss = BinaryLogisticLoss(fit_intercept, 0.01)
    coef = (0.3 * rng.normal(size=loss.n_params(X.shape[1]))).astype(dtype)
    return loss, coef, X, y, weights


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_hessian_of_one_hot_columns_from_their_sparse_block_is_the_dense_one(fit_intercept, dtype) -> None:
    """`gradient_hessian` takes the indicator columns' sparse block (`Indicators`) on such a design; the
    dense pass (the base class's) is the reference, to the rounding of a sum over the rows."""
    from logitlab.model._indicators import Indicators
    from logitlab.model._loss import _OnePassLoss

    loss, coef, X, y, weights = _one_hot_problem(dtype, fit_intercept, seed=1, positive_share=0.3)
    grad, hessian = loss.gradient_hessian(coef, X, y, weights)
    indicators = loss._last_indicators[1]
    assert isinstance(indicators, Indicators) and indicators.binary.size == 50 and indicators.dense.size == 12
    dense_grad, dense_hessian = _OnePassLoss.gradient_hessian(
        BinaryLogisticLoss(fit_intercept, 0.01), coef, X, y, weights
    )
    tol = summation_tolerance(dtype, X.shape[0])
    assert hessian.dtype == dense_hessian.dtype == dtype
    np.testing.assert_allclose(hessian, dense_hessian, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, dense_grad, rtol=tol, atol=tol)
    loss.gradient_hessian(coef, X, y, weights)
    assert loss._last_indicators[1] is indicators, "the split is kept for the same X, not found again"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_a_pass_over_a_split_design_reads_its_blocks_and_equals_the_dense_pass(
    fit_intercept, dtype, monkeypatch
) -> None:
    """Once a solver asked for the split (`indicators`, as Newton does), the loss's passes over that very X take
    the dense columns and the sparse one-hot block (`Indicators.matvec`): loss, gradient and curvature equal the
    dense pass's to the rounding of a sum over the rows. Another X, a loss not asked, or blocks that hold too many
    of X's entries (`PASS_SHARE`), pass densely."""
    from logitlab.model._indicators import Indicators

    asked, coef, X, y, weights = _one_hot_problem(dtype, fit_intercept, seed=4, positive_share=0.4)
    assert asked.indicators(X) is not None
    products: list[str] = []
    for name in ("matvec", "add_rmatvec"):
        original = getattr(Indicators, name)
        monkeypatch.setattr(
            Indicators, name, lambda self, *a, _o=original, _n=name: products.append(_n) or _o(self, *a)
        )
    split = asked.loss_gradient_curvature(coef, X, y, weights)
    assert products == ["matvec", "add_rmatvec"]
    dense = BinaryLogisticLoss(fit_intercept, 0.01).loss_gradient_curvature(coef, X, y, weights)
    assert products == ["matvec", "add_rmatvec"], "a loss not asked for the split passes densely"
    asked.loss_gradient_curvature(coef, X.copy(order="F"), y, weights)
    assert len(products) == 2, "another X passes densely"
    monkeypatch.setattr(_loss, "PASS_SHARE", X.size // asked.indicators(X).entries() + 1)
    asked.loss_gradient_curvature(coef, X, y, weights)
    assert len(products) == 2, "blocks holding more than a PASS_SHARE-th of X's entries: a dense pass"
    tol = summation_tolerance(dtype, X.shape[0]) * 9
    assert split[0] == pytest.approx(dense[0], rel=tol, abs=tol)
    for ours, theirs in zip(split[1:], dense[1:], strict=True):
        assert ours.dtype == theirs.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


def test_the_indicator_block_counted_by_cell_is_scipys_sparse_product(monkeypatch) -> None:
    """`Indicators._indicator_block` by weighted counts over pairs of a row's ones, on rows of two to four ones
    (a category unseen in a block, a sparse 0/1 column): scipy's product, to the rounding of a sum over the rows;
    the sparse product where the pairs' table would be too big (`MAX_PAIR_CELL_BYTES`)."""
    import scipy.sparse

    from logitlab.model import _indicators

    rng = np.random.default_rng(5)
    X = _one_hot_design(np.float64)
    X[rng.random(X.shape[0]) < 0.2, 5:12] = 0.0  # the first block's category unseen in a fifth of the rows
    X = np.hstack([X, (rng.random((X.shape[0], 1)) < 0.05).astype(float)])
    split = _indicators.Indicators.of(X)
    assert split is not None and split.pair_cells is not None
    assert set(np.diff(split.B.indptr)) == {2, 3, 4}
    curvature = rng.random(X.shape[0]) / 4
    scaled = scipy.sparse.csr_array((curvature[split.rows], split.B.indices, split.B.indptr), split.B.shape)
    expected = (split.B_T @ scaled).toarray()
    tol = summation_tolerance(np.float64, X.shape[0])
    np.testing.assert_allclose(split._indicator_block(curvature, scaled), expected, rtol=tol, atol=tol)
    monkeypatch.setattr(_indicators, "MAX_PAIR_CELL_BYTES", 0)
    assert _indicators.Indicators.of(X).pair_cells is None


def test_a_dense_or_small_design_keeps_the_dense_hessian() -> None:
    from logitlab.model._indicators import Indicators

    rng = np.random.default_rng(0)
    assert Indicators.of(rng.normal(size=(4000, 60))) is None  # no 0/1 columns
    assert Indicators.of(_one_hot_design(np.float64, n_samples=200)) is None  # too small to gain
    assert Indicators.of((rng.random((4000, 60)) < 0.5).astype(float)) is None  # 0/1 but half ones


def test_a_newton_fit_on_one_hot_columns_reaches_the_dense_hessians_optimum(monkeypatch) -> None:
    from logitlab.model import LogisticRegression, _indicators

    X = _one_hot_design(np.float64)
    rng = np.random.default_rng(2)
    y = (rng.random(X.shape[0]) < 1 / (1 + np.exp(-(X[:, 0] + X[:, 6] - X[:, 20])))).astype(int)
    sparse = LogisticRegression(solver="newton", C=10.0, tol=1e-10).fit(X, y)
    monkeypatch.setattr(_indicators, "MIN_ENTRIES", X.size + 1)
    dense = LogisticRegression(solver="newton", C=10.0, tol=1e-10).fit(X, y)
    assert sparse.n_iter_ == dense.n_iter_
    np.testing.assert_allclose(sparse.coef_, dense.coef_, atol=1e-9)
    np.testing.assert_allclose(sparse.intercept_, dense.intercept_, atol=1e-9)


def test_newton_on_one_hot_columns_takes_each_hessian_from_its_iterates_own_pass(monkeypatch) -> None:
    """`Problem.hessian` forms the Hessian from the curvature the iterate's objective pass kept: one pass over X
    per Newton iterate (a line search's trials aside), not two; the fit is the one a pass of its own gives, to
    the bit (the same curvature, the same sums)."""
    from logitlab.model import LogisticRegression

    X = _one_hot_design(np.float64)
    rng = np.random.default_rng(3)
    y = (rng.random(X.shape[0]) < 1 / (1 + np.exp(-(X[:, 0] - X[:, 7] + X[:, 30])))).astype(int)
    passes: list[str] = []
    original = BinaryLogisticLoss._pass

    def counted(self, *args, **kwargs):
        passes.append("hessian" if kwargs.get("want_loss") is False else "objective")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BinaryLogisticLoss, "_pass", counted)
    fused = LogisticRegression(solver="newton", C=10.0, tol=1e-10).fit(X, y)
    assert passes.count("hessian") == 0 and fused.n_iter_ >= 3
    passes.clear()
    monkeypatch.setattr(_solvers.Problem, "hessian", lambda self, coef: self.gradient_hessian(coef)[1])
    separate = LogisticRegression(solver="newton", C=10.0, tol=1e-10).fit(X, y)
    assert passes.count("hessian") >= fused.n_iter_ - 1  # one pass of its own for each Hessian
    assert separate.n_iter_ == fused.n_iter_
    np.testing.assert_array_equal(fused.coef_, separate.coef_)
    np.testing.assert_array_equal(fused.intercept_, separate.intercept_)


def test_the_split_of_a_read_only_design_is_found_once_per_process() -> None:
    """A sweep's jobs fit the same cached folds (read-only views of pandas blocks) at every C: their split is
    found once (`_indicators.kept`); a writeable design, which may change between fits, is split every time,
    and a design equal in shape and place but held by another array is another design."""
    import pandas as pd

    from logitlab.model import _indicators

    frame = pd.DataFrame(_one_hot_design(np.float64), columns=[f"x{i}" for i in range(62)])
    first, again = frame.to_numpy(), frame.to_numpy()
    assert not first.flags.writeable and first is not again  # pandas' copy-on-write views
    split = _indicators.kept(first)
    assert split is not None and _indicators.kept(again) is split
    writeable = _one_hot_design(np.float64)
    assert _indicators.kept(writeable) is not _indicators.kept(writeable)
    other = pd.DataFrame(_one_hot_design(np.float64, seed=1), columns=frame.columns).to_numpy()
    assert _indicators.kept(other) is not split
    np.testing.assert_array_equal(_indicators.kept(other).D, other[:, _indicators.kept(other).dense])
