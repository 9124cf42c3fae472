"""Probes for any task: attention entropy by length or move index (``attention.py``), component
attribution (``attribution.py``), the logit lens (``logit_lens.py``), activation patching
(``patching.py``), position paths (``position_paths.py``), the frozen-norm readout
(``readout.py``), hook names (``hooks.py``) and figures (``visualize.py``)."""
