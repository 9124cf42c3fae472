"""OthelloGPT's next-move task: ``engine.py`` (vectorised bitboards, numpy), ``engine_torch.py``
(the same rules in torch, for a GPU), ``reference.py`` (a slow, plainly written engine: the ground
truth tests and benchmarks check the fast ones against), ``data.py`` (synthetic games on disk),
``task.py`` (the ``Task``: batches, sampled or exact targets, evaluation by move index) and
``checkpoints.py`` (the published OthelloGPT weights).

Nothing is imported here, so that numpy-only users (the data workers) do not import torch."""
