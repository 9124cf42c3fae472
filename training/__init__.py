"""Training side of the workbench: tasks, models, weight averaging, trainer, runs, command line."""

from training.errors import WorkbenchError

__all__ = ["WorkbenchError", "load_run"]


def __getattr__(name):
    # Lazy so that `import training` stays cheap (transformer_lens takes seconds to import).
    if name == "load_run":
        from training.runs import load_run

        return load_run
    raise AttributeError(name)
