"""The per-length (or per-move-index) result type every task's evaluation returns, and its text table.

A task measures its metrics at each "length": the set size for the set complement task, the move
index for OthelloGPT. ``LengthMetrics`` keeps one list per metric with the training range, so
summaries "in range" (the lengths trained on) and "beyond" (longer ones) mean the same thing for
every task. ``metric_table`` renders any named collection of them; the trainer, the demo, the
experiment commands and ``python -m interp eval`` all print through it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LengthMetrics:
    """Per-length means of every metric, with the training range for summaries."""

    lengths: list[int]
    train_range: tuple[int, int]
    sets_per_length: int
    values: dict[str, list[float]] = field(default_factory=dict)

    def _select(self, lo: int, hi: int) -> list[int]:
        return [i for i, s in enumerate(self.lengths) if lo <= s <= hi]

    def summary(self) -> dict[str, dict[str, float]]:
        """Means over the training lengths ('in_range') and over longer lengths ('beyond')."""
        lo, hi = self.train_range
        out = {}
        for key, idx in (("in_range", self._select(lo, hi)), ("beyond", self._select(hi + 1, 10**9))):
            if idx:
                out[key] = {m: sum(v[i] for i in idx) / len(idx) for m, v in self.values.items()}
        return out

    def at(self, length: int) -> dict[str, float]:
        i = self.lengths.index(length)
        return {m: v[i] for m, v in self.values.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_range"] = list(self.train_range)
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LengthMetrics":
        return cls(
            lengths=list(d["lengths"]),
            train_range=tuple(d["train_range"]),
            sets_per_length=d["sets_per_length"],
            values={m: list(v) for m, v in d["values"].items()},
        )


def fmt(x: float) -> str:
    """A metric value: four decimals, or scientific notation below 1e-3."""
    return f"{x:.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:.1e}"


def table_lengths(lo: int, hi: int, max_len: int, beyond_points: int = 7) -> list[int]:
    """A readable subset of lengths: powers of two and the edges of the training range, then
    evenly spaced lengths beyond it up to the longest evaluated."""
    chosen = {lo, hi} | {2**k for k in range(8) if lo <= 2**k <= hi}
    if max_len > hi:
        span = max_len - hi - 1
        chosen |= {hi + 1 + round(i * span / max(1, beyond_points - 1)) for i in range(beyond_points)}
    return sorted(s for s in chosen if 1 <= s <= max_len)


def metric_table(
    results: dict[str, LengthMetrics], metric: str, lengths: list[int] | None = None, index_label: str = "len"
) -> str:
    """One metric: rows are lengths (then the in-range and beyond means), one column per result.

    ``lengths=None`` shows a readable subset (``table_lengths``); training lengths are starred."""
    first = next(iter(results.values()))
    lo, hi = first.train_range
    lengths = table_lengths(lo, hi, max(first.lengths)) if lengths is None else lengths
    width = max(12, *(len(n) + 1 for n in results))
    lines = [f"{metric.upper():<8}" + "".join(f"{n:>{width}}" for n in results)]
    for s in lengths:
        mark = "*" if lo <= s <= hi else " "
        lines.append(
            f"{index_label} {s:>3}{mark}" + "".join(f"{fmt(r.at(s)[metric]):>{width}}" for r in results.values())
        )
    for key, label in (("in_range", "in-range"), ("beyond", "beyond")):
        cells = [r.summary().get(key, {}).get(metric) for r in results.values()]
        lines.append(f"{label:<8}" + "".join(f"{fmt(c) if c is not None else '-':>{width}}" for c in cells))
    return "\n".join(lines)


def metric_tables(
    results: dict[str, LengthMetrics], metrics, lengths: list[int] | None = None, index_label: str = "len"
) -> str:
    """``metric_table`` for each metric, separated by blank lines."""
    return "\n\n".join(metric_table(results, m, lengths, index_label) for m in metrics)
