"""Analysis of experiments: the paired study's effects, intervals and verdicts
(``study_report.py``, statistics in ``study_stats.py``, mechanism measures in ``mechanism.py``) and
the random search (``sweep.py``)."""
