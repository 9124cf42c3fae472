"""User-facing errors: the command line prints each as one line and exits with status 2."""


class WorkbenchError(Exception):
    """A problem the user can fix (bad input, missing file); never shown with a traceback."""


class ConfigError(WorkbenchError):
    """An invalid, inconsistent or unknown configuration value."""


class CheckpointError(WorkbenchError):
    """A run directory or weights file that is missing, truncated or does not match its config."""


class TrainingDiverged(WorkbenchError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class InputError(WorkbenchError):
    """A model input the model cannot read, e.g. a token outside its vocabulary."""
