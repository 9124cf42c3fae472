"""Dispersion measures: the outcomes that tell the study's mechanism apart from mere sharpening.

TV beyond the training lengths rewards any model that is sharper. These measures ask whether a
remedy changed *how* the model spreads its attention and its logit displacement as sets grow:

- ``norm_entropy``: attention entropy of the last position over log n, per layer, head and length
  (1 = uniform attention; the study's dispersion);
- ``margin_law``: s * margin(s) / (2 * margin(2)). Under the balanced model with uniform attention
  the margin is c/s, so this is 1 at every length; above 1 the margin decays slower than 1/s;
- ``gap_law``: s * gap(s) / (2 * gap(2)). Under uniform attention s * gap(s) is constant for *any*
  B and D, so this shows uniform attention, not balance; it is reported, never called balance;
- ``self_displacement_cv``: per head, the coefficient of variation across tokens of each token's
  self-displacement D[t][t] - mean_j D[t][j] (0 = perfectly balanced). Through Post-Norm or
  output rescaling, D[t] is read through the frozen norms (``interp/core/readout.py``), leaving out the
  per-query scalar that multiplies every token alike, so the CV compares with a pre-norm model's.

Everything is read off the existing probes (``attention_entropy``, ``evaluate_lengths``,
``displacement_by_length``) on the same fixed-seed sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from interp.set_complement.displacement import displacement_by_length
from interp.set_complement.probes import attention_entropy
from training.tasks.set_complement.metrics import evaluate_lengths
from training.tasks.set_complement.task import SetComplementTask


@dataclass
class Dispersion:
    lengths: list[int]
    train_range: tuple[int, int]
    norm_entropy: list[list[list[float]]]
    """[layer][head][length index]."""
    margin_law: list[float]
    gap_law: list[float]
    self_displacement_cv: list[list[float]]
    """[layer][head]."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_range"] = list(self.train_range)
        return d

    def summary(self) -> dict[str, dict[str, float]]:
        """Means over the training lengths and beyond (entropy averaged over heads)."""
        lo, hi = self.train_range
        heads = [h for layer in self.norm_entropy for h in layer]
        out = {}
        for key, keep in (("in_range", lambda s: lo <= s <= hi), ("beyond", lambda s: s > hi)):
            idx = [i for i, s in enumerate(self.lengths) if keep(s)]
            if not idx:
                continue
            out[key] = {
                "norm_entropy": sum(h[i] for h in heads for i in idx) / (len(heads) * len(idx)),
                "margin_law": sum(self.margin_law[i] for i in idx) / len(idx),
                "gap_law": sum(self.gap_law[i] for i in idx) / len(idx),
            }
        return out


def _law(values: list[float], lengths: list[int]) -> list[float]:
    """s * x(s) / (2 * x(2)) at every length (NaN without a length 2)."""
    if 2 not in lengths or values[lengths.index(2)] == 0:
        return [float("nan")] * len(lengths)
    at2 = values[lengths.index(2)]
    return [s * x / (2 * at2) for s, x in zip(lengths, values)]


def dispersion(model, task: SetComplementTask, n: int = 1024, seed: int = 0) -> Dispersion:
    """Every dispersion measure of a set-complement model at every length."""
    return dispersion_from(
        evaluate_lengths(model, task, n=n, seed=seed),
        attention_entropy(model, task, n=n, seed=seed),
        displacement_by_length(model, task, n=n, seed=seed),
    )


def dispersion_from(metrics, entropy, disp) -> Dispersion:
    """The dispersion measures read off probes already run (``evaluate_lengths``,
    ``attention_entropy``, ``displacement_by_length`` on the same sets), as ``interp report`` has."""
    lengths = metrics.lengths
    norm = [
        [entropy.series(layer, head, "norm_entropy_mean") for head in range(entropy.n_heads)]
        for layer in range(entropy.n_layers)
    ]
    cv = [
        [b["cv"] for b in disp.balance if b["what"] == "D_self" and b["layer"] == layer]
        for layer in range(entropy.n_layers)
    ]
    return Dispersion(
        lengths,
        metrics.train_range,
        norm,
        _law(metrics.values["margin"], lengths),
        _law(metrics.values["gap"], lengths),
        cv,
    )


def study_measures(model, task: SetComplementTask, n: int = 512, seed: int = 0) -> dict:
    """The dispersion summaries the paired study records per arm and per set of weights
    (``training.experiments.study`` calls it through the command line, which passes it in):
    ``by_range`` holds norm_entropy, margin_law and gap_law in range and beyond; ``model`` holds
    ``sd_cv``, the self-displacement coefficient of variation averaged over heads."""
    d = dispersion(model, task, n=n, seed=seed)
    heads = [cv for layer in d.self_displacement_cv for cv in layer]
    return {"by_range": d.summary(), "model": {"sd_cv": sum(heads) / len(heads)}}
