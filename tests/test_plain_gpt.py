"""The plain PyTorch baseline computes what our HookedTransformer computes: same weights, same
logits, same non-embedding parameter count (so the speed ratio compares like with like)."""

import sys
from pathlib import Path

import torch

from training.models import ModelConfig, build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))  # the GPU harness baseline it tests

from plain_gpt import PlainGPT, copy_from_hooked, time_plain  # noqa: E402


def test_plain_model_matches_the_hooked_transformer():
    cfg = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=4,
        d_head=8,
        attn_only=False,
        d_mlp=64,
        normalization="LN",
        positional="learned",
        attn_dropout=0.1,
        resid_dropout=0.1,
        embed_dropout=0.1,
    )
    model = build_model(cfg, 61, 61, 59, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random biases and LayerNorm weights too
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    plain = copy_from_hooked(PlainGPT(model.cfg, 61, 59), model).eval()
    tokens = torch.randint(0, 61, (3, 30), generator=gen)
    assert torch.allclose(plain(tokens), model(tokens), atol=1e-4)
    ours = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("embed", "pos_embed", "unembed")))
    theirs = sum(p.numel() for n, p in plain.named_parameters() if not n.startswith(("embed", "pos", "unembed")))
    assert ours == theirs
    timing = time_plain(
        model.cfg,
        61,
        59,
        batch=4,
        T=30,
        device=torch.device("cpu"),
        bf16=False,
        compiled=False,
        dropout=(0.1, 0.1, 0.1),
        warmup=1,
        timed=2,
    )
    assert timing["step_s"] > 0 and timing["non_embed"] == ours
