"""Interpretability tools for trained set-complement and OthelloGPT ``HookedTransformer``s.

The main functions, importable from ``interp`` directly (loaded on first use, so ``import interp``
stays cheap)::

    from interp import evaluate_lengths, attention_entropy, displacement_by_length, patch_swap

Each probe takes a model and a task, runs in eval mode, gives the model back in the mode it had,
and returns a result object with ``to_dict()``; each plot function returns a matplotlib Figure.
A function named like its module (``logit_lens``, ``dispersion``, ``othello_attention``) is
imported from that module, since ``interp.<name>`` is the module.
"""

from importlib import import_module

_EXPORTS = {
    "evaluate_lengths": "interp.metrics", "complement_metrics": "interp.metrics", "LengthMetrics": "interp.metrics",
    "metric_tables": "interp.metrics",
    "calibrated_lengths": "training.tasks.set_complement_eval", "fit_logit_scale": "training.tasks.set_complement_eval",
    "attention_entropy": "interp.attention", "AttentionStats": "interp.attention",
    "attention_by_index": "interp.attention",
    "decompose_logits": "interp.displacement", "displacement_by_length": "interp.displacement",
    "theory_gaps": "interp.displacement",
    "balanced_model": "interp.theory", "closed_form": "interp.theory", "extract_BD": "interp.theory",
    "evaluate_interventions": "interp.interventions",
    "make_swap_pairs": "interp.patching", "patch_swap": "interp.patching", "activation_patch": "interp.patching",
    "PATCHERS": "interp.patching", "normalised": "interp.patching", "logit_diff_metric": "interp.patching",
    "legal_mass_metric": "interp.patching", "model_pair_cache": "interp.patching", "othello_move_pairs": "interp.patching",
    "component_attribution": "interp.attribution", "component_logits": "interp.attribution",
    "plot_attribution": "interp.attribution",
    "position_qk": "interp.position_paths", "parity_contrast": "interp.position_paths",
    "path_patch_positions": "interp.position_paths",
    "study_measures": "interp.mechanism", "entropy_measures": "interp.mechanism",
    "fit_board_probe": "interp.board_probe", "probe_accuracy": "interp.board_probe", "LinearProbe": "interp.board_probe",
    "membership_probe": "interp.board_probe",
    "intervene": "interp.board_intervention",
    "collect_report": "interp.report", "build_report": "interp.report",
    "collect_othello_report": "interp.othello_report", "build_othello_report": "interp.othello_report",
    "attention_html": "interp.visualize", "displacement_html": "interp.visualize", "plot_metrics": "interp.visualize", "plot_entropy": "interp.visualize",
    "plot_displacement": "interp.visualize", "plot_patching": "interp.visualize", "save_figure": "interp.visualize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__():
    return __all__
