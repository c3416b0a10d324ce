"""Two-stream transformer blocks: the ONE STG-CMA block, and the baselines' blocks.

A block here holds only the trainable part; the frozen sub-layers come from the backbone's block
parts (``stgcma.backbones``), passed to ``forward`` as ``frozen``. So the same ``STGCMABlock`` serves
every task and every backbone (ViT/CLIP and Swin); backbones differ only in how ``frozen`` attends
(global vs shifted windows) and groups tokens for the spatial cross-modal attention.

STG-CMA per block and stream x in {v, a} (METHOD.md):
1. temporal:  x += DropPath(T_x(MSA_frozen(LN1(x)) along time))
2. spatial:   s = MSA_frozen(LN1(x)); H = GELU(S.fc1(s)); H <-> cross-attn; x += s + S.fc2(H)
3. global:    m = MLP_frozen(LN2(x)); G = GELU(M.fc1(m)); G <-> cross-attn; x += m + M.fc2(G)

Steps 1 and 2 attend with the same frozen Q/K/V weights over x before and after the temporal
update. The block projects each token once: the spatial stage's q, k, v come from the temporal
stage's plus a rank-h correction (``SharedQKV.qkv_after_update``, exact), which removes a quarter
of a frozen block's work from every block. For the backward pass it keeps one projection per
stream (the temporal stage's is rebuilt from the spatial stage's), and the spatial adapters, like
the temporal ones, fold the attention's output projection in, so they keep the attention's own
saved output instead of a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stgcma.adapters import Adapter, BottleneckCrossAttention, LavishAdapter, TemporalBias, drop_path, drop_path_scale
from stgcma.backbones import QKVHandle, add_update


@dataclass
class StreamContext:
    """Shapes a block needs: batch, segments, and each stream's token grid (for Swin windows)."""

    batch: int
    frames: int
    grid_v: tuple[int, int]
    grid_a: tuple[int, int]


