"""Taylor and Padé coefficients, computed once in 50-digit arithmetic and cached.

Used by the ``"pade"`` backward (Padé of the geometric series ``1/(1−r)``) and by
:func:`gcp.mpa_sqrtm` / :func:`gcp.mtp_sqrtm` (Taylor and Padé of ``√(1−z)``).

The caches are plain dicts rather than ``functools.lru_cache``: ``torch.compile`` reads a filled
dict as constants, but would trace into an ``lru_cache`` wrapper (and from there into mpmath,
which it cannot). Every entry a traced function needs is therefore filled in eager mode: the
paper's defaults at import, other orders when options are validated (``GCPHead`` does so at
construction), and the ``"pade"`` backward's coefficients have a closed form computed in plain
Python, which the compiler folds.
"""

from __future__ import annotations

import mpmath

_DPS = 50


def _taylor(kind: str, degree: int) -> list:
    if kind == "geometric":  # 1/(1−z)
        return [mpmath.mpf(1)] * (degree + 1)
    if kind == "sqrt1m":  # √(1−z): a_k = (−1)^k binom(1/2, k)
        return [(-1) ** k * mpmath.binomial(mpmath.mpf(1) / 2, k) for k in range(degree + 1)]
    raise KeyError(kind)


_TAYLOR: dict[tuple[str, int], tuple[float, ...]] = {}
_PADE: dict[tuple[str, int, int], tuple[tuple[float, ...], tuple[float, ...]]] = {}


def taylor_coefficients(kind: str, degree: int) -> tuple[float, ...]:
    """Coefficients ``a_0 … a_degree`` of the Taylor series of ``kind`` at 0."""
    key = (kind, degree)
    if key not in _TAYLOR:
        with mpmath.workdps(_DPS):
            _TAYLOR[key] = tuple(float(a) for a in _taylor(kind, degree))
    return _TAYLOR[key]


def pade_coefficients(kind: str, m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(p_0…p_m, q_0…q_n)`` of the ``[m/n]`` Padé approximant, ``q_0 = 1``.

    Solves ``Σ_{j=1}^{n} q_j c_{k−j} = −c_k`` for ``k = m+1 … m+n`` with the Moore–Penrose
    pseudo-inverse (an SVD in 50 digits), so a singular system — the geometric series is one,
    since its approximant is ``1/(1−z)`` itself for every ``n >= 1`` — gets its minimum-norm
    solution instead of an arbitrary one. ``p_k = Σ_{j<=min(k,n)} q_j c_{k−j}``.

    For the geometric series with ``m >= n − 1`` that minimum-norm solution has a closed form,
    used directly (plain Python, so traceable): every row of the system is ``Σ_j q_j = −1``, whose
    minimum-norm solution is ``q_j = −1/n``, hence ``p_k = 1 − min(k, n)/n``.
    """
    key = (kind, m, n)
    if key not in _PADE:
        if kind == "geometric" and n >= 1 and m >= n - 1:
            _PADE[key] = (tuple(1.0 - min(k, n) / n for k in range(m + 1)), (1.0,) + (-1.0 / n,) * n)
        else:
            _PADE[key] = _pade_mp(kind, m, n)
    return _PADE[key]


def _pade_mp(kind: str, m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    with mpmath.workdps(_DPS):
        c = _taylor(kind, m + n)
        coef = lambda i: c[i] if i >= 0 else mpmath.mpf(0)  # noqa: E731
        q = [mpmath.mpf(1)]
        if n > 0:
            a = mpmath.matrix(n, n)
            b = mpmath.matrix(n, 1)
            for row, k in enumerate(range(m + 1, m + n + 1)):
                b[row] = -c[k]
                for j in range(1, n + 1):
                    a[row, j - 1] = coef(k - j)
            u, s, v = mpmath.svd_r(a)
            cutoff = max(s) * mpmath.mpf(10) ** (-(_DPS - 10))
            sol = mpmath.matrix(n, 1)
            for i in range(n):
                if s[i] > cutoff:
                    ub = sum(u[r, i] * b[r] for r in range(n))
                    for r in range(n):
                        sol[r] += v[i, r] * ub / s[i]
            q += [sol[r] for r in range(n)]
        p = [sum(q[j] * coef(k - j) for j in range(min(k, n) + 1)) for k in range(m + 1)]
        return tuple(float(x) for x in p), tuple(float(x) for x in q)


# the papers' defaults (MTP degree 10, MPA [5/5]), so that traced calls with them find constants
taylor_coefficients("sqrt1m", 10)
pade_coefficients("sqrt1m", 5, 5)
