"""Every ``HookedTransformer`` the workbench builds is built here, from a ``ModelConfig``.

TransformerLens 3.9 deprecates ``HookedTransformer`` (4.0 removed it for ``TransformerBridge``),
so keeping construction in this one module makes a later move local. Dropout is not part of
``HookedTransformer``; it is added as permanent hooks that act only in train mode, so a model in
``eval()`` is deterministic and a saved state dict loads into a plain ``HookedTransformer``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer, HookedTransformerConfig

from training.errors import ConfigError, InputError
from training.scoped import forked_rng


@dataclass
class ModelConfig:
    """Architecture and dropout of a transformer; vocabulary and context come from the task."""

    n_layers: int = 1
    """Number of transformer blocks."""
    d_model: int = 64
    """Residual stream width."""
    n_heads: int = 1
    """Attention heads per layer."""
    d_head: int = 64
    """Width of each head's query, key and value."""
    attn_only: bool = True
    """No MLPs (the study's analytic model is attention-only)."""
    d_mlp: Optional[int] = None
    """MLP hidden width when attn_only is false; None means 4 * d_model."""
    act_fn: str = "gelu"
    """MLP activation (any TransformerLens act_fn)."""
    normalization: Literal["none", "LN", "LNPre"] = "none"
    """LayerNorm: none, LN (with weights) or LNPre (without); where it goes is ``norm_position``."""
    norm_position: Literal["pre", "post"] = "pre"
    """'pre': TransformerLens's own, before each sublayer and the unembedding. 'post' (the study's
    v2 remedy): after each residual add, x = LN(x + sublayer(x)), and none before the unembedding
    (the last block's output is already normalised). Built as LayerNorm modules on the blocks
    (``blocks.{l}.ln_post_attn``, ``blocks.{l}.ln_post_mlp``) applied by permanent hooks on
    ``hook_resid_mid`` / ``hook_resid_post``; see ``add_post_norm``."""
    final_norm: bool = True
    """False drops the LayerNorm before the unembedding of a pre-norm model (``ln_final`` becomes
    an ``Identity``): the control that tells the final LayerNorm's effect from the per-block ones.
    Plain TransformerLens reproduces it by setting ``model.ln_final = torch.nn.Identity()`` and
    calling ``model.setup()`` before loading the state dict."""
    block_norms: bool = True
    """False drops the per-block LayerNorms of a pre-norm model (``blocks.{l}.ln1``, and ``ln2``
    with MLPs, become ``Identity``) and keeps only ``ln_final``: the final-LayerNorm-only model,
    the control for 'a LayerNorm before the readout acts as an input-adaptive temperature' (the
    blocks see the raw stream, as in the model without norms). Plain TransformerLens reproduces it
    by setting each block's ``ln1`` (and ``ln2``) to ``torch.nn.Identity()`` and calling
    ``model.setup()`` before loading the state dict."""
    ssmax: bool = False
    """Scalable softmax, trained: each head's attention scores at a query attending to n positions
    are multiplied by s_h * log n, with s_h learned per head (``blocks.{l}.attn_ssmax``, starting
    at 1), so attention can stay sharp as inputs grow."""
    out_rescale_len: Optional[int] = None
    """When set to n_train (positions attended at the longest training length), each attention
    output at a query attending to n positions is multiplied by max(1, n / n_train): the 1/n
    compression of uniform attention undone beyond the training lengths (training lengths are
    untouched, so this trains exactly as without it; it travels with the model)."""
    readout_len_scale: bool = False
    """A learned length-dependent scalar before the unembedding: the residual read out at a query
    attending to n positions is multiplied by exp(a + b log n) = e^a n^b, with (a, b) learned
    (``readout_len_scale``, starting at 0, so training starts as without it; a power of n so that
    it extrapolates past the training lengths). The control for 'a LayerNorm before the readout
    acts as an input-adaptive temperature': a temperature that depends on the length alone.
    Applied by a forward pre-hook on ``unembed`` (so ``hook_resid_post`` and ``ln_final`` caches
    hold the unscaled stream, and ``b_U`` is not scaled); plain TransformerLens reproduces it with
    the same pre-hook (``readout_len_scale_hook``)."""
    positional: Literal["none", "learned", "rotary"] = "none"
    """Positional information. 'none' keeps W_pos at zero and frozen: the set task's input is a set."""
    tie_positions_from: Optional[int] = None
    """Learned positions only: position ``i >= N`` uses row ``N - 1`` or ``N - 2`` of ``W_pos``,
    whichever has the parity of ``i`` (a permanent hook on ``hook_pos_embed``). With N the
    training length, positions past it keep whose turn it is (OthelloGPT's collapse past move 30
    came from untrained rows that lose it) instead of reading untrained rows; rows N.. get no
    gradient. Plain TransformerLens needs the same hook (``tie_positions_hook``)."""
    n_ctx: Optional[int] = None
    """Context length; None means exactly what the task's longest evaluation length needs."""
    attn_dropout: float = 0.0
    """Dropout on attention probabilities (hook_pattern), train mode only."""
    resid_dropout: float = 0.0
    """Dropout on each attention and MLP output before it joins the residual stream."""
    embed_dropout: float = 0.0
    """Dropout on the token (plus positional) embedding."""

    def validate(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.d_mlp is not None and self.d_mlp < 1:
            raise ConfigError(f"model.d_mlp must be positive, got {self.d_mlp}")
        for name in ("attn_dropout", "resid_dropout", "embed_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {p}")
        if self.out_rescale_len is not None and self.out_rescale_len < 1:
            raise ConfigError(
                f"model.out_rescale_len must be a positive number of positions, got {self.out_rescale_len}"
            )
        if self.norm_position not in ("pre", "post"):
            raise ConfigError(f"model.norm_position must be 'pre' or 'post', got {self.norm_position!r}")
        if self.norm_position == "post" and self.normalization == "none":
            raise ConfigError("model.norm_position 'post' needs model.normalization LN or LNPre")
        if not self.final_norm and (self.normalization == "none" or self.norm_position == "post"):
            raise ConfigError(
                "model.final_norm=false drops the final LayerNorm of a pre-norm model; this model has none "
                "(normalization none, or Post-Norm)"
            )
        if not self.block_norms and (
            self.normalization == "none" or self.norm_position == "post" or not self.final_norm
        ):
            raise ConfigError(
                "model.block_norms=false keeps only the final LayerNorm of a pre-norm model; this model has none "
                "(normalization none, Post-Norm, or final_norm=false)"
            )
        if self.tie_positions_from is not None and (self.positional != "learned" or self.tie_positions_from < 2):
            raise ConfigError(
                "model.tie_positions_from needs learned positions and at least 2 trained positions, "
                f"got positional {self.positional!r}, {self.tie_positions_from}"
            )
        if self.positional == "rotary" and self.d_head % 2:
            raise ConfigError(f"model.d_head must be even for rotary positions, got {self.d_head}")
        from transformer_lens.utilities import SUPPORTED_ACTIVATIONS

        if self.act_fn not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"model.act_fn must be one of {', '.join(sorted(SUPPORTED_ACTIVATIONS))}, got {self.act_fn!r}"
            )


