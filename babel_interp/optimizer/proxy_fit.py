"""The start and plateau of a loss curve from the curve's shape: a saturating fit in tokens seen.

The paper's proxy ``P(l) = (alpha - l) / (alpha - beta)`` needs the loss at the start (``alpha``)
and at the plateau (``beta``). Reading the plateau off the last few evaluations makes it depend
on how long the analysis run was: a run stopped earlier has a higher "plateau", so ``P`` reaches
any target sooner. Here ``beta`` is the asymptote of a fitted curve instead,

    l(t) = beta + (alpha - beta) * exp(-(t - t0) / tau),

with ``t`` the tokens seen and ``t0`` the first evaluation. Why this form and not a power law
``beta + A (t + t0)^(-gamma)``:

* its three parameters are exactly the paper's two constants and one time scale, and under it
  the proxy is ``P(l(t)) = 1 - exp(-(t - t0) / tau)``: the tokens at which ``P`` reaches a target
  share ``s`` are ``t0 + tau * ln(1 / (1 - s))`` (``tau * ln 2`` for ``s = 0.5``, the curve's
  half-life), whatever ``alpha`` and ``beta`` are;
* its asymptote is identified as soon as the curve has bent (the run spans about one ``tau``
  or more), and does not move when the run goes on; a power law's asymptote trades off against
  its exponent and keeps sliding down with run length, the very defect this replaces;
* a power law is the better description of pretraining from scratch over many decades of
  tokens; the continual-pretraining curve of one new language, read over one analysis run, is a
  fast adaptation that levels off, which is what the exponential describes. Where a real curve
  is closer to a power law, the fitted plateau drifts with run length, and the run-length rows of
  :func:`babel_interp.optimizer.babel_tower.proxy_sensitivity` show it.

The fit is a robust least squares written with numpy: for each ``tau`` on a log grid the linear
parameters have a closed form, the best ``tau`` is refined by a parabola through its neighbours
(in ``log tau``), and Huber reweighting (scale from the median absolute deviation) keeps one
spiking evaluation from pulling the curve. The uncertainty is a residual bootstrap: the fitted
curve plus resampled residuals (centred on their median, so one spike does not shift
them all; inflated for the three fitted parameters), refit, with
percentile intervals for ``beta``, ``tau`` and so for the crossing's token count. Evaluations
stay where they were (a fixed design); resampling the evaluation points themselves would drop
the early points that pin ``alpha`` and ``tau`` in many replicates.

A curve the fit cannot identify is an error that says why, with the numbers: fewer than
:data:`MIN_POINTS` evaluations, a curve that does not fall, a drop within the noise, a curve that
has not bent within the run, or one that fell entirely before its second evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MIN_POINTS = 5
#: the run must span at least this many time constants ``tau`` for its plateau to be measured
MIN_SPAN_IN_TAU = 1.0
#: the drop ``alpha - beta`` must exceed this many residual standard deviations
MIN_DROP_IN_SD = 3.0
_GRID = 300
_HUBER_K = 1.345
_IRLS_ITERS = 6


class ProxyFitError(ValueError):
    """The loss curve does not identify the saturating fit (the message says why)."""


@dataclass(frozen=True)
class SaturatingFit:
    """``l(t) = beta + (alpha - beta) * exp(-(t - t0) / tau)`` and its bootstrap intervals.

    ``taus`` holds the bootstrap replicates' ``tau`` (the crossing's interval derives from them);
    ``n_boot_ok`` of ``n_boot`` replicates gave a falling curve. ``resid_sd``: the robust scale of
    the residuals.
    """

    alpha: float
    beta: float
    tau: float
    t0: float
    span: float
    resid_sd: float
    beta_low: float
    beta_high: float
    tau_low: float
    tau_high: float
    level: float
    n_boot: int
    n_boot_ok: int
    taus: tuple[float, ...] = field(default=(), repr=False)

    def predict(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return self.beta + (self.alpha - self.beta) * np.exp(-(t - self.t0) / self.tau)

    def crossing(self, share: float) -> float:
        """Tokens at which the fitted proxy reaches ``share`` (inf for ``share >= 1``)."""
        return _crossing(self.t0, self.tau, share)

    def crossing_interval(self, share: float) -> tuple[float, float]:
        """The bootstrap percentile interval of :meth:`crossing` (NaN without replicates)."""
        if not self.taus:
            return math.nan, math.nan
        q = (1 - self.level) / 2
        lo, hi = np.quantile(np.asarray(self.taus), [q, 1 - q])
        return _crossing(self.t0, float(lo), share), _crossing(self.t0, float(hi), share)


def _crossing(t0: float, tau: float, share: float) -> float:
    if share >= 1.0:
        return math.inf
    return t0 + tau * math.log(1.0 / (1.0 - share))


def _wls_on_grid(
    E: np.ndarray, Y: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares ``y ~ b + a * e`` for every basis row of ``E`` (G x n) and every
    series of ``Y`` (B x n, weights ``W``): ``a``, ``b`` and the weighted SSE, each B x G."""
    sw = W.sum(1, keepdims=True)
    swy = (W * Y).sum(1, keepdims=True)
    swyy = (W * Y * Y).sum(1, keepdims=True)
    swe = W @ E.T
    swee = W @ (E * E).T
    swey = (W * Y) @ E.T
    det = sw * swee - swe * swe
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(det > 0, (sw * swey - swe * swy) / det, 0.0)
    b = (swy - a * swe) / sw
    sse = swyy - 2 * b * swy - 2 * a * swey + b * b * sw + 2 * a * b * swe + a * a * swee
    return a, b, np.maximum(sse, 0.0)


