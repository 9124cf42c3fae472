"""Attention entropy by the task's own index, on both tasks, against the set task's existing
table, OthelloGPT's move-index probe, and uniform attention (normalised entropy 1)."""

import numpy as np
import torch

from interp.core.attention import attention_by_index
from interp.othello.attention import othello_attention
from interp.set_complement.probes import attention_entropy
from training.models import ModelConfig, build_model
from training.tasks.set_complement.task import SetComplementConfig, SetComplementTask


def test_set_task_matches_the_last_position_table():
    for bos in (False, True):
        task = SetComplementTask(SetComplementConfig(v=9, train_max_len=4, bos=bos))
        model = build_model(ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8), 10, 9, 8 + bos, seed=2).train()
        res = attention_by_index(model, task, n=64, seed=1)
        ref = attention_entropy(model, task, n=64, seed=1)
        assert model.training
        assert res.index == list(range(1, 9)) and res.entropy.shape == (2, 2, 8) and res.train_range == (1, 4)
        for layer in range(2):
            for head in range(2):
                assert np.allclose(res.entropy[layer, head].numpy(), ref.series(layer, head, "entropy_mean"), atol=1e-9)
                if not bos:  # the table normalises by the items attended; with BOS, by all positions
                    assert np.allclose(
                        res.norm_entropy[layer, head].numpy(), ref.series(layer, head, "norm_entropy_mean")
                    )


def test_othello_by_move_index(tmp_path):
    from training.tasks.othello.data import generate_dataset
    from training.tasks.othello.task import OthelloConfig, OthelloTask

    generate_dataset(tmp_path / "d", 120, seed=0, chunk=120, workers=1, progress=False)
    task = OthelloTask(OthelloConfig(data=str(tmp_path / "d"), val_games=40, train_max_moves=20))
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, normalization="LN", positional="learned")
    model = build_model(cfg, 61, 61, 59, seed=0).eval()
    res = attention_by_index(model, task, n=40)
    assert res.index == list(range(1, 60)) and res.index_name == "move index" and res.train_range == (1, 20)
    games = np.asarray(task.games[task.n_train : task.n_train + 40])
    ref = othello_attention(model, games, train_max_moves=20)
    assert torch.allclose(res.norm_entropy, ref.norm_entropy.double(), atol=1e-6)
    # uniform attention (W_Q = 0): normalised entropy 1 at every move index
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.b_Q.zero_()
    assert torch.allclose(attention_by_index(model, task, n=40).norm_entropy, torch.ones(2, 2, 59, dtype=torch.float64))
