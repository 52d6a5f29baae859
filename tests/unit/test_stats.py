"""The experiment statistics against an independent oracle (scipy): the mixture likelihood ratio by
numerical integration, the confidence-sequence boundary by root finding, Welch's z, chi-square."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import stats as sps

from promptalias.reconcile.stats import (
    EffectScale,
    Summary,
    always_valid_p,
    confidence_sequence,
    effect,
    fixed_horizon_samples,
    fixed_horizon_z,
    half_width,
    log_likelihood_ratio,
    mixture_variance,
    sample_ratio,
    two_sided_p,
)


def oracle_likelihood_ratio(estimate: float, variance: float, tau2: float, null: float) -> float:
    """L(null) = integral of N(d; theta, V) N(theta; null, tau2) dtheta / N(d; null, V)."""
    sd, tau = math.sqrt(variance), math.sqrt(tau2)

    base = sps.norm.logpdf(estimate, null, sd)

    def integrand(theta: float) -> float:
        return float(np.exp(sps.norm.logpdf(estimate, theta, sd) - base + sps.norm.logpdf(theta, null, tau)))

    low, high = min(null - 12 * tau, estimate - 12 * sd), max(null + 12 * tau, estimate + 12 * sd)
    value, _ = integrate.quad(integrand, low, high, points=[null, estimate], limit=400)
    return float(value)


@pytest.mark.parametrize(
    ("estimate", "variance", "tau2", "null"),
    [(0.0, 1e-3, 1e-3, 0.0), (0.05, 4e-4, 2e-3, 0.0), (-0.1, 1e-3, 5e-4, 0.02), (0.2, 1e-2, 1e-3, 0.1)],
)
def test_likelihood_ratio_matches_numerical_integration(
    estimate: float, variance: float, tau2: float, null: float
) -> None:
    ours = math.exp(log_likelihood_ratio(estimate, variance, tau2, null))
    assert ours == pytest.approx(oracle_likelihood_ratio(estimate, variance, tau2, null), rel=1e-6)


@pytest.mark.parametrize(
    ("variance", "tau2", "alpha"), [(1e-3, 1e-3, 0.05), (4e-4, 2e-3, 0.01), (1e-2, 1e-4, 0.1)]
)
def test_boundary_is_where_the_ratio_reaches_one_over_alpha(
    variance: float, tau2: float, alpha: float
) -> None:
    h = half_width(variance, tau2, alpha)

    def gap(d: float) -> float:
        return math.log(oracle_likelihood_ratio(d, variance, tau2, 0.0)) - math.log(1 / alpha)

    root = optimize.brentq(gap, 0.5 * h, 2 * h)
    assert h == pytest.approx(root, rel=1e-5)
    # at the boundary the always-valid p-value is alpha
    assert always_valid_p(h, variance, tau2) == pytest.approx(alpha, rel=1e-6)


def test_confidence_sequence_is_wider_than_the_fixed_horizon_interval() -> None:
    e = effect(Summary.rate(5000, 500), Summary.rate(5000, 560), EffectScale.ABSOLUTE)
    assert e is not None
    tau2 = mixture_variance(0.05, 0.8, 0.01)
    cs = confidence_sequence(e, alpha=0.05, tau2=tau2)
    fixed = sps.norm.ppf(0.975) * math.sqrt(e.variance)
    assert cs.upper - cs.estimate > fixed
    assert cs.lower < cs.estimate < cs.upper


def test_summary_and_welch_z_match_scipy() -> None:
    rng = random.Random(7)
    a = [rng.gauss(1.0, 0.3) for _ in range(400)]
    b = [rng.gauss(1.05, 0.4) for _ in range(300)]
    sa, sb = Summary.of(a), Summary.of(b)
    assert sa.mean == pytest.approx(np.mean(a))
    assert sa.variance == pytest.approx(np.var(a, ddof=1))
    e = effect(sa, sb, EffectScale.ABSOLUTE)
    assert e is not None
    welch = sps.ttest_ind(b, a, equal_var=False)
    assert fixed_horizon_z(e) == pytest.approx(welch.statistic, rel=1e-9)
    # large samples: the normal p-value is close to Welch's t p-value
    assert two_sided_p(fixed_horizon_z(e)) == pytest.approx(welch.pvalue, rel=0.05)


def test_relative_effect_variance_is_the_delta_method() -> None:
    base, cand = Summary.rate(2000, 200), Summary.rate(1000, 130)
    e = effect(base, cand, EffectScale.RELATIVE)
    assert e is not None
    assert e.estimate == pytest.approx(0.13 / 0.1 - 1)

    def f(x: np.ndarray) -> float:
        return float(x[0] / x[1] - 1)

    point = np.array([cand.mean, base.mean])
    grad = optimize.approx_fprime(point, f, 1e-7)
    cov = np.diag([cand.mean_variance, base.mean_variance])
    assert e.variance == pytest.approx(float(grad @ cov @ grad), rel=1e-4)


def test_no_effect_without_data_or_with_a_zero_relative_baseline() -> None:
    assert effect(Summary(0, 0, 0), Summary.rate(10, 1), EffectScale.ABSOLUTE) is None
    assert effect(Summary.rate(10, 0), Summary.rate(10, 1), EffectScale.RELATIVE) is None
    assert effect(Summary.rate(10, 0), Summary.rate(10, 1), EffectScale.ABSOLUTE) is not None


def test_mixture_variance_is_near_optimal_at_the_planned_variance() -> None:
    """Howard et al.'s tuning: at the variance a fixed-horizon test reaches at its planned sample size,
    tau^2 = k V* gives (within 0.1%) the narrowest boundary over all tau^2 (found numerically)."""
    alpha, power, delta = 0.05, 0.8, 0.05
    tau2 = mixture_variance(alpha, power, delta)
    planned = (delta / (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))) ** 2
    best = optimize.minimize_scalar(
        lambda log_t: half_width(planned, math.exp(log_t), alpha),
        bounds=(math.log(tau2) - 5, math.log(tau2) + 5),
        method="bounded",
    )
    assert half_width(planned, tau2, alpha) == pytest.approx(best.fun, rel=1e-3)
    assert math.exp(best.x) == pytest.approx(tau2, rel=0.1)


def test_mixture_variance_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="alpha"):
        mixture_variance(0.0, 0.8, 0.1)
    with pytest.raises(ValueError, match="planning effect"):
        mixture_variance(0.05, 0.8, 0.0)


@pytest.mark.parametrize(
    ("b", "c", "share"), [(5000, 5000, 0.5), (9100, 900, 0.1), (800, 200, 0.1), (7, 3, 0.25)]
)
def test_sample_ratio_matches_scipy_chisquare(b: int, c: int, share: float) -> None:
    ours = sample_ratio(b, c, share)
    total = b + c
    ref = sps.chisquare([b, c], [total * (1 - share), total * share])
    assert ours.chi2 == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_sample_ratio_without_data_is_no_evidence() -> None:
    assert sample_ratio(0, 0, 0.5).p_value == 1.0
    assert sample_ratio(10, 0, 0.0).p_value == 1.0


def test_fixed_horizon_samples_matches_the_textbook_formula() -> None:
    n = fixed_horizon_samples(0.1, 0.09, alpha=0.05, power=0.8, relative_effect=0.1)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert n == math.ceil(2 * 0.09 * z * z / 0.01**2)
    with pytest.raises(ValueError, match="zero effect"):
        fixed_horizon_samples(0.1, 0.09, alpha=0.05, power=0.8, relative_effect=0.0)


def test_aa_simulation_keeps_false_positives_below_alpha() -> None:
    """A small Monte Carlo check of the guarantee (the full one is benchmarks/analysis_sim.py):
    200 A/A runs, 20 looks each; the confidence sequence excludes 0 at some look in <= alpha of them,
    where the naive repeated z-test does so far more often."""
    rng = np.random.default_rng(11)
    alpha, tau2 = 0.05, mixture_variance(0.05, 0.8, 0.1)
    runs, looks, per_look = 200, 20, 200
    sequential = naive = 0
    for _ in range(runs):
        a = rng.binomial(per_look, 0.2, size=looks).cumsum()
        b = rng.binomial(per_look, 0.2, size=looks).cumsum()
        hit_seq = hit_naive = False
        for i in range(looks):
            n = per_look * (i + 1)
            e = effect(Summary.rate(n, float(a[i])), Summary.rate(n, float(b[i])), EffectScale.RELATIVE)
            assert e is not None
            cs = confidence_sequence(e, alpha=alpha, tau2=tau2)
            hit_seq = hit_seq or cs.lower > 0 or cs.upper < 0
            hit_naive = hit_naive or two_sided_p(fixed_horizon_z(e)) < alpha
        sequential += hit_seq
        naive += hit_naive
    assert sequential / runs <= alpha
    assert naive / runs > 2 * alpha
