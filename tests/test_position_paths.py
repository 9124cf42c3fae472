"""The positional QK map and path patching from W_pos on a hand-built model whose head 0 attends by
position parity only and head 1 by token content only, against a plain-numpy reference."""

import numpy as np
import pytest
import torch

from interp.core.position_paths import parity_contrast, path_patch_positions, position_qk
from training.models import ModelConfig, build_model

A = 4.0  # head 0's parity score scale
N = 8


def parity_model():
    """d_model 4: dim 0 = position parity (+1 even, -1 odd), dim 1 = token value, dims 2-3 = the
    two heads' outputs. Head 0: score A * s_q * s_k, value = token value, written to dim 2.
    Head 1: score from token values only, value = token value, written to dim 3. W_U reads dim 2
    into output 0 and dim 3 into output 1."""
    cfg = ModelConfig(n_layers=1, d_model=4, n_heads=2, d_head=1, attn_only=True, positional="learned", n_ctx=N)
    model = build_model(cfg, 5, 2, N)
    attn = model.blocks[0].attn
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_pos[:, 0] = torch.tensor([1.0 if p % 2 == 0 else -1.0 for p in range(N)])
        model.W_E[:, 1] = torch.arange(5, dtype=torch.float)
        attn.W_Q[0, 0, 0] = A  # d_head 1, scaled by 1/sqrt(1)
        attn.W_K[0, 0, 0] = 1.0
        attn.W_Q[1, 1, 0] = 0.5
        attn.W_K[1, 1, 0] = 1.0
        attn.W_V[0, 1, 0] = 1.0
        attn.W_V[1, 1, 0] = 1.0
        attn.W_O[0, 0, 2] = 1.0
        attn.W_O[1, 0, 3] = 1.0
        model.W_U[2, 0] = 1.0
        model.W_U[3, 1] = 1.0
    return model.eval()


def reference_head0_output(tokens: np.ndarray, flip_q: bool, flip_k: bool) -> np.ndarray:
    """Head 0's last-position output in plain numpy, with the query's or the keys' parity read
    from position p + 1 (the last position from p - 1)."""
    n = tokens.shape[1]
    parity = np.array([1.0 if p % 2 == 0 else -1.0 for p in range(N)])
    shifted = np.array([p + 1 if p + 1 < n else p - 1 for p in range(n)])
    q = n - 1
    s_q = parity[shifted[q]] if flip_q else parity[q]
    s_k = parity[shifted[: q + 1]] if flip_k else parity[: q + 1]
    scores = A * s_q * s_k
    w = np.exp(scores - scores.max())
    w /= w.sum()
    return (w[None, :] * tokens[:, : q + 1]).sum(1)


def test_positional_qk_map_and_parity_contrast():
    model = parity_model()
    s = np.array([1.0 if p % 2 == 0 else -1.0 for p in range(N)])
    qk0 = position_qk(model, 0, 0)
    assert np.allclose(qk0.AB.detach().numpy(), A * np.outer(s, s))
    assert np.allclose(position_qk(model, 0, 1).AB.detach().numpy(), 0)
    contrast = parity_contrast(model)
    assert contrast.shape == (1, 2)
    assert contrast[0, 0].item() == pytest.approx(2 * A) and contrast[0, 1].item() == pytest.approx(0.0)


def test_path_patching_finds_the_parity_path():
    model = parity_model().train()
    tokens = torch.randint(0, 5, (16, 7), generator=torch.Generator().manual_seed(0))
    metric = lambda logits: logits[:, -1, 0].mean()  # noqa: E731  head 0's output
    effect = path_patch_positions(model, tokens, metric)
    assert model.training and not model.cfg.use_split_qkv_input  # both put back
    t = tokens.numpy().astype(float)
    base = reference_head0_output(t, False, False).mean()
    assert effect[0, 0, 0].item() == pytest.approx(reference_head0_output(t, True, False).mean() - base, abs=1e-5)
    assert effect[0, 0, 1].item() == pytest.approx(reference_head0_output(t, False, True).mean() - base, abs=1e-5)
    assert abs(effect[0, 0, 0].item()) > 0.1  # flipping the query's parity moves attention to the other side
    # head 1 reads no position: patching its query or key changes nothing
    assert effect[0, 1].abs().max().item() < 1e-6


def test_models_without_learned_positions_are_refused():
    model = build_model(ModelConfig(d_model=8, d_head=4, positional="rotary"), 5, 4, 6)
    with pytest.raises(ValueError, match="rotary positions"):
        position_qk(model, 0, 0)
