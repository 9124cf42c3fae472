"""OthelloGPT presets, the published-checkpoint converter, and the none/EMA/BEMA comparison.

``load_published_othello`` converts Neel Nanda's TransformerLens state dict (``synthetic_model.pth``
from the Hugging Face hub, downloaded by the user) into our model: 8 layers, 8 heads, d_model 512,
d_mlp 2048, GELU, learned positions, ``LNPre`` (its LayerNorm weights are folded in), d_vocab 61,
n_ctx 59. It loads with ``weights_only=True`` and checks every key and shape.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import runs
from .config import RunConfig, load_config, preset_path
from .errors import CheckpointError
from .models import ModelConfig, build_model
from .tasks.othello_task import D_VOCAB, N_CTX

PUBLISHED = ModelConfig(n_layers=8, d_model=512, n_heads=8, d_head=64, attn_only=False, d_mlp=2048, act_fn="gelu",
                        normalization="LNPre", positional="learned")
COMPARISONS = {
    "averaging": {"none": ["averaging.mode=none"], "ema": ["averaging.mode=ema"], "bema": ["averaging.mode=bema"]},
    "positional": {"learned": ["model.positional=learned"], "rotary": ["model.positional=rotary"],
                   "no_pos": ["model.positional=none"]},
}


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
    own = model.state_dict()
    params = dict(model.named_parameters())
    missing = [k for k in params if k not in state]
    if missing:
        raise CheckpointError(f"{path} does not match OthelloGPT (missing {missing[0]})")
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(f"{path} does not match OthelloGPT (unexpected {extra[0]})")
    merged = dict(own)
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{path} does not match OthelloGPT ({k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)})")
        if k in params:  # buffers (masks, IGNORE) stay ours
            merged[k] = v
    model.load_state_dict(merged)
    return model.eval()


def compare(preset: str, data, out: str | Path, what: str = "averaging", overrides=None, overwrite=False, progress=True):
    """Train the variants of ``COMPARISONS[what]`` at equal budget and seed (none / EMA / BEMA, or
    learned / rotary / no positions); per-move-index metrics of each (averaged weights where on).

    Averaging never changes the raw trajectory (same seed, same data, same dropout masks; tested
    bit for bit), so the 'none' variant is read off the EMA run's raw weights instead of being
    trained a third time."""
    from .demo import prepare
    from .trainer import train

    out = Path(out)
    variants = dict(COMPARISONS[what])
    reuse_raw = what == "averaging"
    if reuse_raw:
        variants.pop("none")
    configs = {name: othello_config(preset, data, (overrides or []) + extra) for name, extra in variants.items()}
    for cfg in configs.values():
        cfg.make_task()  # check the dataset once, before any training
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, cfg in configs.items():
        res = train(cfg, prepare(out, name, cfg, overwrite), progress=progress, desc=f"othello {name}")
        if reuse_raw and name == "ema":
            results["none"] = res.final["raw"]
        results[f"{name} (avg)" if "averaged" in res.final else name] = res.final.get("averaged", res.final["raw"])
    return results