def _fit_batch(
    x: np.ndarray, Y: np.ndarray, log_taus: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Robust fits of every row of ``Y`` (B x n) at design ``x`` (from 0): ``amplitude``,
    ``beta``, ``tau`` and the index of ``tau`` on the grid, each of length B."""
    B, n = Y.shape
    E = np.exp(-x[None, :] / np.exp(log_taus)[:, None])
    W = np.ones_like(Y)
    rows = np.arange(B)
    for it in range(_IRLS_ITERS):
        a, b, sse = _wls_on_grid(E, Y, W)
        k = np.argmin(sse, axis=1)
        # A parabola through the best grid point and its neighbours, in log tau.
        km = np.clip(k, 1, len(log_taus) - 2)
        s0, s1, s2 = sse[rows, km - 1], sse[rows, km], sse[rows, km + 1]
        h = log_taus[1] - log_taus[0]
        curv = s0 - 2 * s1 + s2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curv > 0, 0.5 * (s0 - s2) / curv, 0.0)
        shift = np.where((k == km), np.clip(shift, -1.0, 1.0), 0.0)
        log_tau = log_taus[km] + shift * h
        log_tau = np.where(k == km, log_tau, log_taus[k])
        e = np.exp(-x[None, :] / np.exp(log_tau)[:, None])
        amp, beta, _ = _wls_rows(e, Y, W)
        if it == _IRLS_ITERS - 1:
            break
        r = Y - beta[:, None] - amp[:, None] * e
        scale = 1.4826 * np.median(np.abs(r - np.median(r, 1, keepdims=True)), 1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            W = np.where(
                (scale > 0) & (np.abs(r) > _HUBER_K * scale),
                _HUBER_K * scale / np.abs(r),
                1.0,
            )
    return amp, beta, np.exp(log_tau), k


def _wls_rows(
    e: np.ndarray, Y: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares ``y ~ b + a * e`` row by row (``e``, ``Y``, ``W``: B x n)."""
    sw, swe, swee = W.sum(1), (W * e).sum(1), (W * e * e).sum(1)
    swy, swey = (W * Y).sum(1), (W * e * Y).sum(1)
    det = sw * swee - swe * swe
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(det > 0, (sw * swey - swe * swy) / det, 0.0)
    b = (swy - a * swe) / sw
    r = Y - b[:, None] - a[:, None] * e
    return a, b, (W * r * r).sum(1)


def fit_saturating(
    tokens: np.ndarray,
    losses: np.ndarray,
    language: str = "",
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> SaturatingFit:
    """Fit ``l(t) = beta + (alpha - beta) exp(-(t - t0) / tau)`` to a loss curve (tokens seen
    against loss, finite points only), with residual-bootstrap intervals.

    Raises :class:`ProxyFitError` naming ``language`` and the numbers when the curve does not
    identify the fit (see the module docstring).
    """
    who = f"the loss curve of {language!r}" if language else "the loss curve"
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    n = int(t.size)
    if n < MIN_POINTS:
        raise ProxyFitError(
            f"{who} has {n} finite evaluations; the saturating fit (3 parameters) needs at "
            f"least {MIN_POINTS}"
        )
    t0 = float(t[0])
    x = t - t0
    span = float(x[-1])
    gaps = np.diff(x)
    gaps = gaps[gaps > 0]
    if span <= 0 or gaps.size == 0:
        raise ProxyFitError(f"{who} has no spread in tokens seen (all at {t0:.0f}): nothing to fit")
    lo, hi = math.log(float(gaps.min()) / 20), math.log(span * 20)
    log_taus = np.linspace(lo, hi, _GRID)
    amp, beta, tau, k = _fit_batch(x, y[None, :], log_taus)
    a0, b0, tau0, k0 = float(amp[0]), float(beta[0]), float(tau[0]), int(k[0])
    alpha0 = b0 + a0
    fitted = b0 + a0 * np.exp(-x / tau0)
    resid = y - fitted
    resid_sd = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
    if resid_sd == 0.0:
        resid_sd = float(np.sqrt(np.mean(resid**2)))
    if not a0 > 0:
        raise ProxyFitError(
            f"{who} did not fall: the fit gives start alpha={alpha0:.4f} and plateau "
            f"beta={b0:.4f} (evaluations from {y[0]:.4f} to {y[-1]:.4f}); the loss proxy needs "
            "a continual-pretraining curve that decreases"
        )
    if a0 < MIN_DROP_IN_SD * resid_sd:
        raise ProxyFitError(
            f"{who} is flat within its noise: the fitted drop alpha - beta = {a0:.4f} is below "
            f"{MIN_DROP_IN_SD:g} residual standard deviations ({resid_sd:.4f}); no plateau to "
            "measure progress against"
        )
    if k0 == _GRID - 1 or span < MIN_SPAN_IN_TAU * tau0:
        raise ProxyFitError(
            f"{who} has not bent within the run: the fitted time constant tau = {tau0:.4g} "
            f"tokens exceeds the run's span of {span:.4g} tokens / {MIN_SPAN_IN_TAU:g}, so the "
            f"plateau (beta = {b0:.4f}) would be an extrapolation; run the analysis longer"
        )
    if k0 == 0:
        raise ProxyFitError(
            f"{who} fell entirely before its second evaluation (fitted tau = {tau0:.4g} tokens, "
            f"first gap {float(gaps.min()):.4g}): the time scale is not resolved; evaluate "
            "earlier checkpoints"
        )
    taus: tuple[float, ...] = ()
    betas = np.array([])
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        centred = (resid - np.median(resid)) * math.sqrt(n / (n - 3))
        Y = fitted[None, :] + rng.choice(centred, size=(n_boot, n), replace=True)
        bamp, bbeta, btau, _ = _fit_batch(x, Y, log_taus)
        good = bamp > 0
        taus = tuple(float(v) for v in btau[good])
        betas = bbeta[good]
    q = (1 - level) / 2
    if betas.size:
        beta_lo, beta_hi = (float(v) for v in np.quantile(betas, [q, 1 - q]))
        tau_lo, tau_hi = (float(v) for v in np.quantile(np.asarray(taus), [q, 1 - q]))
    else:
        beta_lo = beta_hi = tau_lo = tau_hi = math.nan
    return SaturatingFit(
        alpha=alpha0,
        beta=b0,
        tau=tau0,
        t0=t0,
        span=span,
        resid_sd=resid_sd,
        beta_low=beta_lo,
        beta_high=beta_hi,
        tau_low=tau_lo,
        tau_high=tau_hi,
        level=level,
        n_boot=n_boot,
        n_boot_ok=len(taus),
        taus=taus,
    )
