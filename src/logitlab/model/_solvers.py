"""Solvers, update rules and learning-rate schedules, all driven by one loss object (binary or multinomial).

Every solver runs epochs (iterations for Newton and L-BFGS) and hands a consistent
(coef, objective, optimality) triple to a `TrainingMonitor`, which records it and decides when to stop.
L1 penalties are handled by proximal (soft-threshold) steps in the first-order solvers.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from logitlab.model._loss import LogisticLoss, single_threaded_blas
from logitlab.model._monitor import TrainingMonitor

ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
# Power iteration for the gradient's Lipschitz constant: stop when the estimate moves by less than this.
POWER_ITERATIONS, POWER_RTOL = 30, 1e-3
# Trust-region Newton-CG: accept a step when the actual decrease is this share of the predicted one; shrink
# the region below RHO_SHRINK, grow it above RHO_GROW (Nocedal & Wright, algorithm 4.1).
RHO_ACCEPT, RHO_SHRINK, RHO_GROW = 1e-4, 0.25, 0.75
LBFGS_MEMORY = 10
ARMIJO_C1 = 1e-4
MAX_LINE_SEARCH_HALVINGS = 40


HessianProduct = Callable[[np.ndarray], np.ndarray]


@dataclass
class Problem:
    """The data, the smooth loss and the L1 strength: everything a solver needs to know."""

    loss: LogisticLoss
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray  # sample weights normalised to sum to 1
    l1_strength: float = 0.0
    _shuffled: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _kept_curvature: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_weights(self) -> int:
        """The leading entries of ``coef`` that are penalised weights (K per feature for K > 2 classes)."""
        return self.loss.n_weights(self.n_features)

    @property
    def dtype(self) -> np.dtype:
        return self.weights.dtype

    def objective_gradient(self, coef: np.ndarray, keep_curvature: bool = False) -> tuple[float, np.ndarray]:
        """Full objective (smooth part + L1) and the gradient of the smooth part. `keep_curvature`: a Newton
        iterate, whose Hessian may come next (`hessian`); where the loss forms it from the per-sample curvature
        (a design of one-hot columns), the same pass keeps that too."""
        if keep_curvature and self.loss.indicators(self.X) is not None:
            value, grad, curvature = self.loss.loss_gradient_curvature(coef, self.X, self.y, self.weights)
            self._kept_curvature = (coef, curvature)
        else:
            value, grad = self.loss.loss_gradient(coef, self.X, self.y, self.weights)
        return value + self.l1_penalty(coef), grad

    def gradient_hessian(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the smooth part and its dense Hessian (Newton)."""
        return self.loss.gradient_hessian(coef, self.X, self.y, self.weights)

    def hessian(self, coef: np.ndarray) -> np.ndarray:
        """The dense Hessian at `coef`: from the curvature `objective_gradient` kept at this very iterate (matched
        by identity), without a pass over X of its own (a sixth of a CV sweep's fits), else from one."""
        kept = self._kept_curvature
        if kept is not None and kept[0] is coef:
            return self.loss.curvature_hessian(kept[1], self.X)
        return self.gradient_hessian(coef)[1]

    def objective_gradient_hessian_product(self, coef: np.ndarray) -> tuple[float, np.ndarray, HessianProduct]:
        """Full objective, gradient and ``v -> H @ v`` at `coef` (Newton-CG), from one pass over X."""
        value, grad, curvature = self.loss.loss_gradient_curvature(coef, self.X, self.y, self.weights)
        return value + self.l1_penalty(coef), grad, functools.partial(self.loss.hessian_product, curvature, self.X)

    def curvature_bound_product(self, vector: np.ndarray) -> np.ndarray:
        """``B @ vector`` for the matrix that bounds the Hessian everywhere (see the loss classes)."""
        return self.loss.curvature_bound_product(self.X, self.weights, vector)

    def minibatches(self, rng: np.random.RandomState, batch_size: int) -> Iterator[tuple[np.ndarray, ...]]:
        """One epoch of (X, y, weights) batches: contiguous row slices, taken in a fresh random order.

        The rows are shuffled once, at the first epoch, into a copy kept for the later ones ("shuffle once",
        which converges like reshuffling every epoch: Mishchenko et al., 2020). So a batch is a random set of
        rows, yet no epoch gathers rows: every batch is a view, read from memory once. With batch_size 1 the
        random order of the batches is itself a fresh permutation of the rows, and nothing is copied.
        The batch weights are scaled by ``n_samples / batch_size`` so that each batch gradient is an
        unbiased estimate of the full gradient.
        """
        n_samples = self.X.shape[0]
        X, y, weights = self._shuffled_once(rng) if 1 < batch_size < n_samples else (self.X, self.y, self.weights)
        starts = range(0, n_samples, batch_size)
        for index in rng.permutation(len(starts)):
            start = starts[index]
            stop = min(start + batch_size, n_samples)
            yield X[start:stop], y[start:stop], weights[start:stop] * (n_samples / (stop - start))

    def _shuffled_once(self, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._shuffled is None:
            order = rng.permutation(self.X.shape[0])
            self._shuffled = self.X[order], self.y[order], self.weights[order]
        return self._shuffled

    def l1_penalty(self, coef: np.ndarray) -> float:
        if self.l1_strength == 0.0:
            return 0.0
        return self.l1_strength * float(np.abs(coef[: self.n_weights]).sum())

    def optimality(self, coef: np.ndarray, grad: np.ndarray) -> float:
        """Max-norm of the minimum-norm subgradient: the gradient itself when there is no L1 term."""
        if self.l1_strength == 0.0:
            return float(np.abs(grad).max())
        residual = grad.copy()
        weights, grad_w = coef[: self.n_weights], grad[: self.n_weights]
        nonzero = weights != 0
        residual[: self.n_weights] = np.where(
            nonzero,
            grad_w + self.l1_strength * np.sign(weights),
            np.maximum(np.abs(grad_w) - self.l1_strength, 0.0),
        )
        return float(np.abs(residual).max())

    def prox(self, candidate: np.ndarray, step: float | np.ndarray) -> np.ndarray:
        """Soft-threshold the weights (not the intercept) by ``l1_strength * step``."""
        if self.l1_strength == 0.0:
            return candidate
        n_weights = self.n_weights
        threshold = self.l1_strength * (step[:n_weights] if isinstance(step, np.ndarray) else step)
        weights = candidate[:n_weights]
        candidate[:n_weights] = np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0.0)
        return candidate


