"""Statistics for experiments that judge themselves (pure: no I/O, unit-tested against scipy).

The operator looks at the data every `interval`, so a fixed-horizon test (a z-test at 5%, repeated)
would promote an A/A experiment far more often than 5% of the time. The success metric therefore
uses an always-valid test: the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis
& Walsh, "Always Valid Inference" (2017/2022), with a normal mixing distribution N(0, tau^2) over the
effect. For an estimate `d` of the effect with variance `V` (asymptotically normal, by the CLT:
the asymptotic confidence sequences of Waudby-Smith et al., "Time-uniform central limit theory and
asymptotic confidence sequences", 2021/2024), the mixture likelihood ratio against `effect = d0` is

    L(d0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - d0)^2 / (2 V (V + tau^2)))

and {d0 : L(d0) < 1/alpha} is a confidence sequence: with probability at least 1 - alpha it covers
the true effect at every look at once (Ville's inequality). Solving for d0 gives the half-width

    h = sqrt( V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)) ).

`tau` is fixed before any data: the boundary is tightest when `V` equals the variance a fixed-horizon
test with the same alpha and power would reach at its planned sample size for the effect
`planning_effect` (Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence
sequences", 2021, eq. 3.7; the same tuning GrowthBook uses): tau^2 = k * V*, k = -2 ln a + ln(1 - 2 ln a),
V* = (planning_effect / (z_{1-a/2} + z_power))^2.

Effects are relative (candidate mean / baseline mean - 1, variance by the delta method) or absolute
(candidate mean - baseline mean). Rates are means of 0/1 outcomes, so one `Summary` (n, sum, sum of
squares) serves both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist
from typing import Final

DEFAULT_ALPHA: Final = 0.05
DEFAULT_POWER: Final = 0.8
DEFAULT_PLANNING_EFFECT: Final = 0.05  # 5% relative, when no minimumEffect is given
DEFAULT_SRM_ALPHA: Final = 0.001  # sample-ratio checks run at every look: a strict level keeps them quiet
_NORMAL: Final = NormalDist()


class EffectScale(StrEnum):
    """How candidate and baseline are compared."""

    RELATIVE = "Relative"  # candidate / baseline - 1
    ABSOLUTE = "Absolute"  # candidate - baseline


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of one arm: n observations, their sum and the sum of their squares.

    For a rate (0/1 outcomes) `total_sq == total`; `Summary.rate(n, k)` builds one.
    """

    n: int
    total: float
    total_sq: float

    @classmethod
    def rate(cls, n: int, successes: float) -> Summary:
        return cls(n, successes, successes)

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(len(values), math.fsum(values), math.fsum(v * v for v in values))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 in the denominator); 0 for fewer than two observations."""
        if self.n < 2:
            return 0.0
        centred = self.total_sq - self.total * self.total / self.n
        return max(0.0, centred / (self.n - 1))

    @property
    def mean_variance(self) -> float:
        """Variance of the mean (variance / n)."""
        return self.variance / self.n if self.n else math.inf


@dataclass(frozen=True)
class Effect:
    """An estimated effect of the candidate against the baseline and the variance of the estimate."""

    estimate: float
    variance: float
    scale: EffectScale


def effect(baseline: Summary, candidate: Summary, scale: EffectScale) -> Effect | None:
    """The candidate's effect, or None when it cannot be estimated (no data, a zero baseline mean
    for a relative effect)."""
    if baseline.n == 0 or candidate.n == 0:
        return None
    mb, mc = baseline.mean, candidate.mean
    vb, vc = baseline.mean_variance, candidate.mean_variance
    if scale == EffectScale.ABSOLUTE:
        return Effect(mc - mb, vb + vc, scale)
    if mb == 0:
        return None
    # Delta method for f(mc, mb) = mc / mb - 1: grad = (1/mb, -mc/mb^2), arms independent.
    return Effect(mc / mb - 1.0, vc / (mb * mb) + vb * mc * mc / mb**4, scale)


def z_quantile(p: float) -> float:
    return _NORMAL.inv_cdf(p)


def mixture_variance(alpha: float, power: float, planning_effect: float) -> float:
    """tau^2 of the normal mixture: tightest where a fixed-horizon test would stop (module docstring)."""
    if not (0 < alpha < 1 and 0 < power < 1 and planning_effect > 0):
        raise ValueError("alpha and power must be in (0, 1) and the planning effect positive")
    planned = (planning_effect / (z_quantile(1 - alpha / 2) + z_quantile(power))) ** 2
    k = -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))
    return k * planned


def log_likelihood_ratio(estimate: float, variance: float, tau2: float, null: float = 0.0) -> float:
    """ln L(null) of the mSPRT with a N(0, tau2) mixture (module docstring)."""
    if variance <= 0:
        return math.inf if estimate != null else 0.0
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * (estimate - null) ** 2 / (
        2 * variance * (variance + tau2)
    )


def always_valid_p(estimate: float, variance: float, tau2: float, null: float = 0.0) -> float:
    """min(1, 1/L(null)): the always-valid p-value of this look."""
    llr = log_likelihood_ratio(estimate, variance, tau2, null)
    return 1.0 if llr <= 0 else math.exp(-llr)


def half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the (1 - alpha) confidence sequence at an estimate with this variance."""
    if variance <= 0:
        return 0.0
    if math.isinf(variance):
        return math.inf
    return math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )


