"""Probes of the set complement task: per-length metrics and attention statistics (``probes.py``),
the exact logit decomposition (``displacement.py``), the dispersion measures (``dispersion.py``),
the balanced theory (``theory.py``), test-time interventions (``interventions.py``) and the full
report (``report.py``)."""
