"""The analysis of a paired study (``python -m training study``): effects, intervals, verdicts.

Every effect is a paired difference, averaged within each config, then over configs, with an
interval over configs (``study_stats``): a cluster t-interval, which keeps its coverage with few
configs, or with the study file's ``"interval": "bootstrap"`` a percentile cluster bootstrap:

- **averaging**: each averager's weights minus the raw weights of the same arm (pooled over
  seeds and dropout rates), per target;
- **dropout**: each rate's raw weights minus the rate-0 arm of the same config and seed, per target;
- **noise** (the study's mechanism for averaging): the averaging effect with sampled targets minus
  the same with exact targets, per config, seed and dropout rate. Averaging against gradient noise
  predicts a benefit that shrinks without the noise: a negative interaction;
- **dispersion** (the mechanism for dropout): dropout's effect on the normalised attention entropy
  beyond the training lengths. Dropout against dispersion predicts lower entropy;
- **remedy** (studies with ``variants``, such as the remedies preset): each variant's raw weights
  minus the reference variant's ('baseline'), at dropout 0, per config, seed and target, and each
  of the study file's ``contrasts`` ([a, b]: variant a minus variant b, e.g. a learned length
  scale against the final LayerNorm it stands in for). The averaging, dropout and noise effects
  are taken within the reference variant;
- **versus** (the same studies): each variant's raw weights minus each averager of the reference
  variant, per config, seed and target: does a change to training (e.g. annealing the learning
  rate to 0) do what the average does? And the same difference with sampled minus exact targets
  (does the average's edge over the variant grow with the target noise?). Reported with 95%
  intervals and a comparison word, outside the Holm family.

Each is computed for every outcome (raw and calibrated TV, ITR, accuracy, the dispersion
measures), in range and beyond. The *claims* are the beyond-range TV and calibrated-TV effects of
every averager and dropout rate per target, the noise interaction for TV and calibrated TV, and
the dispersion effect: they get Holm-corrected intervals, verdicts and a power line. The rest are
reported with plain 95% intervals.

Configs whose dropout-0 raw baseline misses the study's convergence criterion (``region``, by
default in-range TV <= 0.05, for either target) are left out and listed. Failed arms are counted
per dropout rate and target; a pair with a failed side is left out of that difference only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from interp.analysis.study_stats import (
    cluster_bootstrap,
    cluster_t,
    configs_needed,
    holm_adjusted,
    holm_levels,
    verdict,
    z_of,
)
from training import atomic
from training.experiments.study import DEFAULT_INTERVAL, DEFAULT_REGION, REFERENCE, arm_label, stratum, targets
from training.tasks.base import NOISE_FREE, NOISY

PARTS = ("in_range", "beyond")
CLAIM_MEASURES = ("tv", "cal_tv")
"""The claim measures of a study file without ``deltas``: each takes the file's ``delta``."""
HIGHER_IS_BETTER = ("legal_top1", "side_acc", "pos_acc")
"""Measures where the study predicts a rise (a legal move on top, knowing who moves): their
verdicts read the interval with its sign flipped, so 'supported' always means 'as predicted'."""
MECHANISM_MEASURES = ("norm_entropy", "margin_law", "sd_cv", "side_acc")
"""Measures printed in the report's mechanism section (those a task's mechanism probes record)."""
MIN_CONFIGS = 5
"""Fewer configs than this give no verdict: a percentile bootstrap over 2-4 clusters is too narrow."""
BUDGET = {"averaging": 0.01, "dropout": 0.02}
"""Interval half-widths the default study must reach on beyond-range TV and calibrated TV."""
DEFAULT_AXIS = "set length"
"""The length axis of records written before records named theirs (every one was a set study)."""


@dataclass(frozen=True)
class Cell:
    """One measured set of weights: an arm of a config (seed, dropout, target, variant) and which
    of its weights (raw or an average)."""

    config: int
    seed: int
    dropout: float
    target: str | None
    weights: str
    variant: str = REFERENCE


def arm_values(records: list[dict]) -> dict[Cell, dict[tuple[str, str], float]]:
    """{Cell: {(part, measure): value}} for arms that trained (a study without variants has only
    the reference, 'baseline')."""
    out = {}
    for r in records:
        if r.get("error") is not None:
            continue
        for w, rec in r["weights"].items():
            vals = {(part, m): float(v) for part, d in rec["summary"].items() for m, v in d.items()}
            vals.update({("model", m): float(v) for m, v in rec.get("model", {}).items()})
            out[Cell(r["config"], r["seed"], float(r["dropout"]), r.get("target"), w, r.get("variant", REFERENCE))] = (
                vals
            )
    return out