def check_hooked_config(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int) -> None:
    """Let TransformerLens check the model it would build (its config asserts), as one ConfigError,
    so a run is refused before its directory is made rather than when the model is built."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            HookedTransformerConfig(device="cpu", **hooked_config_kwargs(cfg, d_vocab, d_vocab_out, n_ctx))
    except (AssertionError, ValueError, TypeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(f"TransformerLens refuses this model config: {first}") from None


def hooked_config_kwargs(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int) -> dict:
    """JSON-safe keyword arguments for ``HookedTransformerConfig`` (saved in config.json)."""
    kw = dict(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        attn_only=cfg.attn_only,
        # post-norm LayerNorms are added by add_post_norm; TransformerLens itself sees none
        normalization_type=None if cfg.normalization == "none" or cfg.norm_position == "post" else cfg.normalization,
        positional_embedding_type="rotary" if cfg.positional == "rotary" else "standard",
        default_prepend_bos=False,
    )
    if not cfg.attn_only:
        kw.update(d_mlp=cfg.d_mlp or 4 * cfg.d_model, act_fn=cfg.act_fn)
    if cfg.positional == "rotary":
        kw.update(rotary_dim=cfg.d_head)
    return kw


def _dropout_hook(p: float):
    def hook(x: torch.Tensor, hook) -> torch.Tensor:
        return F.dropout(x, p, training=hook.training)

    return hook


def add_dropout_hooks(model: HookedTransformer, cfg: ModelConfig) -> None:
    """Register the config's dropout as permanent hooks (they survive ``reset_hooks()``)."""
    if cfg.embed_dropout > 0:
        # blocks.0.hook_resid_pre is token plus positional embedding (GPT-2 style embedding
        # dropout); with positional 'none' or 'rotary' it equals hook_embed.
        model.add_perma_hook("blocks.0.hook_resid_pre", _dropout_hook(cfg.embed_dropout))
    for layer in range(cfg.n_layers):
        if cfg.attn_dropout > 0:
            model.add_perma_hook(f"blocks.{layer}.attn.hook_pattern", _dropout_hook(cfg.attn_dropout))
        if cfg.resid_dropout > 0:
            model.add_perma_hook(f"blocks.{layer}.hook_attn_out", _dropout_hook(cfg.resid_dropout))
            if not cfg.attn_only:
                model.add_perma_hook(f"blocks.{layer}.hook_mlp_out", _dropout_hook(cfg.resid_dropout))


