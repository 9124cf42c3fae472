"""A plain PyTorch GPT of a ``HookedTransformer``'s shape, nanoGPT style, as a speed baseline.

The same layers, widths, heads, MLP, learned positions, LayerNorm, GELU, untied unembedding and
dropout sites (embedding, attention probabilities, each sublayer's output) as our model, but
written for speed: ``F.layer_norm``, ``F.scaled_dot_product_attention`` with a causal mask (the
fused flash kernels), one QKV matmul, no hooks. ``time_plain`` times its pure training steps
(AdamW, bf16 autocast on CUDA, optionally compiled) on random tokens at a given batch and
context, so ``othello_gpu.py`` can print our tokens/s as a ratio of it in the same process.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, d_head: int, d_mlp: int, p: tuple[float, float]):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * n_heads * d_head)
        self.out = nn.Linear(n_heads * d_head, d)
        self.fc, self.proj = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)
        self.n_heads, self.d_head = n_heads, d_head
        self.attn_p, self.resid_p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        # dropout on the attention probabilities, as our hook_pattern dropout
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.attn_p if self.training else 0.0)
        x = x + F.dropout(self.out(a.transpose(1, 2).reshape(b, t, -1)), self.resid_p, self.training)
        return x + F.dropout(self.proj(F.gelu(self.fc(self.ln2(x)))), self.resid_p, self.training)


def copy_from_hooked(plain: "PlainGPT", model) -> "PlainGPT":
    """Load a ``HookedTransformer``'s weights (pre-norm LN, learned positions, MLPs) into ``plain``."""
    H, dh = model.cfg.n_heads, model.cfg.d_head
    with torch.no_grad():
        plain.embed.weight.copy_(model.W_E)
        plain.pos.weight.copy_(model.W_pos)
        for blk, ours in zip(plain.blocks, model.blocks):
            a = ours.attn
            blk.qkv.weight.copy_(torch.cat([w.permute(0, 2, 1).reshape(H * dh, -1) for w in (a.W_Q, a.W_K, a.W_V)]))
            blk.qkv.bias.copy_(torch.cat([b.reshape(-1) for b in (a.b_Q, a.b_K, a.b_V)]))
            blk.out.weight.copy_(a.W_O.reshape(H * dh, -1).T)
            blk.out.bias.copy_(a.b_O)
            blk.fc.weight.copy_(ours.mlp.W_in.T)
            blk.fc.bias.copy_(ours.mlp.b_in)
            blk.proj.weight.copy_(ours.mlp.W_out.T)
            blk.proj.bias.copy_(ours.mlp.b_out)
            for ln, tl in ((blk.ln1, ours.ln1), (blk.ln2, ours.ln2)):
                ln.weight.copy_(tl.w)
                ln.bias.copy_(tl.b)
        plain.ln_f.weight.copy_(model.ln_final.w)
        plain.ln_f.bias.copy_(model.ln_final.b)
        plain.unembed.weight.copy_(model.W_U.T)
        plain.unembed.bias.copy_(model.b_U)
    return plain


class PlainGPT(nn.Module):
    def __init__(self, cfg, d_vocab: int, n_ctx: int, dropout: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        """``cfg`` is a ``HookedTransformerConfig``; ``dropout`` is (attention, residual,
        embedding), which that config does not hold (our dropout hooks do)."""
        super().__init__()
        d = cfg.d_model
        self.embed, self.pos = nn.Embedding(d_vocab, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.d_head, cfg.d_mlp, dropout[:2]) for _ in range(cfg.n_layers)
        )
        self.ln_f, self.unembed = nn.LayerNorm(d), nn.Linear(d, cfg.d_vocab_out)
        self.embed_p = dropout[2]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        x = F.dropout(x, self.embed_p, self.training)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_f(x))


def time_plain(
    shape,
    d_vocab: int,
    n_ctx: int,
    batch: int,
    T: int,
    device,
    bf16: bool,
    compiled: bool,
    dropout: tuple[float, float, float],
    warmup: int = 20,
    timed: int = 50,
    lr: float = 5e-4,
) -> dict:
    """Seconds per training step of the plain model at ``batch`` x ``T`` tokens, after ``warmup``
    steps. ``dropout`` is (attention, residual, embedding)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    model = PlainGPT(shape, d_vocab, n_ctx, dropout).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=device.type == "cuda")
    step_fn = torch.compile(model) if compiled else model
    tokens = torch.randint(0, d_vocab, (batch, T + 1), generator=gen).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:] % shape.d_vocab_out
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = step_fn(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(timed):
        step()
    sync()
    step_s = (time.perf_counter() - t0) / timed
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("embed", "pos", "unembed")))
    return {"step_s": step_s, "tokens_per_s": batch * T / step_s, "non_embed": n}