def measure_keys(values: dict) -> list[tuple[str, str]]:
    """Every (part, measure) the records hold, for every part: the claim measures first, then the
    others in the order the records list them, then the per-model measures."""
    seen = list(dict.fromkeys(m for vals in values.values() for part, m in vals if part != "model"))
    first = [m for m in CLAIM_MEASURES if m in seen]
    measures = first + [m for m in seen if m not in first]
    model = list(dict.fromkeys(m for vals in values.values() for part, m in vals if part == "model"))
    return [(part, m) for part in PARTS for m in measures] + [("model", m) for m in model]


def axis_name(records: list[dict]) -> str:
    """The length axis the records were measured along ('set length s', 'move index')."""
    return next((r["axis"] for r in records if r.get("axis")), DEFAULT_AXIS)


def convergence(values: dict, spec: dict, configs: list[int]) -> tuple[list[int], list[dict]]:
    """Configs whose baseline (dropout 0, raw weights, mean over seeds) meets the region's
    criterion for every target, and the others with the reason."""
    own = spec.get("region", {})
    region = {**DEFAULT_REGION, **own}
    if "min" in own:  # a metric where higher is better (legal top-1): a lower bound instead
        del region["max"]
    ok = (lambda y: y >= region["min"]) if "min" in region else (lambda y: y <= region["max"])
    worse = (lambda a, b: a < b) if "min" in region else (lambda a, b: a > b)
    bound = f"< {region['min']}" if "min" in region else f"> {region['max']}"
    key = (region["range"], region["metric"])
    kept, excluded = [], []
    for c in configs:
        worst = None
        for t in targets(spec):
            ys = [values[cell][key] for s in spec["seeds"] if (cell := Cell(c, s, 0.0, t, "raw")) in values]
            if not ys:
                worst = (t, float("nan"))
                break
            y = sum(ys) / len(ys)
            if not ok(y) and (worst is None or not worse(worst[1], y)):
                worst = (t, y)
        if worst is None:
            kept.append(c)
        else:
            which = f" ({worst[0]} target)" if worst[0] is not None else ""
            excluded.append(
                {"config": c, "reason": f"baseline {region['range']} {region['metric']} {worst[1]:.4f} {bound}{which}"}
            )
    return kept, excluded


def _per_config(
    configs: list[int], cells: Callable[[int], list[tuple]], diff: Callable[..., float | None]
) -> np.ndarray:
    """Mean of ``diff(*cell)`` over each config's cells (None where a side failed)."""
    out = []
    for c in configs:
        ds = [d for cell in cells(c) if (d := diff(*cell)) is not None and math.isfinite(d)]
        out.append(sum(ds) / len(ds) if ds else float("nan"))
    return np.array(out)


class _Effects:
    """The per-config series of every effect, read off the cells with named lookups."""

    def __init__(self, values: dict, spec: dict, configs: list[int]):
        self.values, self.configs = values, configs
        self.seeds = spec["seeds"]
        self.dropouts = [float(p) for p in spec["dropouts"]]

    def get(self, key, c, s, p, t, w, variant=REFERENCE) -> float | None:
        v = self.values.get(Cell(c, s, p, t, w, variant))
        return None if v is None or key not in v else v[key]

    def diff(self, key, a: dict, b: dict, c, s, p, t) -> float | None:
        """Cell ``a`` minus cell ``b`` of the same config, seed, dropout and target; ``a`` and
        ``b`` override the weights, variant, dropout or target."""
        x = self.get(key, **{"c": c, "s": s, "p": p, "t": t, "w": "raw", **a})
        y = self.get(key, **{"c": c, "s": s, "p": p, "t": t, "w": "raw", **b})
        return None if x is None or y is None else x - y

    def every_arm(self, c):
        """Every seed and dropout rate of a config (the averaging effects pool over both)."""
        return [(c, s, p) for s in self.seeds for p in self.dropouts]

    def at_dropout_0(self, c):
        return [(c, s, 0.0) for s in self.seeds]

    def series(self, cells, diff) -> np.ndarray:
        return _per_config(self.configs, cells, diff)


