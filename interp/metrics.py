"""Per-length metrics, re-exported for analysis code and notebooks.

The metric math and its result type live on the training side (the trainer evaluates through
the task): ``training/metrics.py`` (``LengthMetrics``, ``metric_table``) and
``training/tasks/set_complement_eval.py`` (``complement_metrics``, ``evaluate_lengths``, the
metric definitions). ``interp`` builds its probes on them.
"""

from training.metrics import LengthMetrics, fmt, metric_table, metric_tables, table_lengths
from training.tasks.set_complement_eval import METRICS, complement_metrics, evaluate_lengths

__all__ = ["METRICS", "LengthMetrics", "complement_metrics", "evaluate_lengths", "fmt", "metric_table",
           "metric_tables", "table_lengths"]
