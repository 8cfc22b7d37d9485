"""The headline gate: whether the headline ΔV/V0 at the headline thickness can speak for the claim,
and the per-seed statistics it reads.

The reasons and their bounds: docs/metrics.md, "When the headline is not judged".
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...metrics import expansion as ex
from .params import ExpansionParams

#: A cross-check volume (hull, probe) whose ΔV/V0 exceeds the chosen method's by more than this many
#: % points is flagged in the method line, and at the headline thickness withholds the headline.
CROSS_CHECK_MARGIN_PERCENT = 2.0


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error) over seeds (`ex.mean_and_stderr`; NaN stderr for one value)."""
    return ex.mean_and_stderr(np.asarray(values, dtype=float))


def last_half_change(row: dict[str, Any]) -> float:
    """ΔV/V0 at the end minus half-way through the last relaxation of one (t, seed) (a fraction)."""
    last = row["stages"][-1]
    return float(last["particle_dv_over_v0"] - last["particle_dv_over_v0_half_relaxed"])


def largest_change(changes: Sequence[float]) -> float:
    """The value of largest magnitude (sign kept) among per-seed changes; NaN if any is NaN (a change
    not measured counts as the worst). ValueError when empty."""
    v = np.asarray(changes, dtype=float)
    if v.size == 0:
        raise ValueError("no changes given")
    if np.any(np.isnan(v)):
        return float("nan")
    return float(v[np.argmax(np.abs(v))])


def cross_check_excess(dv: Sequence[float], cross_check_dv: dict[str, Sequence[float]]) -> dict[str, float]:
    """Per cross-check method: its mean ΔV/V0 over seeds minus the chosen method's (`dv`), fractions
    (the `particle_dv_cross_check_excess_percent` of each method, ÷ 100)."""
    base = float(np.mean(np.asarray(dv, dtype=float)))
    return {m: float(np.mean(np.asarray(v, dtype=float))) - base for m, v in cross_check_dv.items()}


def beside_limit(value: float, limit: float, digits: int, sign: str = "") -> str:
    """`value` to `digits` significant digits, more (up to 12) while |value| would read as `limit`,
    which it does not equal: a change of 0.2504 beside "limit 0.25" must not print as 0.25."""
    for d in range(digits, 13):
        text = f"{value:{sign}.{d}g}"
        if abs(float(text)) != limit or abs(value) == limit:
            return text
    return text


def headline_gate(p: ExpansionParams, x_reached: Sequence[float], last_half_change: Sequence[float],
                  dv: Sequence[float], bare_dv: Sequence[float] | None = None,
                  cross_check_dv: dict[str, Sequence[float]] | None = None) -> str | None:
    """Why the headline ΔV/V0 cannot speak for the claim ("; "-joined reasons), or None when it can.

    Args (one value per seed, at the headline thickness; ΔV/V0 and changes as fractions):
        x_reached: Li per core Si reached.
        last_half_change: ΔV/V0 at the end minus half-way through the last relaxation.
        dv: ΔV/V0 by `volume_method`.
        bare_dv: ΔV/V0 of the bare particle (t = 0), or None when the task ran none.
        cross_check_dv: the other volume methods' ΔV/V0 (method → per-seed values), or None.

    Reasons, in this order: Li short of `min_x_fraction` × target_x; not converged (a change above
    `max_last_half_change_percent`, or not measured); shrinking (mean + 2 stderr < 0); a cross-check
    above the chosen method by more than CROSS_CHECK_MARGIN_PERCENT; the positive control failed
    (`min_bare_dv_percent`, read only where the mean is below `claim_limit_percent`). Why each:
    docs/metrics.md, "When the headline is not judged".
    """
    reasons = [_short_of_li(p, x_reached), _not_converged(p, last_half_change)]
    mean, se = mean_se(dv)
    reasons += [_shrunk(mean, se), _cross_check_above(p, mean, cross_check_excess(dv, cross_check_dv or {})),
                _positive_control_failed(p, mean, bare_dv)]
    return "; ".join(r for r in reasons if r) or None


def _short_of_li(p: ExpansionParams, x_reached: Sequence[float]) -> str | None:
    need = p.min_x_fraction * p.target_x
    if not min(x_reached) < need:
        return None
    return (f"x_reached = {beside_limit(min(x_reached), need, 3)} Li/Si (lowest seed) is below "
            f"min_x_fraction × target_x = {need:.3g}: the particle holds less Li than the claim is about")


def _not_converged(p: ExpansionParams, changes: Sequence[float]) -> str | None:
    worst = 100.0 * largest_change(changes)
    if abs(worst) <= p.max_last_half_change_percent:
        return None
    return (f"ΔV/V0 still moved by {beside_limit(worst, p.max_last_half_change_percent, 2, '+')} % "
            f"points over the second half of the last relaxation "
            f"(largest over seeds; limit max_last_half_change_percent = "
            f"{p.max_last_half_change_percent:g}): not converged")


def _shrunk(mean: float, se: float) -> str | None:
    shrunk = ("a lithiated particle smaller than its Li-free control points to an unrelaxed shell or a "
              "broken measurement")
    if np.isfinite(se) and mean + 2.0 * se < 0:
        return f"ΔV/V0 = {100 * mean:+.3g} % is below 0 by more than 2 standard errors: {shrunk}"
    if not np.isfinite(se) and mean < 0:
        return f"ΔV/V0 = {100 * mean:+.3g} % is below 0 (one seed: no standard error): {shrunk}"
    return None


def _cross_check_above(p: ExpansionParams, mean: float, excess: dict[str, float]) -> str | None:
    over = [m for m, e in excess.items() if not 100.0 * e <= CROSS_CHECK_MARGIN_PERCENT]
    if not over:
        return None
    seen = ", ".join(f"{m} {100 * (mean + excess[m]):+.3g} % (+{100 * excess[m]:.3g} points)" for m in over)
    return (f"cross-check ΔV/V0 above '{p.volume_method}' ({100 * mean:+.3g} %) by more than "
            f"CROSS_CHECK_MARGIN_PERCENT = {CROSS_CHECK_MARGIN_PERCENT:g} points: {seen} (means "
            f"over seeds): material outside the measured surface (e.g. Li that left the shell) or a "
            f"non-spherical swelling, which '{p.volume_method}' does not see")


def _positive_control_failed(p: ExpansionParams, mean: float, bare_dv: Sequence[float] | None) -> str | None:
    if not (p.min_bare_dv_percent > 0 and p.headline_t > 0 and 100.0 * mean < p.claim_limit_percent):
        return None
    if not bare_dv:
        return (f"no bare particle (t = 0 is not among shell_thicknesses_nm): nothing shows that the "
                f"unshelled core swells (positive control min_bare_dv_percent = "
                f"{p.min_bare_dv_percent:g}; set it to 0 to judge without it)")
    b_mean, b_se = mean_se(bare_dv)
    low = b_mean - 2.0 * b_se if np.isfinite(b_se) else b_mean
    if 100.0 * low >= p.min_bare_dv_percent:
        return None
    how = (f"{100 * b_mean:+.3g} ± {100 * b_se:.2g} %, mean − 2 stderr {100 * low:+.3g} %"
           if np.isfinite(b_se) else f"{100 * b_mean:+.3g} % (one seed)")
    return (f"the bare particle (t = 0) swelled by only {how}, below the positive control "
            f"min_bare_dv_percent = {p.min_bare_dv_percent:g} %: where the unshelled core "
            f"hardly grows, a small ΔV/V0 with a shell says nothing about the shell")