def effect_series(values: dict, spec: dict, configs: list[int]) -> list[dict]:
    """Every effect's per-config values, with its description (not yet bootstrapped).

    An effect is cell ``a`` minus cell ``b`` of the same config, seed, dropout and target, where
    ``a`` and ``b`` name what differs (``{"w": "ema"}``: the EMA weights instead of the raw ones;
    ``{"p": 0.1}``: dropout 0.1 instead of 0; ``{"variant": "anneal"}``), averaged over the cells
    of each config. For each measure and target: each averager minus raw (over every seed and
    dropout rate); each dropout rate minus 0, each variant minus the reference, and each variant
    minus each of the reference's averagers (over seeds, at dropout 0). With a noisy and a
    noise-free target, the noise interactions: an effect with sampled targets minus the same with
    exact ones."""
    averagers = [a["name"] for a in spec["averagers"]]
    rates = [float(p) for p in spec["dropouts"] if p != 0]
    variants = [v for v in spec.get("variants", {}) if v != REFERENCE]
    fx = _Effects(values, spec, configs)
    out = []

    def paired(family, contrast, target, key, a, b, cells):
        per_config = fx.series(cells, lambda c, s, p: fx.diff(key, a, b, c, s, p, target))
        out.append(
            {
                "family": family,
                "contrast": contrast,
                "target": target,
                "part": key[0],
                "measure": key[1],
                "per_config": per_config,
            }
        )

    def noise(family, contrast, key, a, b, cells):
        def sampled_minus_exact(c, s, p):
            g = [fx.diff(key, a, b, c, s, p, t) for t in (NOISY, NOISE_FREE)]
            return None if None in g else g[0] - g[1]

        out.append(
            {
                "family": family,
                "contrast": contrast,
                "target": "both",
                "part": key[0],
                "measure": key[1],
                "per_config": fx.series(cells, sampled_minus_exact),
            }
        )

    for key in measure_keys(values):
        for t in targets(spec):
            for avg in averagers:
                paired("averaging", f"{avg} - raw", t, key, {"w": avg}, {}, fx.every_arm)
            for rate in rates:
                paired("dropout", f"dropout {rate:g} - 0", t, key, {"p": rate}, {}, fx.at_dropout_0)
            for v in variants:
                paired("remedy", f"{v} - {REFERENCE}", t, key, {"variant": v}, {}, fx.at_dropout_0)
                for avg in averagers:
                    paired("versus", f"{v} - {REFERENCE} {avg}", t, key, {"variant": v}, {"w": avg}, fx.at_dropout_0)
                for avg in averagers:  # is an average's gain additive to the variant's (EMA on annealing)?
                    paired(
                        "within", f"{avg} - raw ({v})", t, key, {"variant": v, "w": avg}, {"variant": v}, fx.every_arm
                    )
            for a, b in spec.get("contrasts", []):  # two variants against each other, not the reference
                paired("remedy", f"{a} - {b}", t, key, {"variant": a}, {"variant": b}, fx.at_dropout_0)
            if rates:  # the pooled averaging effects mix dropout rates: the same at dropout 0 alone
                for avg in averagers:
                    paired("within", f"{avg} - raw (dropout 0)", t, key, {"w": avg}, {}, fx.at_dropout_0)
        if {NOISY, NOISE_FREE} <= set(targets(spec)):
            for avg in averagers:
                noise("noise", f"({avg} - raw) {NOISY} - {NOISE_FREE}", key, {"w": avg}, {}, fx.every_arm)
                if rates:
                    noise(
                        "within",
                        f"({avg} - raw) {NOISY} - {NOISE_FREE} (dropout 0)",
                        key,
                        {"w": avg},
                        {},
                        fx.at_dropout_0,
                    )
                for v in variants:
                    # does the average's edge over the variant grow with the target noise?
                    noise(
                        "versus",
                        f"({v} - {REFERENCE} {avg}) {NOISY} - {NOISE_FREE}",
                        key,
                        {"variant": v},
                        {"w": avg},
                        fx.at_dropout_0,
                    )
    for e in out:
        if e["family"] == "dropout" and e["measure"] == "norm_entropy":
            e["family_label"] = "dispersion"
    return out


def claim_deltas(spec: dict) -> dict[str, float]:
    """The smallest effect of interest of every claim measure: the study file's ``deltas``, else
    its ``delta`` for TV and calibrated TV. The dispersion claim (dropout on attention entropy)
    takes ``deltas['norm_entropy']``, else ``delta``; naming it in ``deltas`` makes no other
    entropy effect a claim."""
    delta = float(spec.get("delta", 0.02))
    return {m: float(d) for m, d in spec.get("deltas", {m: delta for m in CLAIM_MEASURES}).items()}


def is_claim(e: dict, measures=CLAIM_MEASURES) -> bool:
    """Beyond-range effects of every averager, dropout rate, noise interaction and variant on a
    claim measure (``measures``), and the dispersion effect."""
    if e["part"] != "beyond":
        return False
    if e["family"] in ("averaging", "dropout", "noise", "remedy") and e["measure"] in measures:
        # attention entropy is a mechanism, claimed for dropout only: a study file's
        # deltas['norm_entropy'] sets that claim's smallest effect, nothing more
        return e["measure"] != "norm_entropy" or e["family"] == "dropout"
    return e["family"] == "dropout" and e["measure"] == "norm_entropy"  # the dispersion mechanism


def oriented(e: dict, lo: float, hi: float) -> tuple[float, float]:
    """An interval turned so that below 0 is the predicted direction (flipped for a measure in
    ``HIGHER_IS_BETTER``)."""
    return (-hi, -lo) if e["measure"] in HIGHER_IS_BETTER else (lo, hi)


