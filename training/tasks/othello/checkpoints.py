"""OthelloGPT presets and the published-checkpoint converter.

``load_published_othello`` converts Neel Nanda's TransformerLens state dict (``synthetic_model.pth``
from the Hugging Face hub, downloaded by the user) into our model: 8 layers, 8 heads, d_model 512,
d_mlp 2048, GELU, learned positions, ``LNPre`` (its LayerNorm weights are folded in), d_vocab 61,
n_ctx 59. It loads with ``weights_only=True`` and checks every key and shape.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training import runs
from training.config import RunConfig, load_config, preset_path
from training.errors import CheckpointError
from training.models import ModelConfig, build_model
from training.tasks.othello.task import D_VOCAB, N_CTX

PUBLISHED = ModelConfig(
    n_layers=8,
    d_model=512,
    n_heads=8,
    d_head=64,
    attn_only=False,
    d_mlp=2048,
    act_fn="gelu",
    normalization="LNPre",
    positional="learned",
)


def othello_config(preset: str, data: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    extra = [f"othello.data={data}"] if data is not None else []
    return load_config(preset_path(f"othello_{preset}"), extra + (overrides or []))


def load_published_othello(path: str | Path, cfg: ModelConfig = PUBLISHED, device="cpu"):
    """Our ``HookedTransformer`` holding the published OthelloGPT weights (buffers are ours)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a state dict ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a state dict")
    model = build_model(cfg, D_VOCAB, D_VOCAB, N_CTX, device=device)
    params = dict(model.named_parameters())
    # every parameter must be there; buffers (masks, IGNORE) may be missing and stay ours
    runs.check_state(model, state, path, "OthelloGPT", required=set(params))
    merged = dict(model.state_dict())
    merged.update({k: v for k, v in state.items() if k in params})
    model.load_state_dict(merged)
    return model.eval()