def learning_rate_at(schedule: str, base: float, epoch: int, max_iter: int) -> float:
    """Learning rate of 0-based `epoch`.

    inverse_scaling: base / sqrt(1 + epoch); step: halved every max_iter // 10 epochs;
    cosine: base * (1 + cos(pi * epoch / max_iter)) / 2, annealing towards 0 at max_iter.
    """
    if schedule == "constant":
        return base
    if schedule == "inverse_scaling":
        return base / math.sqrt(1 + epoch)
    if schedule == "step":
        return base * 0.5 ** (epoch // max(1, max_iter // 10))
    return base * 0.5 * (1 + math.cos(math.pi * epoch / max_iter))


class UpdateRule:
    """Plain (proximal) gradient step ``prox(w - lr * g)``; subclasses add state."""

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = momentum

    def propose(self, coef: np.ndarray, grad: np.ndarray, lr: float) -> tuple[np.ndarray, float | np.ndarray]:
        """Return the point to soft-threshold and the step size the threshold scales with."""
        return coef - lr * grad, lr

    def step(self, problem: Problem, coef: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        candidate, step_size = self.propose(coef, grad, lr)
        new_coef = problem.prox(candidate, step_size)
        self.record(coef, new_coef)
        return new_coef

    def record(self, coef: np.ndarray, new_coef: np.ndarray) -> None:
        """Remember the actual (post-prox) move, so momentum keeps the proximal fixed point exact."""


class Momentum(UpdateRule):
    """Heavy ball: ``w + mu * (w - w_prev) - lr * g``."""

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__(momentum)
        self.velocity: np.ndarray | float = 0.0

    def propose(self, coef, grad, lr):
        return coef + self.momentum * self.velocity - lr * grad, lr

    def record(self, coef, new_coef):
        self.velocity = new_coef - coef


class Nesterov(Momentum):
    """Nesterov momentum in the gradient-at-current-point form of Bengio et al. (2013)."""

    def propose(self, coef, grad, lr):
        mu = self.momentum
        return coef + mu * mu * self.velocity - (1 + mu) * lr * grad, (1 + mu) * lr


class Adam(UpdateRule):
    """Adam with fixed betas (0.9, 0.999) and epsilon 1e-8; L1 uses the per-coordinate step as metric."""

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__(momentum)
        self.first: np.ndarray | float = 0.0
        self.second: np.ndarray | float = 0.0
        self.t = 0

    def propose(self, coef, grad, lr):
        self.t += 1
        self.first = ADAM_BETA1 * self.first + (1 - ADAM_BETA1) * grad
        self.second = ADAM_BETA2 * self.second + (1 - ADAM_BETA2) * grad * grad
        first_hat = self.first / (1 - ADAM_BETA1**self.t)
        second_hat = self.second / (1 - ADAM_BETA2**self.t)
        step_size = lr / (np.sqrt(second_hat) + ADAM_EPSILON)
        return coef - step_size * first_hat, step_size


class Accelerated(UpdateRule):
    """FISTA (Beck & Teboulle, 2009), Nesterov's accelerated proximal gradient, with adaptive restart.

    The gradient is taken at the extrapolated point ``coef``; the proximal step gives ``x_k`` and the next point
    is ``x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1})``. When the step ``coef - x_k`` and the momentum
    ``x_k - x_{k-1}`` make an acute angle the momentum points uphill: it is dropped (``t = 1``), the gradient
    restart of O'Donoghue & Candes (2015), which makes the method adapt to strong convexity it is not told of.
    At a step of ``1 / L`` it needs O(sqrt(L / mu)) epochs where plain steps need O(L / mu). `momentum` is unused.
    """

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__(momentum)
        self.previous: np.ndarray | None = None
        self.t = 1.0

    def step(self, problem: Problem, coef: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        point = problem.prox(coef - lr * grad, lr)
        previous, self.previous = self.previous, point
        if previous is None or float((coef - point) @ (point - previous)) > 0:
            self.t = 1.0
            return point
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * self.t * self.t))
        extrapolated = point + ((self.t - 1.0) / t_next) * (point - previous)
        self.t = t_next
        return extrapolated


UPDATE_RULES: dict[str, type[UpdateRule]] = {
    "plain": UpdateRule,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adam": Adam,
    "accelerated": Accelerated,
}


def lipschitz_step(problem: Problem) -> float:
    """``1 / L``, L the Lipschitz constant of the smooth gradient: the largest eigenvalue of the matrix that
    bounds the Hessian, by power iteration from a fixed start (deterministic; the caller's random state is not
    drawn from). Each iteration reads X once, and it stops when the estimate settles (a few iterations)."""
    n_params = problem.loss.n_params(problem.n_features)
    vector = np.random.RandomState(0).uniform(0.5, 1.5, size=n_params).astype(problem.dtype)
    vector /= np.linalg.norm(vector)
    estimate = 0.0
    for _ in range(POWER_ITERATIONS):
        product = problem.curvature_bound_product(vector)
        previous, estimate = estimate, float(vector @ product)
        norm = float(np.linalg.norm(product))
        if norm == 0.0 or abs(estimate - previous) <= POWER_RTOL * estimate:
            break
        vector = product / norm
    return 1.0 / estimate if estimate > 0 else 1.0


def gradient_descent(
    problem: Problem,
    coef: np.ndarray,
    monitor: TrainingMonitor,
    rule: UpdateRule,
    learning_rate: float,
    schedule: str,
) -> np.ndarray:
    """Full-batch (proximal) gradient descent: one ``X @ w`` and one ``X.T @ r`` per epoch.

    The objective recorded for an epoch is the one of the iterate the epoch starts from.
    """
    for epoch in range(monitor.max_iter):
        objective, grad = problem.objective_gradient(coef)
        if monitor.end_epoch(coef, objective, problem.optimality(coef, grad)):
            break
        coef = rule.step(problem, coef, grad, learning_rate_at(schedule, learning_rate, epoch, monitor.max_iter))
    return coef


def stochastic_gradient_descent(
    problem: Problem,
    coef: np.ndarray,
    monitor: TrainingMonitor,
    rule: UpdateRule,
    learning_rate: float,
    schedule: str,
    batch_size: int,
    rng: np.random.RandomState,
    running_loss: bool = False,
) -> np.ndarray:
    """Mini-batch (``batch_size=1``: per-sample) proximal gradient steps on a fresh permutation per epoch.

    The batches come from `problem.minibatches`. After every epoch the monitor gets either the full objective
    and gradient, one more pass over the data, or (`running_loss`) the mean of the batch losses seen during the
    epoch, each taken at the point its step starts from: no extra pass, as scikit-learn's SGD.
    """
    loss = problem.loss
    for epoch in range(monitor.max_iter):
        lr = learning_rate_at(schedule, learning_rate, epoch, monitor.max_iter)
        seen, total = 0, 0.0
        for X_batch, y_batch, weights_batch in problem.minibatches(rng, batch_size):
            if running_loss:
                value, grad = loss.loss_gradient(coef, X_batch, y_batch, weights_batch)
                size = X_batch.shape[0]
                seen, total = seen + size, total + size * value
            else:
                grad = loss.gradient(coef, X_batch, y_batch, weights_batch)
            coef = rule.step(problem, coef, grad, lr)
        if running_loss:
            stop = monitor.end_epoch(coef, total / seen + problem.l1_penalty(coef), math.nan)
        else:
            objective, grad = problem.objective_gradient(coef)
            stop = monitor.end_epoch(coef, objective, problem.optimality(coef, grad))
        if stop:
            break
    return coef


def _backtracking(
    problem: Problem,
    coef: np.ndarray,
    objective: float,
    grad: np.ndarray,
    direction: np.ndarray,
    keep_curvature: bool = False,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Armijo backtracking from step 1; None when no step decreases the objective enough."""
    slope = float(grad @ direction)
    step = 1.0
    for _ in range(MAX_LINE_SEARCH_HALVINGS):
        trial = coef + step * direction
        trial_objective, trial_grad = problem.objective_gradient(trial, keep_curvature)
        if trial_objective <= objective + ARMIJO_C1 * step * slope:
            return trial, trial_objective, trial_grad
        step *= 0.5
    return None


def newton(problem: Problem, coef: np.ndarray, monitor: TrainingMonitor) -> np.ndarray:
    """Damped Newton: solve ``H d = -g`` by Cholesky, then Armijo backtracking from the unit step.

    The Hessian is formed only when a step is taken, not at the iterate that meets the tolerance; on a one-hot
    design from the curvature the iterate's own pass kept (`Problem.hessian`).
    """
    objective, grad = problem.objective_gradient(coef, keep_curvature=True)
    for _ in range(monitor.max_iter):
        if monitor.end_epoch(coef, objective, problem.optimality(coef, grad)):
            break
        hessian = problem.hessian(coef)
        direction = _newton_direction(hessian, grad)
        if not float(grad @ direction) < 0:
            direction = -grad
        accepted = _backtracking(problem, coef, objective, grad, direction, keep_curvature=True)
        if accepted is None:
            break
        coef, objective, grad = accepted
    return coef


def newton_cg(problem: Problem, coef: np.ndarray, monitor: TrainingMonitor) -> np.ndarray:
    """Trust-region Newton-CG (Steihaug, 1983; TRON in LIBLINEAR, Lin, Weng & Keerthi, 2008).

    Each iteration solves ``H d = -g`` approximately by conjugate gradients inside a trust region, with
    Hessian-vector products that read X once each and never form the D x D Hessian (so it suits wide data),
    to the relative residual ``min(0.5, sqrt(||g||))`` (superlinear convergence, few products far from the
    optimum). The step is taken when the objective falls by a fair share of what the quadratic model predicts;
    the region grows or shrinks with that ratio. It starts unbounded: the usual start at ``||g||`` spent the
    first two or three iterations (full passes) walking to the region's edge, while a Newton step of the
    logistic loss is rarely too long; the first rejected step bounds it. One pass gives objective, gradient and
    curvature at a point.
    """
    objective, grad, hessian_product = problem.objective_gradient_hessian_product(coef)
    radius = math.inf
    for _ in range(monitor.max_iter):
        if monitor.end_epoch(coef, objective, problem.optimality(coef, grad)):
            break
        for _ in range(MAX_LINE_SEARCH_HALVINGS):  # a rejected step shrinks the region at least 4x
            step, predicted = _steihaug_cg(hessian_product, grad, radius)
            if not predicted > 0:
                return coef
            trial = coef + step
            trial_objective, trial_grad, trial_product = problem.objective_gradient_hessian_product(trial)
            ratio = (objective - trial_objective) / predicted
            step_norm = float(np.linalg.norm(step))
            if ratio < RHO_SHRINK:
                radius = 0.25 * step_norm
            elif ratio > RHO_GROW and step_norm >= 0.99 * radius:
                radius *= 2.0
            if ratio > RHO_ACCEPT:
                break
        else:
            return coef
        coef, objective, grad, hessian_product = trial, trial_objective, trial_grad, trial_product
    return coef


def _steihaug_cg(hessian_product: HessianProduct, grad: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """Approximately minimise the model ``g.d + d.H d / 2`` over ``||d|| <= radius`` by conjugate gradients,
    stopping at the forcing tolerance, on the region's boundary, or along a direction of non-positive
    curvature. Returns the step and the decrease the model predicts for it."""
    step = np.zeros_like(grad)
    residual = -grad  # -g - H d
    direction = residual.copy()
    residual_sq = float(residual @ residual)
    if residual_sq == 0.0:
        return step, 0.0
    stop = min(0.5, math.sqrt(math.sqrt(residual_sq))) * math.sqrt(residual_sq)
    for _ in range(grad.size):
        product = hessian_product(direction)
        curvature = float(direction @ product)
        alpha = residual_sq / curvature if curvature > 0 else math.inf
        if curvature <= 0 or np.linalg.norm(step + alpha * direction) >= radius:
            # To the region's edge; without a region yet (no curvature met along the direction), a unit step
            # along it, which the ratio test of the caller judges.
            alpha = _to_boundary(step, direction, radius) if math.isfinite(radius) else 1.0
            step += alpha * direction
            residual -= alpha * product
            break
        step += alpha * direction
        residual -= alpha * product
        new_sq = float(residual @ residual)
        if math.sqrt(new_sq) <= stop:
            break
        direction = residual + (new_sq / residual_sq) * direction
        residual_sq = new_sq
    # With r = -g - H d the model is g.d + d.H d / 2 = (g.d - r.d) / 2; its decrease is minus that.
    return step, -0.5 * float(grad @ step - residual @ step)


def _to_boundary(step: np.ndarray, direction: np.ndarray, radius: float) -> float:
    """The tau >= 0 with ``||step + tau * direction|| = radius``."""
    a, b = float(direction @ direction), float(step @ direction)
    c = float(step @ step) - radius * radius
    return (-b + math.sqrt(max(b * b - a * c, 0.0))) / a


def _newton_direction(hessian: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``-H^{-1} g``, solved in float64: a p x p solve costs nothing next to forming H, and float32 fits keep
    an accurate direction.

    Cholesky when H is positive definite; least squares when it is singular (no penalty, separable data). On
    one BLAS thread, as the Hessian's products: on a busy 2-core machine OpenBLAS's threads made the Cholesky
    of a 134 x 134 Hessian take 0.19 s (56 calls, 10.6 s of a 3-job sweep) against 0.3 ms on one thread, and at
    p = 1500 0.1 s on one thread against 1.4-2.3 s.
    """
    hessian64, grad64 = hessian.astype(np.float64), grad.astype(np.float64)
    with single_threaded_blas():
        try:
            direction = scipy.linalg.cho_solve(scipy.linalg.cho_factor(hessian64), -grad64)
        except np.linalg.LinAlgError:
            direction = np.linalg.lstsq(hessian64, -grad64, rcond=None)[0]
    return direction.astype(grad.dtype)


def lbfgs(problem: Problem, coef: np.ndarray, monitor: TrainingMonitor) -> np.ndarray:
    """L-BFGS: two-loop recursion over the last 10 curvature pairs, Armijo backtracking from step 1."""
    pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=LBFGS_MEMORY)
    objective, grad = problem.objective_gradient(coef)
    for _ in range(monitor.max_iter):
        if monitor.end_epoch(coef, objective, problem.optimality(coef, grad)):
            break
        direction = -_two_loop(grad, pairs)
        if not pairs:  # no curvature yet: a first step of unit max-norm
            direction /= max(1.0, float(np.abs(grad).max()))
        accepted = _backtracking(problem, coef, objective, grad, direction)
        if accepted is None:
            break
        new_coef, objective, new_grad = accepted
        s, g_diff = new_coef - coef, new_grad - grad
        curvature = float(s @ g_diff)
        if curvature > 1e-10 * float(g_diff @ g_diff):
            pairs.append((s, g_diff, 1.0 / curvature))
        coef, grad = new_coef, new_grad
    return coef


def _two_loop(grad: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """Approximate inverse Hessian times ``grad`` (Nocedal & Wright, algorithm 7.4)."""
    q = grad.copy()
    alphas = []
    for s, g_diff, rho in reversed(pairs):
        alpha = rho * float(s @ q)
        q -= alpha * g_diff
        alphas.append(alpha)
    if pairs:
        s, g_diff, _ = pairs[-1]
        q *= float(s @ g_diff) / float(g_diff @ g_diff)
    for (s, g_diff, rho), alpha in zip(pairs, reversed(alphas), strict=True):
        beta = rho * float(g_diff @ q)
        q += (alpha - beta) * s
    return q
