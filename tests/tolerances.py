"""The one place numeric tolerances come from: the dtype's machine epsilon times the size of the sum.

Why not fixed numbers: two computations of the same sum of n terms in a different order (a chunked or Dask
fit against the in-memory one, blocked passes against one block, numpy's pairwise sum against a BLAS dot,
or one BLAS kernel against another: `OPENBLAS_CORETYPE=Haswell` picks other kernels, with other blocking and
fused multiply-adds) can differ by up to about ``n * eps`` times the sum of the terms' magnitudes: twice
Higham's ``gamma_n = n u / (1 - n u)``, with the unit roundoff ``u = eps / 2`` (Accuracy and Stability of
Numerical Algorithms, 2nd ed., section 4.2). So float32 (eps 1.2e-7) summed over 3,000 rows cannot promise
1e-6, while float64 over the same rows promises 7e-13. An iterative solver starts each iteration from the
last one's rounded result, so a fitted coefficient or a later history entry carries the rounding of every
iteration before it: count the iterations too (their errors add for the contracting iterations here).

The bound is relative to the sum of magnitudes, not to the result: use it as ``rtol`` for sums of terms of
one sign (losses, probabilities) and also as ``atol`` where terms cancel (gradients, coefficients), which
suits the quantities compared here, of magnitude about 1 (weights summing to 1, standardised features).

Not for comparisons that are exact by design (a fixed seed gives bit-identical fits: those use
``array_equal``), nor for an optimiser's distance from an optimum (that is set by its ``tol``), nor for the
truncation error of finite differences.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike


def summation_tolerance(dtype: DTypeLike, *counts: int) -> float:
    """``n * eps(dtype)``, n the product of `counts`: the rows (or other terms) summed, times the iterations
    run before the compared value, ... With mixed dtypes pass the least precise one."""
    return max(math.prod(counts), 1) * float(np.finfo(dtype).eps)