def _apply(norm: torch.nn.Module):
    def hook(x: torch.Tensor, hook) -> torch.Tensor:
        return norm(x)

    return hook


def add_post_norm(model: HookedTransformer, cfg: ModelConfig) -> None:
    """Post-Norm in a ``HookedTransformer``: a LayerNorm after each residual add.

    TransformerLens has no post-norm mode. Each block gets TransformerLens ``LayerNorm`` modules
    (``ln_post_attn``, and ``ln_post_mlp`` with an MLP; ``LayerNormPre`` for LNPre), applied by
    permanent hooks: on ``hook_resid_mid`` after the attention add (on ``hook_resid_post`` in an
    attention-only block), and on ``hook_resid_post`` after the MLP add. A hook's output replaces
    the activation, so the next sublayer and the next block read the normalised stream, and caches
    hold it. The modules are the block's children, so their weights are in the state dict
    (``blocks.{l}.ln_post_attn.w`` ...). Plain TransformerLens reproduces the model from
    ``config.json``'s ``hooked_transformer_config`` plus the same modules and hooks."""
    from transformer_lens.components import LayerNorm, LayerNormPre

    norm_cls = LayerNorm if cfg.normalization == "LN" else LayerNormPre
    device = model.W_E.device
    for layer, block in enumerate(model.blocks):
        block.ln_post_attn = norm_cls(model.cfg).to(device)
        attn_hook = "hook_resid_post" if cfg.attn_only else "hook_resid_mid"
        model.add_perma_hook(f"blocks.{layer}.{attn_hook}", _apply(block.ln_post_attn))
        if not cfg.attn_only:
            block.ln_post_mlp = norm_cls(model.cfg).to(device)
            model.add_perma_hook(f"blocks.{layer}.hook_resid_post", _apply(block.ln_post_mlp))
    model.setup()  # register the new modules' hook points (ln_post_*.hook_scale) by name


def attended(x: torch.Tensor, query_axis: int) -> torch.Tensor:
    """Positions each query attends to under a causal mask (1, 2, ...), shaped to broadcast."""
    n = torch.arange(1, x.shape[query_axis] + 1, device=x.device, dtype=x.dtype)
    shape = [1] * x.ndim
    shape[query_axis] = -1
    return n.view(shape)


def _ssmax_hook(block: torch.nn.Module):
    def hook(scores: torch.Tensor, hook) -> torch.Tensor:  # [batch, head, query, key]
        # read through the block at call time (not captured), so functional_call's weights are used
        factor = block.attn_ssmax.view(1, -1, 1, 1) * torch.log(attended(scores, 2))
        # masked scores are -inf: scale zeros in their place, or -inf * 0 (a query attending to one
        # position) is NaN, and so is the gradient of s_h through the branch torch.where drops
        keep = torch.isfinite(scores)
        return torch.where(keep, torch.where(keep, scores, 0.0) * factor, scores)

    return hook