def to_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*T, N, D) -> (B*N, T, D): the sequence axis becomes time."""
    BT, N, D = x.shape
    return x.reshape(BT // frames, frames, N, D).transpose(1, 2).reshape(-1, frames, D)


def from_time(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*N, T, D) -> (B*T, N, D), the inverse of ``to_time``."""
    BN, T, D = x.shape
    return x.reshape(batch, BN // batch, T, D).transpose(1, 2).reshape(-1, BN // batch, D)


def _pair(fn, xv: torch.Tensor, xa: torch.Tensor, *args_v_a) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a frozen op to both streams, in one call when their shapes allow."""
    if xv.shape[1:] == xa.shape[1:] and (not args_v_a or args_v_a[0] == args_v_a[1]):
        out = fn(torch.cat([xv, xa]), *args_v_a[:1])
        return out[: xv.shape[0]], out[xv.shape[0]:]
    return fn(xv, *args_v_a[:1]), fn(xa, *args_v_a[1:2])


class STGCMABlock(nn.Module):
    """Six adapters (T, S, M per stream) and one gated bottleneck cross-attention around a frozen block."""

    def __init__(
        self, dim: int, hidden: int, num_heads: int, num_frames: int, *, temporal: bool = True,
        spatial: bool = True, global_: bool = True, temporal_bias: bool = False, drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.temporal_v = Adapter(dim, hidden) if temporal else None
        self.temporal_a = Adapter(dim, hidden) if temporal else None
        self.bias_v = TemporalBias(num_frames, num_heads) if temporal and temporal_bias else None
        self.bias_a = TemporalBias(num_frames, num_heads) if temporal and temporal_bias else None
        self.spatial_v = Adapter(dim, hidden) if spatial else None
        self.spatial_a = Adapter(dim, hidden) if spatial else None
        self.global_v = Adapter(dim, hidden) if global_ else None
        self.global_a = Adapter(dim, hidden) if global_ else None
        self.cross = BottleneckCrossAttention() if spatial or global_ else None

    def _temporal(self, frozen: nn.Module, xv: torch.Tensor, xa: torch.Tensor, ctx: StreamContext):
        """x += DropPath(T_x(MSA(LN1(x)) along time)), the MSA output projection folded into T_x.fc1."""
        tv, ta = to_time(xv, ctx.frames), to_time(xa, ctx.frames)  # (B*N, T, D)
        if self.bias_v is None:
            ov, oa = _pair(lambda x: frozen.attend_time(x, project=False), tv, ta)
        elif tv.shape == ta.shape:
            bias = torch.stack([self.bias_v(), self.bias_a()]).unsqueeze(1)  # (2, 1, heads, T, T)
            both = frozen.attend_time(torch.stack([tv, ta]), bias, project=False)  # (2, B*N, T, D)
            ov, oa = both[0], both[1]
        else:
            ov = frozen.attend_time(tv, self.bias_v(), project=False)
            oa = frozen.attend_time(ta, self.bias_a(), project=False)
        weight, bias = frozen.output_projection()
        dv = self.temporal_v.up(self.temporal_v.down_after(ov, weight, bias))  # (B*N, T, D)
        da = self.temporal_a.up(self.temporal_a.down_after(oa, weight, bias))
        dv, da = from_time(dv, ctx.batch), from_time(da, ctx.batch)  # (B*T, N, D)
        rate, training = self.drop_path_rate, self.training
        xv = xv + drop_path(dv.reshape(ctx.batch, -1, dv.shape[-1]), rate, training).reshape(dv.shape)
        xa = xa + drop_path(da.reshape(ctx.batch, -1, da.shape[-1]), rate, training).reshape(da.shape)
        return xv, xa

    def _temporal_update(self, frozen: nn.Module, x: torch.Tensor, ctx: StreamContext, adapter: Adapter,
                         bias: TemporalBias | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``_temporal`` for one stream with one Q/K/V projection for both attention passes of the block.

        Returns the updated stream and its ``project_qkv``, which the spatial stage attends with: the
        temporal update enters through ``frozen.qkv_after_update`` (a rank-h correction) instead of a
        second projection of every token.
        """
        qkv = frozen.project_qkv(x)  # (B*T, N, 3D); per stream: LN1 and qkv_after_update keep the same x
        handle = QKVHandle()  # backward: qkv rebuilt from the spatial stage's projection, not kept
        out = frozen.attend_time_projected(qkv, ctx.frames, None if bias is None else bias(), handle)  # (B*N, T, D)
        hidden = from_time(adapter.down_after(out, *frozen.output_projection()), ctx.batch)  # (B*T, N, h)
        scale = drop_path_scale(ctx.batch, self.drop_path_rate, self.training, x)
        if scale is not None:
            scale = scale.repeat_interleave(ctx.frames)  # (B*T,)
        y = add_update(x, adapter.up(hidden), scale)
        return y, frozen.qkv_after_update(qkv, x, y, hidden, adapter.fc2, scale, handle)

    def _adapt(self, frozen: nn.Module, sv: torch.Tensor, sa: torch.Tensor, adapter_v: Adapter,
               adapter_a: Adapter, ctx: StreamContext | None, stage: str,
               heads: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapter outputs for frozen sub-layer outputs sv, sa, with cross-attention in the bottleneck.

        ``ctx`` given: cross-attention inside the frozen block's token groups (spatial stage);
        ``ctx`` None: over all tokens of a frame (global stage). ``heads``: the attention's output
        before its projection (sv, sa = its projections); the adapters then fold that projection in
        and keep the attention's own saved output for backward instead of sv, sa.
        """
        if heads is None:
            hv, ha = adapter_v.down(sv), adapter_a.down(sa)  # (B*T, N, h)
        else:
            weight, bias = frozen.output_projection()
            hv, ha = adapter_v.down_after(heads[0], weight, bias), adapter_a.down_after(heads[1], weight, bias)
        if ctx is not None:
            gv, ga = frozen.group(hv, ctx.grid_v), frozen.group(ha, ctx.grid_a)  # (B*T*groups, n, h)
            gv, ga = self.cross(gv, ga, stage)
            hv, ha = frozen.ungroup(gv, ctx.grid_v), frozen.ungroup(ga, ctx.grid_a)
        else:
            hv, ha = self.cross(hv, ha, stage)
        return adapter_v.up(hv), adapter_a.up(ha)

    def forward(self, frozen: nn.Module, xv: torch.Tensor, xa: torch.Tensor, ctx: StreamContext):
        """xv: (B*T, Nv, D), xa: (B*T, Na, D) -> same shapes."""
        if self.temporal_v is not None and frozen.shares_qkv:
            xv, qkv_v = self._temporal_update(frozen, xv, ctx, self.temporal_v, self.bias_v)
            xa, qkv_a = self._temporal_update(frozen, xa, ctx, self.temporal_a, self.bias_a)
            # per stream: concatenated, the attention would keep a copy of both projections, which
            # the correction's backward pass keeps already
            heads = frozen.attend_heads(qkv_v, ctx.grid_v), frozen.attend_heads(qkv_a, ctx.grid_a)  # (B*T, N, D)
            sv, sa = frozen.project_heads(heads[0]), frozen.project_heads(heads[1])
        else:
            if self.temporal_v is not None:
                xv, xa = self._temporal(frozen, xv, xa, ctx)
            sv, sa = _pair(frozen.attend, xv, xa, ctx.grid_v, ctx.grid_a)
            heads = None
        if self.spatial_v is not None:
            uv, ua = self._adapt(frozen, sv, sa, self.spatial_v, self.spatial_a, ctx, "spatial", heads)
            sv, sa = sv + uv, sa + ua
        xv, xa = xv + sv, xa + sa
        mv, ma = _pair(frozen.feed_forward, xv, xa)
        if self.global_v is not None:
            uv, ua = self._adapt(frozen, mv, ma, self.global_v, self.global_a, None, "global")
            mv, ma = mv + uv, ma + ua
        return xv + mv, xa + ma


class LavishBlock(nn.Module):
    """LAVISH baseline: latent-token adapters in parallel with the frozen attention and MLP."""

    def __init__(self, dim: int, hidden: int, num_latents: int) -> None:
        super().__init__()
        self.attn_v = LavishAdapter(dim, hidden, num_latents)
        self.attn_a = LavishAdapter(dim, hidden, num_latents)
        self.mlp_v = LavishAdapter(dim, hidden, num_latents)
        self.mlp_a = LavishAdapter(dim, hidden, num_latents)

    def forward(self, frozen: nn.Module, xv: torch.Tensor, xa: torch.Tensor, ctx: StreamContext):
        sv, sa = _pair(frozen.attend, xv, xa, ctx.grid_v, ctx.grid_a)
        xv, xa = xv + sv + self.attn_v(xv, xa), xa + sa + self.attn_a(xa, xv)
        mv, ma = _pair(frozen.feed_forward, xv, xa)
        return xv + mv + self.mlp_v(xv, xa), xa + ma + self.mlp_a(xa, xv)


class PlainBlock(nn.Module):
    """No adaptation: both streams through the backbone block independently (probe, full fine-tuning)."""

    def forward(self, frozen: nn.Module, xv: torch.Tensor, xa: torch.Tensor, ctx: StreamContext):
        sv, sa = _pair(frozen.attend, xv, xa, ctx.grid_v, ctx.grid_a)
        xv, xa = xv + sv, xa + sa
        mv, ma = _pair(frozen.feed_forward, xv, xa)
        return xv + mv, xa + ma
