"""Probes of OthelloGPT: linear board probes (``board_probe.py``), board edits
(``intervention.py``), attention by move parity (``attention.py``), positions past the training
length (``positions.py``) and the report (``report.py``)."""
