"""Interpretability tools for trained ``HookedTransformer``s, by concept:

- ``interp/core/``: probes for any task (attention by length or move index, attribution, the logit
  lens, activation patching, position paths, the frozen-norm readout) and figures;
- ``interp/set_complement/``: the set task's probes (per-length metrics and attention, the logit
  decomposition, dispersion, the balanced theory, interventions, the report);
- ``interp/othello/``: OthelloGPT's (board probes and edits, attention by parity, positions past the
  training length, the report);
- ``interp/analysis/``: the paired study's effects and verdicts, and the random search's analysis.

The main functions are importable from ``interp`` directly, loaded on first use so that
``import interp`` stays cheap::

    from interp import evaluate_lengths, attention_entropy, displacement_by_length, patch_swap

Each probe takes a model and a task, runs in eval mode, gives the model back in the mode it had,
and returns a result object with ``to_dict()``; each plot function returns a matplotlib Figure.
No submodule sits directly under ``interp``, so ``interp.logit_lens`` is always the function.
"""

from importlib import import_module

_EXPORTS = {
    # any task
    "attention_by_index": "interp.core.attention",
    "AttentionByIndex": "interp.core.attention",
    "logit_lens": "interp.core.logit_lens",
    "LogitLens": "interp.core.logit_lens",
    "make_swap_pairs": "interp.core.patching",
    "patch_swap": "interp.core.patching",
    "activation_patch": "interp.core.patching",
    "PATCHERS": "interp.core.patching",
    "normalised": "interp.core.patching",
    "logit_diff_metric": "interp.core.patching",
    "legal_mass_metric": "interp.core.patching",
    "model_pair_cache": "interp.core.patching",
    "othello_move_pairs": "interp.core.patching",
    "component_attribution": "interp.core.attribution",
    "component_logits": "interp.core.attribution",
    "plot_attribution": "interp.core.attribution",
    "position_qk": "interp.core.position_paths",
    "parity_contrast": "interp.core.position_paths",
    "path_patch_positions": "interp.core.position_paths",
    "attention_html": "interp.core.visualize",
    "displacement_html": "interp.core.visualize",
    "plot_metrics": "interp.core.visualize",
    "plot_entropy": "interp.core.visualize",
    "plot_displacement": "interp.core.visualize",
    "plot_patching": "interp.core.visualize",
    "save_figure": "interp.core.visualize",
    # the set complement task
    "evaluate_lengths": "interp.set_complement.probes",
    "complement_metrics": "interp.set_complement.probes",
    "LengthMetrics": "interp.set_complement.probes",
    "metric_tables": "interp.set_complement.probes",
    "attention_entropy": "interp.set_complement.probes",
    "AttentionStats": "interp.set_complement.probes",
    "calibrated_lengths": "training.tasks.set_complement.calibration",
    "fit_logit_scale": "training.tasks.set_complement.calibration",
    "decompose_logits": "interp.set_complement.displacement",
    "displacement_by_length": "interp.set_complement.displacement",
    "theory_gaps": "interp.set_complement.displacement",
    "balanced_model": "interp.set_complement.theory",
    "closed_form": "interp.set_complement.theory",
    "extract_BD": "interp.set_complement.theory",
    "evaluate_interventions": "interp.set_complement.interventions",
    "dispersion": "interp.set_complement.dispersion",
    "Dispersion": "interp.set_complement.dispersion",
    "collect_report": "interp.set_complement.report",
    "build_report": "interp.set_complement.report",
    # OthelloGPT
    "fit_board_probe": "interp.othello.board_probe",
    "probe_accuracy": "interp.othello.board_probe",
    "LinearProbe": "interp.othello.board_probe",
    "membership_probe": "interp.othello.board_probe",
    "intervene": "interp.othello.intervention",
    "othello_attention": "interp.othello.attention",
    "collect_othello_report": "interp.othello.report",
    "build_othello_report": "interp.othello.report",
    # experiments
    "study_measures": "interp.analysis.mechanism",
    "entropy_measures": "interp.analysis.mechanism",
    "plot_suite": "interp.analysis.suite_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__():
    return __all__
