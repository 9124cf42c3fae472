"""The paired study: a design (``design.py``), its training (``run.py``) and what it records of
each arm (``measure.py``), and those records as a file (``records.py``). ``python -m interp
study-report`` analyses it (``interp/analysis``).

The study runs on any registered task: the task says which loss-only field is its target axis,
which metrics it reports and how to calibrate them (``training/tasks/base.py``).
"""

from training.experiments.study.design import (
    DEFAULT_INTERVAL,
    DEFAULT_REGION,
    REFERENCE,
    STUDY_FILE,
    Arm,
    arm_config,
    arm_label,
    arms,
    check_spec,
    check_strata,
    compiled_spec,
    config_cost,
    draw_configs,
    load_spec,
    max_failures,
    strata_cells,
    stratum,
    study_task,
    targets,
    with_steps,
)
from training.experiments.study.measure import measure_member
from training.experiments.study.run import completed_records, open_study, run_config, run_study, summarize

__all__ = [
    "Arm",
    "DEFAULT_INTERVAL",
    "DEFAULT_REGION",
    "REFERENCE",
    "STUDY_FILE",
    "arm_config",
    "arm_label",
    "arms",
    "check_spec",
    "check_strata",
    "compiled_spec",
    "completed_records",
    "config_cost",
    "draw_configs",
    "load_spec",
    "max_failures",
    "measure_member",
    "open_study",
    "run_config",
    "run_study",
    "strata_cells",
    "stratum",
    "study_task",
    "summarize",
    "targets",
    "with_steps",
]