def out_rescale_hook(n_train: int):
    """Attention output at a query attending to n positions times max(1, n / n_train)."""

    def hook(out: torch.Tensor, hook) -> torch.Tensor:  # [batch, query, d_model]
        return out * (attended(out, 1) / n_train).clamp(min=1.0)

    return hook


def tied_position_rows(n_pos: int, trained: int, device=None) -> torch.Tensor:
    """The ``W_pos`` row each position reads under ``tie_positions_from=trained``: itself before
    ``trained``, then the last trained row of its parity (``trained - 1``, ``trained - 2``, ...)."""
    i = torch.arange(n_pos, device=device)
    same = trained - 1 - (i - (trained - 1)) % 2
    return torch.where(i >= trained, same, i)


def tie_positions_hook(trained: int):
    """``hook_pos_embed`` ([batch, pos, d_model]) with untrained positions replaced by tied rows."""

    def hook(pos_embed: torch.Tensor, hook) -> torch.Tensor:
        return pos_embed[:, tied_position_rows(pos_embed.shape[1], trained, pos_embed.device)]

    return hook


def readout_len_factor(params: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """exp(a + b log n) for ``params`` = (a, b) and attended counts ``n``."""
    return torch.exp(params[0] + params[1] * torch.log(n))


def readout_len_scale_hook(model: torch.nn.Module):
    """Forward pre-hook for ``model.unembed``: the residual ([batch, pos, d_model]) times
    exp(a + b log n), with n = pos + 1 the positions a causal query attends to."""

    def hook(unembed: torch.nn.Module, args: tuple):
        resid = args[0]
        # read through the model at call time (not captured), so functional_call's weights are used
        return (resid * readout_len_factor(model.readout_len_scale, attended(resid, resid.ndim - 2)),)

    return hook


def add_length_options(model: HookedTransformer, cfg: ModelConfig) -> None:
    """``ssmax`` (a learned per-head scale ``blocks.{l}.attn_ssmax`` on hook_attn_scores),
    ``out_rescale_len`` (on hook_attn_out), ``tie_positions_from`` (on hook_pos_embed) and
    ``readout_len_scale`` (a forward pre-hook on ``unembed``), as permanent hooks; their parameters
    are in the state dict, so ``load_run`` rebuilds them exactly."""
    if cfg.readout_len_scale:
        model.readout_len_scale = torch.nn.Parameter(torch.zeros(2, device=model.W_E.device))
        model.unembed.register_forward_pre_hook(readout_len_scale_hook(model))
    if cfg.tie_positions_from is not None:
        model.add_perma_hook("hook_pos_embed", tie_positions_hook(cfg.tie_positions_from))
    for layer, block in enumerate(model.blocks):
        if cfg.ssmax:
            block.attn_ssmax = torch.nn.Parameter(torch.ones(cfg.n_heads, device=model.W_E.device))
            model.add_perma_hook(f"blocks.{layer}.attn.hook_attn_scores", _ssmax_hook(block))
        if cfg.out_rescale_len is not None:
            model.add_perma_hook(f"blocks.{layer}.hook_attn_out", out_rescale_hook(cfg.out_rescale_len))


def check_tokens(embed: torch.nn.Module, args: tuple) -> None:
    """Forward pre-hook on ``embed``: every input token must be a row of ``W_E``.

    Without it a token past the vocabulary raises an IndexError deep inside TransformerLens, and a
    negative one silently reads a row from the end (-2 is the last row but one). Every probe,
    patching run and intervention goes through the embedding, so all of them inherit the check.
    It costs one device-to-host sync per forward, so CUDA training steps (whose batches the task
    builds valid) skip it."""
    tokens = args[0] if args else None
    if not isinstance(tokens, torch.Tensor) or (embed.training and tokens.is_cuda):
        return
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise InputError(f"tokens must be integers, got {tokens.dtype}")
    d_vocab = embed.W_E.shape[0]
    bad = (tokens < 0) | (tokens >= d_vocab)
    if bool(bad.any()):
        where = [int(i) for i in bad.nonzero()[0]]
        raise InputError(
            f"token {int(tokens[tuple(where)])} at index {where} is outside the vocabulary 0..{d_vocab - 1}"
        )


def build_hooked(kwargs: dict, device: torch.device | str = "cpu", check_inputs: bool = True) -> HookedTransformer:
    """A plain ``HookedTransformer`` from saved ``HookedTransformerConfig`` keyword arguments.

    ``check_inputs=False`` leaves out the token-range check, for a model that only ever sees
    batches the task built (the batched ensemble, where a data-dependent check cannot run)."""
    with warnings.catch_warnings():
        # HookedTransformer warns that it is deprecated in favour of TransformerBridge (TL 4.0).
        # We pin transformer-lens<4 on purpose, so the warning only adds noise to every run.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*HookedTransformer.*")
        model = HookedTransformer(HookedTransformerConfig(device=str(device), **kwargs), move_to_device=True)
    if check_inputs:
        model.embed.register_forward_pre_hook(check_tokens)
    return model


def build_model(
    cfg: ModelConfig,
    d_vocab: int,
    d_vocab_out: int,
    n_ctx: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    check_inputs: bool = True,
) -> HookedTransformer:
    """Build a freshly initialised model with dropout hooks; the global RNG is left untouched."""
    cfg.validate()
    kwargs = hooked_config_kwargs(cfg, d_vocab, d_vocab_out, n_ctx)
    # manual_seed reseeds every CUDA device too, so all of them are forked (not only the CPU's)
    with forked_rng():
        torch.manual_seed(seed)
        model = build_hooked(kwargs, device, check_inputs)
    add_length_options(model, cfg)
    if not cfg.final_norm:
        model.ln_final = torch.nn.Identity()
        model.setup()  # drop ln_final's hook points from the hook dict
    if not cfg.block_norms:
        for block in model.blocks:
            block.ln1 = torch.nn.Identity()
            if hasattr(block, "ln2"):
                block.ln2 = torch.nn.Identity()
        model.setup()
    # what hooks do to the forward pass, for probes whose exact decompositions assume plain TL
    # only the options that apply: where the norms sit means nothing without norms
    norms = (
        {"norm_position": cfg.norm_position, "final_norm": cfg.final_norm, "block_norms": cfg.block_norms}
        if cfg.normalization != "none"
        else {}
    )
    model.workbench_options = {
        "normalization": cfg.normalization,
        **norms,
        "ssmax": cfg.ssmax,
        "out_rescale_len": cfg.out_rescale_len,
        "readout_len_scale": cfg.readout_len_scale,
        "tie_positions_from": cfg.tie_positions_from,
    }
    if cfg.norm_position == "post":
        with forked_rng():  # (LayerNorm starts at w = 1, b = 0; nothing random, but keep it so)
            add_post_norm(model, cfg)
    if cfg.positional == "none":
        # Zero and frozen W_pos: the state dict alone then reproduces the model in plain TL.
        with torch.no_grad():
            model.W_pos.zero_()
        model.W_pos.requires_grad_(False)
    add_dropout_hooks(model, cfg)
    return model


def additive_readout_problem(model) -> str | None:
    """Why the residual stream of ``model`` is not a plain sum read out by the final norm and
    ``W_U``, or None. Post-Norm normalises after every add; output rescaling multiplies
    ``hook_attn_out`` by a per-position factor that ``W_O`` does not carry. TransformerLens's
    ``apply_ln`` decompositions do not add up to such a model's logits; ``interp/core/readout.py``
    carries each component through every norm instead. (Scalable softmax only changes the
    pattern, which the decompositions read from the cache.)"""
    options = getattr(model, "workbench_options", {})
    if options.get("norm_position") == "post":
        return "it has Post-Norm (LayerNorm after each residual add)"
    if not has_final_norm(model) and model.cfg.normalization_type is not None:
        return "it has no final LayerNorm (model.final_norm=false)"
    if options.get("out_rescale_len") is not None:
        return "it rescales attention outputs by position (model.out_rescale_len)"
    if options.get("readout_len_scale"):
        return "it scales the residual before the unembedding by a learned function of length (model.readout_len_scale)"
    return None


def has_final_norm(model) -> bool:
    """Whether a LayerNorm (``ln_final``, with its ``hook_scale``) sits before the unembedding."""
    return model.cfg.normalization_type is not None and getattr(model, "workbench_options", {}).get("final_norm", True)


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Named parameters that the optimizer (and weight averaging) acts on."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