@dataclass(frozen=True)
class Interval:
    """A confidence sequence at the current look: lower <= true effect <= upper, valid at every look."""

    estimate: float
    lower: float
    upper: float
    p_value: float  # always-valid p-value for "no effect" (effect == 0)


def confidence_sequence(e: Effect, *, alpha: float, tau2: float) -> Interval:
    h = half_width(e.variance, tau2, alpha)
    return Interval(e.estimate, e.estimate - h, e.estimate + h, always_valid_p(e.estimate, e.variance, tau2))


def mean_interval(arm: Summary, *, alpha: float, tau2: float) -> tuple[float, float] | None:
    """A confidence sequence for one arm's mean (shown per arm in status); tau2 in the arm's own
    units is taken relative to the mean (the planning effect is relative)."""
    if arm.n == 0:
        return None
    scale = tau2 * arm.mean * arm.mean if arm.mean else tau2
    h = half_width(arm.mean_variance, scale, alpha) if scale > 0 else 0.0
    return arm.mean - h, arm.mean + h


def fixed_horizon_z(e: Effect) -> float:
    """The z statistic of a fixed-horizon (Welch) test of `effect == 0`: only for comparison (the
    benchmark's naive repeated test); decisions never use it."""
    if e.variance <= 0:
        return math.inf if e.estimate else 0.0
    return e.estimate / math.sqrt(e.variance)


def two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def fixed_horizon_samples(
    baseline_mean: float, variance: float, *, alpha: float, power: float, relative_effect: float
) -> int:
    """Per-arm sample size of a two-sided fixed-horizon test that detects `relative_effect` with
    `power` (equal arms, common per-observation `variance`): the benchmark's comparison."""
    delta = abs(relative_effect * baseline_mean)
    if delta == 0:
        raise ValueError("a zero effect needs infinitely many samples")
    z = z_quantile(1 - alpha / 2) + z_quantile(power)
    return math.ceil(2 * variance * z * z / (delta * delta))


@dataclass(frozen=True)
class SampleRatio:
    """Chi-square goodness of fit of the observed arm counts against the configured split."""

    baseline: int
    candidate: int
    expected_share: float  # the candidate's configured share, 0..1
    chi2: float
    p_value: float

    @property
    def observed_share(self) -> float:
        total = self.baseline + self.candidate
        return self.candidate / total if total else math.nan


def sample_ratio(baseline: int, candidate: int, candidate_share: float) -> SampleRatio:
    """One degree of freedom: p = erfc(sqrt(chi2 / 2))."""
    total = baseline + candidate
    if total == 0 or not 0 < candidate_share < 1:
        return SampleRatio(baseline, candidate, candidate_share, 0.0, 1.0)
    expected_c = total * candidate_share
    expected_b = total - expected_c
    chi2 = (candidate - expected_c) ** 2 / expected_c + (baseline - expected_b) ** 2 / expected_b
    return SampleRatio(baseline, candidate, candidate_share, chi2, math.erfc(math.sqrt(chi2 / 2)))


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_PLANNING_EFFECT",
    "DEFAULT_POWER",
    "DEFAULT_SRM_ALPHA",
    "Effect",
    "EffectScale",
    "Interval",
    "SampleRatio",
    "Summary",
    "always_valid_p",
    "confidence_sequence",
    "effect",
    "fixed_horizon_samples",
    "fixed_horizon_z",
    "half_width",
    "log_likelihood_ratio",
    "mean_interval",
    "mixture_variance",
    "sample_ratio",
    "two_sided_p",
    "z_quantile",
]
