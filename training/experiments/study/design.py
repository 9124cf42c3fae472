"""The design of a paired study: its file, its arms, its configs; nothing here trains.

A study file (``training/configs/study_*.json``) names a base config, fixed overrides, the
parameters its configs are drawn from (``params``, with optional ``strata`` to balance over), and
the arms every config trains: ``seeds`` x attention dropout ``dropouts`` x ``targets`` (the values
of the task's target axis, ``Task.target_field``) x ``variants`` (named lists of overrides, one of
them the reference 'baseline'). Every arm carries every averager (``averagers``). The claims'
measures and their smallest effects of interest are ``deltas`` (e.g. ``{"tv": 0.02,
"legal_top1": 0.02}``), or ``delta`` for TV and calibrated TV; ``interval`` is ``"t"`` (the cluster
t-interval, the default: it keeps its coverage with few configs, docs/study.md) or
``"bootstrap"`` (the percentile cluster bootstrap, too narrow below about 20 configs). ``check_spec``
checks it in full, through the run config's own validation, before anything is written;
``draw_configs`` draws the configs reproducibly from the file's seed.

An arm is named (``Arm``), and so is a cell of the analysis (``Cell`` in ``interp``): no positional
tuples. Nothing here asks which task the study runs on: the task's class says which field is its
target axis and which values it takes.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from training.errors import ConfigError
from training.experiments.runner import check_shared_keys, param_candidates, read_json, trial_config
from training.tasks import registry

SPEC_KEYS = {
    "base",
    "fixed",
    "params",
    "n_configs",
    "seed",
    "seeds",
    "dropouts",
    "targets",
    "averagers",
    "region",
    "delta",
    "deltas",
    "measure_sets",
    "max_failures",
    "note",
    "variants",
    "contrasts",
    "strata",
    "scales",
    "scale",
    "interval",
}
STUDY_FILE = "study.json"
DEFAULT_INTERVAL = "t"
"""A study file without ``interval``: the cluster t-interval over configs."""
REFERENCE = "baseline"
"""The variant every other variant is paired against (a study without ``variants`` has only it)."""
DEFAULT_REGION = {"metric": "tv", "range": "in_range", "max": 0.05}
ARM_SET = ("train.seed", "model.attn_dropout", "train.steps")
"""Settings the arms or the fixed budget set, which a study file may not sample."""


@dataclass(frozen=True)
class Arm:
    """One arm of a config: its seed, attention dropout, target (None for a task without a
    target axis) and variant (None for a study without variants: the reference alone)."""

    seed: int
    dropout: float
    target: str | None
    variant: str | None = None

    @property
    def name(self) -> str:
        """Its run folder's name: ``[variant_]s<seed>_p<dropout>[_<target>]``."""
        variant = f"{self.variant}_" if self.variant else ""
        target = f"_{self.target}" if self.target is not None else ""
        return f"{variant}s{self.seed}_p{self.dropout:g}{target}"

    def to_dict(self) -> dict:
        """The arm's fields as its records store them (``variant`` only in a study with variants)."""
        return {
            "seed": self.seed,
            "dropout": self.dropout,
            "target": self.target,
            **({"variant": self.variant} if self.variant else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Arm":
        return cls(d["seed"], float(d["dropout"]), d.get("target"), d.get("variant"))


def arm_label(record: dict) -> str:
    """'dropout 0.2, sampled[, variant]': how failures are counted and printed per arm."""
    parts = [f"dropout {float(record['dropout']):g}"]
    parts += [record["target"]] if record.get("target") is not None else []
    parts += [record["variant"]] if "variant" in record else []
    return ", ".join(parts)


def max_failures(spec: dict) -> int:
    """Failed configs after which a study stops: its own ``max_failures`` or n_configs + 5."""
    return int(spec.get("max_failures", spec["n_configs"] + 5))


def load_spec(path: str | Path, scale: str | None = None, fixed: list[str] = ()) -> dict:
    """Read and check a study file before anything is written; with ``scale``, the file at that
    scale (``scaled_spec``); ``fixed`` overrides ('section.key=value') are added after the file's
    own (later wins), e.g. the language of a formal-language study, and then checked in full."""
    spec = read_json(path, "study file")
    check_spec(spec, f"study file {path}")  # every scale included
    spec = spec if scale is None else _at_scale(spec, scale, f"study file {path}")
    if fixed:
        spec = {**spec, "fixed": list(spec.get("fixed", [])) + list(fixed)}
        check_spec(spec, f"study file {path} with --set {' '.join(fixed)}")
    return spec


STEP_KEYS = ("train.steps=", "train.eval_every=", "train.checkpoint_every=")


def with_steps(spec: dict, steps: int) -> dict:
    """A copy of a study (or suite) file whose runs train ``steps`` steps, evaluated and
    checkpointed once, at the end: its own step settings are dropped from ``fixed``, not just
    overridden, so the file reads as what it runs (benchmarks and tests shrink presets this way)."""
    fixed = [f for f in spec.get("fixed", []) if not f.startswith(STEP_KEYS)]
    return {**spec, "fixed": fixed + [f"{k}{steps}" for k in STEP_KEYS]}


SCALE_KEYS = {"fixed", "params", "n_configs", "seeds", "region", "measure_sets", "note"}
"""What a scale may change: its ``fixed`` settings are added after the file's (later wins); the
other keys replace the file's."""


def scaled_spec(spec: dict, scale: str, where: str = "study file") -> dict:
    """The study file at one of its ``scales`` (e.g. ``"gpu"``: a full-size model, more data and
    steps), checked in full; the result names its scale and holds no other."""
    out = _at_scale(spec, scale, where)
    check_spec(out, f"{where}, scale {scale!r}")
    return out


def _at_scale(spec: dict, scale: str, where: str) -> dict:
    scales = spec.get("scales", {})
    if scale not in scales:
        raise ConfigError(f"{where} has no scale {scale!r} (it has: {', '.join(scales) or 'none'})")
    change = scales[scale]
    out = {k: v for k, v in spec.items() if k != "scales"}
    out.update({k: v for k, v in change.items() if k != "fixed"})
    out["fixed"] = list(spec.get("fixed", [])) + list(change.get("fixed", []))
    out["scale"] = scale
    return out


def _check_scales(spec: dict, where: str) -> None:
    scales = spec.get("scales", {})
    if not isinstance(scales, dict) or not all(isinstance(v, dict) for v in scales.values()):
        raise ConfigError(f'{where}: scales must map names to changes, e.g. {{"gpu": {{"fixed": [...]}}}}')
    for name, change in scales.items():
        unknown = sorted(set(change) - SCALE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: scales.{name}: a scale may not change '{unknown[0]}'")
        if not isinstance(change.get("fixed", []), list):
            raise ConfigError(f"{where}: scales.{name}.fixed must be a list of 'section.key=value' overrides")
        scaled_spec(spec, name, where)


def study_task(spec: dict, where: str = "study file"):
    """The task class of the study's base config (its registry entry's ``task_cls``) and its
    config section name."""
    try:
        cfg = trial_config(spec, {})
    except ConfigError as e:
        raise ConfigError(f"{where}: base and fixed settings: {e}") from None
    entry = registry.entry(cfg.kind)
    return entry.task_cls, entry.section


def targets(spec: dict) -> list:
    """The target values the arms take: the study file's, or [None] for a task without a target axis."""
    return list(spec.get("targets", [None]))


def _list_of(spec: dict, key: str, ok: Callable[[object], bool], what: str, where: str) -> list:
    values = spec.get(key)
    if (
        not isinstance(values, list)
        or not values
        or not all(ok(v) for v in values)
        or len(set(map(json.dumps, values))) != len(values)
    ):
        raise ConfigError(f"{where}: {key} must be a non-empty list of distinct {what}")
    return values


def recorded_metrics(task_cls) -> list[str]:
    """The outcome metrics every arm's record holds: the task's study metrics, ``cal_<name>`` for
    each calibrated one, and ``oracle_<name>``, ``length_<name>`` for each temperature control."""
    controls = [f"{kind}_{m}" for kind in ("oracle", "length") for m in task_cls.temperature_controls]
    return list(task_cls.study_metrics) + [f"cal_{m}" for m in task_cls.calibrated_metrics] + controls


def _check_deltas(spec: dict, task_cls, where: str) -> None:
    """``deltas``: the claim measures and each one's smallest effect of interest, in (0, 1)."""
    if "deltas" not in spec:
        return
    deltas = spec["deltas"]
    known = recorded_metrics(task_cls) + ["norm_entropy"]
    if not isinstance(deltas, dict) or not deltas:
        raise ConfigError(f'{where}: deltas must map claim measures to their smallest effect, e.g. {{"tv": 0.02}}')
    for m, d in deltas.items():
        if m not in known:
            raise ConfigError(f"{where}: deltas: {m!r} is not a measure the study records ({', '.join(known)})")
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d < 1:
            raise ConfigError(f"{where}: deltas.{m} must be in (0, 1), got {d!r}")


def _check_region(spec: dict, task_cls, where: str) -> None:
    region = spec.get("region", DEFAULT_REGION)
    bound_ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if (
        not isinstance(region, dict)
        or set(region) - {"metric", "range", "max", "min", "note"}
        or region.get("range", "in_range") not in ("in_range", "beyond")
        or ("max" in region) == ("min" in region)
        and ("max" in region or "min" in region)
        or not all(bound_ok(region[k]) for k in ("max", "min") if k in region)
    ):
        raise ConfigError(
            f'{where}: region must be {{"metric": "tv", "range": "in_range", "max": 0.05, "note": ...}} '
            '(or "min" instead of "max" for a metric where higher is better)'
        )
    metric = region.get("metric", "tv")
    known = recorded_metrics(task_cls)
    if metric not in known:
        raise ConfigError(
            f"{where}: region.metric must be one of the metrics the study records ({', '.join(known)}), got {metric!r}"
        )


def check_spec(spec, where: str) -> None:
    """A one-line ConfigError (starting with ``where``) unless ``spec`` is a valid study file."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(spec) - SPEC_KEYS, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
    if "n_configs" not in spec:
        raise ConfigError(f"{where} has no n_configs (the number of base configs to draw)")
    check_shared_keys(spec, where, ("n_configs", "max_failures", "measure_sets"))
    task_cls, section = study_task(spec, where)
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63  # noqa: E731
    _list_of(spec, "seeds", is_int, "integers in 0..2^63-1", where)
    dropouts = _list_of(
        spec,
        "dropouts",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
        "rates in [0, 1)",
        where,
    )
    if 0 not in dropouts:
        raise ConfigError(f"{where}: dropouts must include 0 (the arm every dropout effect is paired against)")
    if task_cls.target_field is None:
        if "targets" in spec:
            raise ConfigError(f"{where}: targets: the task {task_cls.__name__} has no target axis")
    else:
        _list_of(
            spec,
            "targets",
            lambda v: v in task_cls.target_values,
            " or ".join(repr(v) for v in task_cls.target_values),
            where,
        )
    delta = spec.get("delta", 0.02)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(f"{where}: delta (the smallest TV effect of interest) must be in (0, 1), got {delta!r}")
    if spec.get("interval", DEFAULT_INTERVAL) not in ("bootstrap", "t"):
        raise ConfigError(f"{where}: interval must be 'bootstrap' or 't', got {spec['interval']!r}")
    _check_deltas(spec, task_cls, where)
    _check_region(spec, task_cls, where)
    params = spec.get("params", {})
    variants = spec.get("variants", {REFERENCE: []})
    if (
        not isinstance(variants, dict)
        or REFERENCE not in variants
        or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in variants.values())
        or not all(isinstance(k, str) and k.replace("_", "").replace("-", "").isalnum() for k in variants)
    ):
        raise ConfigError(
            f"{where}: variants must map names (letters, digits, _ and -) to lists of 'section.key=value' "
            f"overrides, one of them '{REFERENCE}'"
        )
    contrasts = spec.get("contrasts", [])
    if not isinstance(contrasts, list) or not all(
        isinstance(c, list) and len(c) == 2 and c[0] != c[1] and all(isinstance(v, str) and v in variants for v in c)
        for c in contrasts
    ):
        raise ConfigError(
            f"{where}: contrasts must be a list of [variant, variant] pairs of two different variants "
            f"({', '.join(variants)}): each is claimed as the first's raw weights minus the second's"
        )
    if not isinstance(spec.get("averagers", []), list):
        raise ConfigError(f"{where}: averagers must be a list of named averagers")
    set_by_arms = ARM_SET + ((f"{section}.{task_cls.target_field}",) if task_cls.target_field else ())
    for key, spec_k in params.items():
        if key in set_by_arms:
            raise ConfigError(f"{where}: params.{key} is set by the study's arms or fixed budget, not sampled")
        for value in param_candidates(key, spec_k, where):
            _arm_or_error(spec, {key: value}, where, f"params.{key} = {value!r}")
    for name in spec.get("variants", {}):
        _arm_or_error(spec, {}, where, f"variants.{name}", variant=name)
    check_strata(spec, where)
    cfg = _arm_or_error(spec, {}, where, "base and fixed settings")
    if not cfg.averagers:
        raise ConfigError(f"{where}: averagers is empty: every arm must carry the averagers the study compares")
    _check_scales(spec, where)


def _arm_or_error(spec: dict, values: dict, where: str, what: str, variant: str | None = None):
    try:
        return arm_config(spec, values, Arm(spec["seeds"][0], max(spec["dropouts"]), targets(spec)[0], variant))
    except ConfigError as e:
        raise ConfigError(f"{where}: {what}: {e}") from None


def arm_config(spec: dict, values: dict, arm: Arm):
    """The run config of one arm of the config ``values`` (sampled parameter values): the base,
    the fixed settings, the sampled values, the arm's variant overrides, then its seed, dropout and
    target, every averager on."""
    variant = spec.get("variants", {}).get(arm.variant or REFERENCE, [])
    own = {
        "train.seed": arm.seed,
        "model.attn_dropout": arm.dropout,
        "averagers": spec.get("averagers", []),
        "averaging.mode": "none",
    }
    if arm.target is not None:
        task_cls, section = study_task(spec)
        own[f"{section}.{task_cls.target_field}"] = arm.target
    return trial_config(spec, values, list(variant) + [f"{k}={json.dumps(v)}" for k, v in own.items()])


def config_cost(spec: dict, values: dict) -> float:
    """A rough training cost of one config: steps x batch size x the weights each token's step
    multiplies by (attention, MLP, unembedding), from its reference arm's model. The study
    queues its configs costliest first, so that its workers finish close together instead of one
    running the last long config while the other idles (longest-processing-time-first)."""
    cfg = arm_config(spec, values, Arm(spec["seeds"][0], 0.0, targets(spec)[0]))
    m = cfg.model
    mlp = 0 if m.attn_only else 2 * m.d_model * (m.d_mlp or 4 * m.d_model)
    per_token = m.n_layers * (4 * m.d_model * m.n_heads * m.d_head + mlp) + m.d_model * cfg.vocab()[1]
    return float(cfg.train.steps * cfg.train.batch_size * per_token)


def arms(spec: dict) -> list[Arm]:
    """Every arm of one config, in a fixed order: variant, then seed, dropout, target."""
    variants = list(spec["variants"]) if "variants" in spec else [None]
    return [
        Arm(s, float(p), t, v) for v in variants for s in spec["seeds"] for p in spec["dropouts"] for t in targets(spec)
    ]


def strata_cells(spec: dict) -> list[tuple]:
    """Every combination of the stratifying parameters' choices, in the study file's order."""
    return list(itertools.product(*(spec["params"][k]["values"] for k in spec.get("strata", []))))


def check_strata(spec: dict, where: str) -> None:
    """``strata`` names sampled ``choice`` parameters, and ``n_configs`` fills every cell equally."""
    strata = spec.get("strata", [])
    if not isinstance(strata, list) or len(set(map(str, strata))) != len(strata):
        raise ConfigError(f"{where}: strata must be a list of distinct sampled choice parameters")
    for key in strata:
        if not isinstance(key, str) or spec.get("params", {}).get(key, {}).get("type") != "choice":
            raise ConfigError(f"{where}: strata entry {key!r} is not a sampled choice parameter under params")
    cells = len(strata_cells(spec))
    if spec["n_configs"] % cells:
        raise ConfigError(
            f"{where}: n_configs ({spec['n_configs']}) must be a multiple of the {cells} strata cells, "
            "so every cell gets the same number of configs"
        )


def stratum(spec: dict, values: dict) -> tuple:
    """The stratum (cell) of one drawn config: its values of the stratifying parameters."""
    return tuple(values[k] for k in spec.get("strata", []))


def draw_configs(spec: dict) -> list[dict]:
    """``n_configs`` parameter draws from the region, reproducible from the study's seed.

    With ``strata``, the stratifying parameters are not drawn independently: every block of
    as many configs as there are cells takes each cell once, in a shuffled order (permuted
    blocks), so the cells are balanced. The report then resamples configs within cells: a
    parameter that moves an effect a lot (one head or two, for dropout) no longer widens its
    interval by chance imbalance, while the estimate stays the plain mean over configs."""
    rng = random.Random(spec.get("seed", 0))
    out = []
    for _ in range(spec["n_configs"]):
        values = {}
        for key, p in spec.get("params", {}).items():
            if p["type"] == "loguniform":
                values[key] = math.exp(rng.uniform(math.log(p["low"]), math.log(p["high"])))
            elif p["type"] == "uniform":
                values[key] = rng.uniform(p["low"], p["high"])
            elif p["type"] == "int":
                values[key] = rng.randint(p["low"], p["high"])
            else:
                values[key] = rng.choice(p["values"])
        out.append(values)
    if spec.get("strata"):
        cells = strata_cells(spec)
        for start in range(0, len(out), len(cells)):
            block = rng.sample(cells, len(cells))
            for values, cell in zip(out[start : start + len(cells)], block):
                values.update(zip(spec["strata"], cell))
    return out


def compiled_spec(spec: dict) -> dict:
    """The study file with every arm's ensemble step compiled (``train.compile=true`` added to its
    fixed settings, so the saved study file says so and a resumed study keeps it)."""
    return {**spec, "fixed": [f for f in spec["fixed"] if not f.startswith("train.compile=")] + ["train.compile=true"]}
