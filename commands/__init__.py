"""The command lines, the one place that imports both sides: ``train.py`` is ``python -m training``
(``wm-train``), ``interp.py`` is ``python -m interp`` (``wm-interp``), ``tools.py`` their shared
parser and error handling. ``training`` never imports ``interp`` (``tests/test_layout.py``)."""