def stratum_labels(spec: dict, configs: list[dict] | None, kept: list[int]) -> list[str] | None:
    """Each kept config's stratum as a label ('n_heads=2'), or None for a study without strata."""
    strata = spec.get("strata") or None
    if not strata:
        return None
    return [" ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(strata, stratum(spec, configs[c]))) for c in kept]


def infer(series: list[dict], spec: dict, labels: list[str] | None, n_boot: int = 10000, seed: int = 0) -> dict:
    """Intervals, Holm levels and verdicts of effect series (``effect_series``: each a dict with
    its ``per_config`` values, one per kept config, and ``labels`` their strata or None); the
    study file says the interval (``interval``) and the smallest effects (``claim_deltas``).
    Separate from the records, so that a study can be re-inferred from its stored per-config
    values (``scripts/rereport_studies.py``)."""
    delta = float(spec.get("delta", 0.02))
    deltas = claim_deltas(spec)
    interval = spec.get("interval", DEFAULT_INTERVAL)
    effects = []
    for e in series:
        e = dict(e)
        per_config = e.pop("per_config")
        if interval == "t":
            boot = cluster_t(per_config, strata=labels)
        else:
            boot = cluster_bootstrap(per_config, n_boot=n_boot, seed=seed, strata=labels)
        lo, hi = boot.interval()
        e.update(
            estimate=boot.estimate,
            ci95=[lo, hi],
            n_configs=len(boot.per_config),
            sd=boot.sd,
            per_config=[float(x) for x in boot.per_config],
            p=boot.p_value(),
            claim=is_claim(e, deltas),
            delta=deltas.get(e["measure"], delta),
        )
        if labels:
            e["by_stratum"] = {
                g: float(np.nanmean([x for x, lab in zip(per_config, labels) if lab == g]))
                if any(lab == g and math.isfinite(x) for x, lab in zip(per_config, labels))
                else float("nan")
                for g in dict.fromkeys(labels)
            }
        e["_boot"] = boot
        effects.append(e)
    claims = [e for e in effects if e["claim"] and math.isfinite(e["estimate"])]
    levels = holm_levels([e["p"] for e in claims])
    adjusted = holm_adjusted([e["p"] for e in claims])
    for e, level, p_holm in zip(claims, levels, adjusted):
        lo, hi = e["_boot"].interval(level)
        d = e["delta"]
        e.update(
            holm_alpha=level,
            ci_holm=[lo, hi],
            p_holm=p_holm,
            within_delta=bool(-d < lo and hi < d),
            verdict=verdict(*oriented(e, lo, hi), d) if e["n_configs"] >= MIN_CONFIGS else "inconclusive",
            half_width=(hi - lo) / 2,
            needed_configs=configs_needed(e["sd"], d / 2, z_of(level)),
        )
    for e in effects:
        del e["_boot"]
    budget = {}
    for family, target_hw in BUDGET.items():
        widths = [
            (e["ci95"][1] - e["ci95"][0]) / 2
            for e in effects
            if e["family"] == family
            and e["part"] == "beyond"
            and e["measure"] in deltas
            and e["measure"] != "norm_entropy"  # the budgets are on outcome scales, not entropy
            and math.isfinite(e["estimate"])
        ]
        budget[family] = {
            "max_half_width": max(widths) if widths else None,
            "target": target_hw,
            "met": bool(widths) and max(widths) <= target_hw,
        }
    return {
        "delta": delta,
        "deltas": deltas,
        "interval": interval,
        "effects": effects,
        "budget": budget,
        "n_claims": len(claims),
    }


def analyse(
    records: list[dict],
    spec: dict,
    n_configs: int,
    n_boot: int = 10000,
    seed: int = 0,
    configs: list[dict] | None = None,
) -> dict:
    """Effects, intervals and verdicts of a study's arm records (see the module docstring).

    When ``spec`` names ``strata``, ``configs`` (the drawn values, by index) label each config's
    stratum: intervals resample within strata and each effect also gets its mean per stratum."""
    values = arm_values(records)
    present = sorted({r["config"] for r in records})
    kept, excluded = convergence(values, spec, present)
    strata = spec.get("strata") or None
    if strata and configs is None:
        raise ValueError("a stratified study needs its configs to label the strata")
    labels = stratum_labels(spec, configs, kept)
    inferred = infer(effect_series(values, spec, kept), spec, labels, n_boot, seed)
    return {
        **inferred,
        "n_configs": n_configs,
        "configs_with_results": present,
        "kept_configs": kept,
        "excluded_configs": excluded,
        "failures": failures(records, spec),
        "levels": arm_levels(values, spec, kept),
        "region": spec.get("region", {}),
        "strata": strata or [],
        "post_hoc_strata": bool(spec.get("_post_hoc_strata")),
    }


def arm_levels(values: dict, spec: dict, configs: list[int]) -> list[dict]:
    """What the effects are differences of: each variant's raw weights at dropout 0, per target,
    the mean over seeds and then over ``configs`` of every claim measure in range and beyond (and
    of an accuracy measure in ``HIGHER_IS_BETTER`` the records hold, claim or not: how well the
    arm does at all), and of the mechanism measures the records hold, beyond."""
    held = {key for vals in values.values() for key in vals}
    measures = list(claim_deltas(spec))
    measures += [m for m in HIGHER_IS_BETTER if m not in (*measures, *MECHANISM_MEASURES) and ("beyond", m) in held]
    keys = [(part, m) for part in PARTS for m in measures]
    keys += [("beyond", m) for m in MECHANISM_MEASURES if ("beyond", m) in held]

    def mean(v, t, key) -> float:
        per_config = []
        for c in configs:
            cells = [Cell(c, s, 0.0, t, "raw", v) for s in spec["seeds"]]
            ys = [values[cell][key] for cell in cells if key in values.get(cell, {})]
            if ys:
                per_config.append(sum(ys) / len(ys))
        return float(np.mean(per_config)) if per_config else float("nan")

    return [
        {"variant": v, "target": t, **{f"{part} {m}": mean(v, t, (part, m)) for part, m in keys}}
        for v in spec.get("variants", {REFERENCE: []})
        for t in targets(spec)
    ]


def failures(records: list[dict], spec: dict) -> dict:
    """Failed arms per dropout rate and target, out of how many trained."""
    total, failed = defaultdict(int), defaultdict(int)
    for r in records:
        key = arm_label(r)
        total[key] += 1
        failed[key] += r.get("error") is not None
    return {k: {"failed": failed[k], "of": total[k]} for k in total}


def _measure_name(m: str) -> str:
    names = {"tv": "TV", "norm_entropy": "attention entropy", "legal_top1": "legal top-1", "itr": "ITR"}
    for prefix, words in (
        ("cal_", "calibrated"),
        ("oracle_", "oracle-temperature"),
        ("length_", "per-length-temperature"),
    ):
        if m.startswith(prefix):
            return f"{words} {names.get(m[len(prefix) :], m[len(prefix) :])}"
    return names.get(m, m)


def _measures_text(result: dict) -> str:
    """'TV and calibrated TV': the outcome claim measures in words (the budgets' measures; attention
    entropy, a mechanism, is not one)."""
    names = [_measure_name(m) for m in result.get("deltas") or CLAIM_MEASURES if m != "norm_entropy"]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _deltas_text(result: dict) -> str:
    """'delta = 0.02', or each claim measure's own delta when they differ."""
    deltas = result.get("deltas") or {m: result["delta"] for m in CLAIM_MEASURES}
    if len(set(deltas.values())) == 1:
        return f"delta = {next(iter(deltas.values()))}"
    return "delta: " + ", ".join(f"{m} {d}" for m, d in deltas.items())


def comparison(lo: float, hi: float, delta: float) -> str:
    """A word for a two-sided comparison's interval: which side is lower, whether the whole
    interval lies inside +-delta (no practical difference), or neither (inconclusive)."""
    inside = -delta < lo and hi < delta
    if hi < 0 or lo > 0:
        side = "variant lower" if hi < 0 else "variant higher"
        return f"{side}, by less than delta" if inside else side
    return "no practical difference" if inside else "inconclusive"


def label(e: dict) -> str:
    target = "" if e["target"] in ("both", None) else f" [{e['target']}]"
    return f"{e['contrast']}{target}: {_measure_name(e['measure'])}"


def _section(effects: list[dict], title: str, word_title: str, word: Callable[[dict, float, float], str]) -> list[str]:
    """Report lines for effects outside the Holm family: each with its 95% interval and a word."""
    if not effects:
        return []
    lines = ["", title, f"{'effect':<50}{'estimate':>10}  {'interval':<22}{word_title}"]
    for e in effects:
        lo, hi = e["ci95"]
        lines.append(f"{label(e):<50}{e['estimate']:>+10.4f}  [{lo:+.4f}, {hi:+.4f}]  {word(e, lo, hi)}")
    return lines


def format_report(result: dict, study_dir: str | Path) -> str:
    lines = [
        f"paired study {study_dir}: {len(result['configs_with_results'])} of {result['n_configs']} configs trained, "
        f"{len(result['kept_configs'])} kept (baseline converged)"
    ]
    for x in result["excluded_configs"]:
        lines.append(f"  left out config {x['config']}: {x['reason']}")
    if result.get("strata"):
        how = (
            "POST HOC: the study did not balance its configs over these; read the intervals as exploratory"
            if result.get("post_hoc_strata")
            else "the design balanced its configs over these"
        )
        lines.append(f"intervals resample configs within strata of {', '.join(result['strata'])} ({how})")
    failed = {k: v for k, v in result["failures"].items() if v["failed"]}
    lines.append("failed arms: " + (", ".join(f"{k}: {v['failed']} of {v['of']}" for k, v in failed.items()) or "none"))
    if result.get("levels"):
        cols = [k for k in result["levels"][0] if k not in ("variant", "target")]
        lines += [
            "",
            "levels (raw weights, dropout 0, mean over the kept configs): what the effects are differences of",
            f"{'arm':<24}" + "".join(f"{c:>20}" for c in cols),
        ]
        for row in result["levels"]:
            arm = row["variant"] + (f", {row['target']}" if row["target"] is not None else "")
            lines.append(f"{arm:<24}" + "".join(f"{row[c]:>20.4f}" for c in cols))
    few = len(result["kept_configs"]) < MIN_CONFIGS
    lines += [
        "",
        f"claims (beyond the training lengths; Holm-corrected "
        f"{'cluster t-' if result.get('interval') == 't' else ''}intervals over {result['n_claims']} claims; "
        f"smallest effect of interest {_deltas_text(result)}):"
        + (f"\n  (fewer than {MIN_CONFIGS} configs kept: every verdict is inconclusive)" if few else ""),
        f"{'effect':<50}{'estimate':>10}  {'interval':<22}{'verdict':<22}{'sd':>8}  configs for +-delta/2",
    ]
    for e in result["effects"]:
        if not e["claim"] or not math.isfinite(e["estimate"]):
            continue
        lo, hi = e["ci_holm"]
        need = e["needed_configs"]
        mark = "*" if e["within_delta"] and e["verdict"] in ("supported", "harmful") else " "
        lines.append(
            f"{label(e):<50}{e['estimate']:>+10.4f}  [{lo:+.4f}, {hi:+.4f}]  {mark} {e['verdict']:<22}{e['sd']:>8.4f}  "
            f"{need if need is not None else 'n/a'} (have {e['n_configs']})"
        )
    lines += [
        "* the whole interval lies inside +-delta: a real effect, smaller than the smallest effect of interest",
        "",
        "mechanism measures (95% intervals, no verdict): dropout and averaging on dispersion, beyond",
        f"{'effect':<50}{'estimate':>10}  interval",
    ]
    for e in result["effects"]:
        if e["claim"] or e["part"] not in ("beyond", "model") or e["measure"] not in MECHANISM_MEASURES:
            continue
        if e["target"] not in (NOISY, "both", None) or not math.isfinite(e["estimate"]):
            continue
        lines.append(f"{label(e):<50}{e['estimate']:>+10.4f}  [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]")

    def delta_of(e: dict) -> float:
        return e.get("delta", result["delta"])

    beyond = [e for e in result["effects"] if e["part"] == "beyond" and math.isfinite(e["estimate"])]
    claim_measures = result.get("deltas", CLAIM_MEASURES)
    lines += _section(
        [e for e in beyond if e["family"] == "versus" and e["measure"] in claim_measures],
        "variants against the reference's averagers, beyond (95% intervals, outside the Holm family; "
        "negative: the variant's raw weights beat the average)",
        "comparison",
        lambda e, lo, hi: comparison(lo, hi, delta_of(e)),
    )
    lines += _section(
        [
            e
            for e in beyond
            if e["family"] in ("averaging", "noise", "remedy") and e["measure"].split("_", 1)[0] in ("oracle", "length")
        ],
        "the claims at temperatures that see beyond the training lengths (95% intervals, outside the Holm "
        "family): oracle = one temperature fit on held-out beyond-range sets, length = one per length",
        "verdict at 95%",
        lambda e, lo, hi: verdict(*oriented(e, lo, hi), delta_of(e)),
    )
    lines += _section(
        [e for e in beyond if e["family"] == "within" and e["measure"] in claim_measures],
        "averaging within each variant, and at dropout 0 alone, beyond (95% intervals, outside the Holm family)",
        "comparison",
        lambda e, lo, hi: comparison(lo, hi, delta_of(e)).replace("variant", "average"),
    )
    if result.get("strata"):
        groups = list(next((e["by_stratum"] for e in result["effects"] if e.get("by_stratum")), {}))
        lines += [
            "",
            "claims by stratum (mean of per-config differences; no intervals)",
            f"{'effect':<50}" + "".join(f"{g:>14}" for g in groups),
        ]
        for e in result["effects"]:
            if e["claim"] and math.isfinite(e["estimate"]):
                lines.append(f"{label(e):<50}" + "".join(f"{e['by_stratum'][g]:>+14.4f}" for g in groups))
    lines.append("")
    for family, b in result["budget"].items():
        hw = "n/a" if b["max_half_width"] is None else f"{b['max_half_width']:.4f}"
        lines.append(
            f"budget: widest 95% half-width of {family} effects on beyond {_measures_text(result)} {hw} "
            f"(target <= {b['target']}): {'met' if b['met'] else 'NOT met'}"
        )
    return "\n".join(lines)


# -- plots ------------------------------------------------------------------------------------

VERDICT_COLORS = {"supported": "C2", "no practical effect": "C0", "harmful": "C3", "inconclusive": "0.5"}


def plot_forest(result: dict, stem=None):
    """Every claim: estimate, Holm interval, per-config values (grey), 0 and +-delta."""
    from interp.core.visualize import finish, new_figure

    claims = [e for e in result["effects"] if e["claim"] and math.isfinite(e["estimate"])]
    fig, ax = new_figure(figsize=(9, 0.32 * len(claims) + 1.6))
    one_delta = len({e.get("delta", result["delta"]) for e in claims}) <= 1
    for i, e in enumerate(claims):
        y = len(claims) - 1 - i
        sign = -1 if e["measure"] in HIGHER_IS_BETTER else 1  # drawn so that left is as predicted
        ax.scatter([sign * x for x in e["per_config"]], [y] * len(e["per_config"]), s=8, color="0.75", zorder=1)
        lo, hi = oriented(e, *e["ci_holm"])
        color = VERDICT_COLORS[e["verdict"]]
        ax.plot([lo, hi], [y, y], color=color, lw=2.2, zorder=2)
        ax.scatter([sign * e["estimate"]], [y], color=color, zorder=3)
        if not one_delta:  # each row's own +-delta
            d = e["delta"]
            ax.plot([-d, -d], [y - 0.4, y + 0.4], color="k", lw=0.6, ls="--")
            ax.plot([d, d], [y - 0.4, y + 0.4], color="k", lw=0.6, ls="--")
    d = claims[0].get("delta", result["delta"]) if claims else result["delta"]
    ax.axvline(0, color="k", lw=0.8)
    if one_delta:
        for x in (-d, d):
            ax.axvline(x, color="k", lw=0.6, ls="--")
    names = [label(e) + (" (sign flipped)" if e["measure"] in HIGHER_IS_BETTER else "") for e in claims]
    ax.set_yticks(range(len(claims)), list(reversed(names)), fontsize=7)
    for v, c in VERDICT_COLORS.items():
        ax.plot([], [], color=c, lw=2.2, label=v)
    ax.legend(fontsize=7, loc="lower right")
    ax.set(
        xlabel="paired difference (beyond the training lengths; below 0 = as the study predicts)",
        title="claims, Holm-corrected intervals; dashed: +-delta"
        + (f" = {d}" if one_delta else " (per claim measure)")
        + "; grey: configs",
    )
    ax.grid(alpha=0.3, axis="x")
    return finish(fig, stem)


def plot_per_config(result: dict, measure: str = "cal_tv", target: str | None = NOISY, stem=None):
    """Each config's paired difference on beyond-range ``measure``, one panel per family (for
    ``target``, or the study's first target when it has not that one)."""
    from interp.core.visualize import finish, new_figure

    present = list(dict.fromkeys(e["target"] for e in result["effects"] if e["target"] != "both"))
    if target not in present and present:
        target = present[0]
    if not any(e["measure"] == measure for e in result["effects"]):  # a task without calibration
        measure = "tv"

    families = [
        (f, t)
        for f, t in (("averaging", target), ("dropout", target), ("noise", "both"), ("remedy", target))
        if any(e["family"] == f and e["target"] == t for e in result["effects"])
    ]  # only those the study has
    fig, axes = new_figure(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    axes = axes[0]
    configs = result["kept_configs"]
    for ax, (family, t) in zip(axes, families):
        for e in result["effects"]:
            if e["family"] == family and e["target"] == t and e["part"] == "beyond" and e["measure"] == measure:
                ax.plot(configs[: len(e["per_config"])], e["per_config"], marker="o", lw=0.8, label=e["contrast"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set(
            xlabel="config",
            ylabel=f"difference in beyond-range {measure}",
            title=family if t is None else f"{family} ({t})",
        )
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return finish(fig, stem)


def _length_panel(
    ax,
    curves: list[tuple[str, list[float]]],
    key: str,
    title: str,
    train_range,
    axis: str,
    legend_size: int = 6,
    **style,
) -> None:
    """One panel of TV (``key`` 'tv') or calibrated TV ('cal_tv') against the length ``axis``
    (set length, move index), log scale, training lengths shaded."""
    from interp.core.visualize import shade_training

    for label, ys in curves:
        ax.plot(range(1, len(ys) + 1), ys, label=label, **style)
    ax.set(yscale="log", xlabel=axis, ylabel=key, title=f"{title}: {'calibrated ' if key == 'cal_tv' else ''}TV")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    if train_range:  # after the legend, which names the curves only
        shade_training(ax, train_range)


def plot_config_lengths(records: list[dict], spec: dict, config: int, stem=None):
    """TV and calibrated TV against length for the arms of one config (first seed, each target):
    raw weights at every dropout rate, and every average at dropout 0."""
    from interp.core.visualize import finish, new_figure

    seed = spec["seeds"][0]
    arms = [
        r
        for r in records
        if r["config"] == config
        and r["seed"] == seed
        and r.get("error") is None
        and r.get("variant", REFERENCE) == REFERENCE
    ]
    ts = [t for t in targets(spec) if any(r.get("target") == t for r in arms)]
    keys = [k for k in ("tv", "cal_tv") if any(k in r["weights"]["raw"] for r in arms)]
    fig, axes = new_figure(len(ts), len(keys), figsize=(6.5 * len(keys), 3.8 * len(ts)), squeeze=False)
    for row, t in enumerate(ts):
        for col, key in enumerate(keys):
            curves = [
                (f"dropout {r['dropout']:g}, {w}", r["weights"][w][key])
                for r in arms
                if r.get("target") == t
                for w in (["raw"] if r["dropout"] else list(r["weights"]))
            ]
            title = f"config {config}, seed {seed}" + (f", {t} target" if t is not None else "")
            _length_panel(axes[row][col], curves, key, title, _train_range(records), axis_name(records), lw=1)
    return finish(fig, stem)


def plot_variant_lengths(records: list[dict], spec: dict, config: int, stem=None):
    """TV and calibrated TV against length of every variant's raw weights (first seed, dropout 0,
    first target) for one config: how each remedy changes the decay with length."""
    from interp.core.visualize import finish, new_figure

    seed, target = spec["seeds"][0], targets(spec)[0]
    arms = [
        r
        for r in records
        if r["config"] == config
        and r["seed"] == seed
        and r["dropout"] == 0.0
        and r.get("target") == target
        and r.get("error") is None
    ]
    keys = [k for k in ("tv", "cal_tv") if any(k in r["weights"]["raw"] for r in arms)]
    fig, axes = new_figure(1, len(keys), figsize=(6.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        curves = [(r.get("variant", REFERENCE), r["weights"]["raw"][key]) for r in arms]
        which = f", {target} target" if target is not None else ""
        _length_panel(
            ax,
            curves,
            key,
            f"config {config}, seed {seed}{which}, raw weights",
            _train_range(records),
            axis_name(records),
            legend_size=7,
            lw=1.2,
            marker=".",
        )
    return finish(fig, stem)


def _train_range(records: list[dict]):
    return next((r["train_range"] for r in records if r.get("train_range")), None)


def study_report(
    study_dir: str | Path,
    out: str | Path | None = None,
    json_path: str | Path | None = None,
    n_boot: int = 10000,
    strata: list[str] | None = None,
) -> dict:
    """Analyse the study in ``study_dir``; write the figures, the arm records
    (``records.json.gz``) and ``--json`` under ``out`` (default ``study_dir/report``); returns
    the result. A folder without its database (a committed study: ``study.json`` beside a
    ``records.json.gz``) is analysed from the records file.

    ``strata`` re-analyses a study with intervals stratified by sampled choice parameters it did
    not balance over: post hoc, and marked so in the report."""
    from interp.core.visualize import save_figure
    from training.experiments.study import check_strata
    from training.experiments.study.records import RECORDS_FILE, study_records, write_records

    study_dir = Path(study_dir)
    spec, configs, records = study_records(study_dir)
    if strata is not None:
        spec = {**spec, "strata": list(strata), "_post_hoc_strata": spec.get("strata") != list(strata)}
        # post hoc strata need not fill the cells evenly (n_configs 0 passes that check); the
        # parameters must still be sampled choices
        check_strata({**spec, "n_configs": 0}, "--strata")
    result = analyse(records, spec, len(configs), n_boot=n_boot, configs=configs)
    out = Path(out) if out else study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if any(e["claim"] and math.isfinite(e["estimate"]) for e in result["effects"]):
        files += save_figure(plot_forest(result), out / "forest")
        files += save_figure(plot_per_config(result), out / "per_config")
    if result["kept_configs"]:
        files += save_figure(plot_config_lengths(records, spec, result["kept_configs"][0]), out / "config_lengths")
        if len(spec.get("variants", {})) > 1:
            files += save_figure(
                plot_variant_lengths(records, spec, result["kept_configs"][0]), out / "variant_lengths"
            )
    write_records(out / RECORDS_FILE, records)  # every arm, so the report can be redone from the files
    files.append(out / RECORDS_FILE)
    result["files"] = [str(p) for p in files]
    text = format_report(result, study_dir)
    atomic.write_text(out / "study_report.txt", text + "\n")
    atomic.write_json(Path(json_path) if json_path else out / "study_report.json", result)
    return result
