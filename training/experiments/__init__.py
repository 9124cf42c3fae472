"""Experiments that train: each trains a set of runs into folders it is given and returns its
results; the command lines render them.

- ``demo``: the five remedies of the study at equal budget and seed (``python -m training demo``);
- ``othello_compare``: OthelloGPT averaging or positional variants (``othello-compare``);
- ``dim_scan``: widths d_model x d_head against a target in-range TV (``python -m interp dim-scan``);
- ``sweep``: the random hyperparameter search on Optuna storage (``python -m training sweep``);
- ``study/``: the paired study on any task (``python -m training study``);
- ``runner``: the Optuna storage, workers and failure handling the sweep and the study share.

Every run directory comes from ``training.runs.prepare_run``, the one reuse rule: a directory with
the same config is resumed (or found finished), one with another config is an error unless
``overwrite``. Besides its run directories, an experiment writes only its own state (the sweep's
and the study's ``*.json`` and database); rendering results (text tables, JSON, plots, README files)
is a separate step, done by the command lines, so a notebook can run an experiment and draw it
its own way.
"""
