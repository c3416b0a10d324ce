"""Frozen image backbones shared by the audio and the visual stream (STG-CMA, arXiv 2403.01862).

This is the ONLY module that touches timm / open_clip internals. It turns a source model into a
small uniform *trunk* made of the source's own modules (same tensors, no copies):

- ``ViTTrunk``: patch embedding, class token, positional embedding, ``ln_pre``, a list of
  ``ViTBlockParts`` (LN1, fused-SDPA attention, LN2, MLP) and the final norm.
- ``SwinTrunk``: patch embedding, stages of ``SwinBlockParts`` (shifted-window attention with the
  relative position bias) and patch merging, and the final norm.

Each block part exposes the three frozen sub-layers STG-CMA needs: ``attend`` (spatial MSA on
LN1(x)), ``attend_time`` (the same MSA weights along the time axis) and ``feed_forward`` (MLP on
LN2(x)), plus ``group``/``ungroup``, the token partition inside which the spatial cross-modal
attention runs (the whole frame for ViT, aligned windows for Swin). ``SharedQKV`` gives both the
same attention from one Q/K/V projection of the tokens, updated exactly after the temporal stage.

The audio stream gets its own frozen patch embedding derived from the image one (sum over RGB for
ViT/CLIP, mean for Swin) and, for ViT, a positional embedding resampled to the audio patch grid.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stgcma.config import BackboneConfig, ConfigError, PreprocessConfig


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for but cannot be obtained; the message says how to provide them."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone from its source library."""

    family: str  # "vit" or "swin"
    library: str  # "open_clip" or "timm"
    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # our tag -> source pretrained tag
    description: str = ""


_TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}

BACKBONES: dict[str, BackboneSpec] = {
    "clip-vit-b16": BackboneSpec(
        "vit", "open_clip", "ViT-B-16", {"force_quick_gelu": True}, {"openai": "openai"},
        "OpenAI CLIP ViT-B/16 image tower (open_clip)",
    ),
    "clip-vit-l14": BackboneSpec(
        "vit", "open_clip", "ViT-L-14", {"force_quick_gelu": True}, {"openai": "openai"},
        "OpenAI CLIP ViT-L/14 image tower (open_clip)",
    ),
    "timm-clip-vit-l14": BackboneSpec(
        "vit", "timm", "vit_large_patch14_clip_224", {}, {"openai": "openai"},
        "OpenAI CLIP ViT-L/14 image tower (timm port)",
    ),
    "swin-b": BackboneSpec(
        "swin", "timm", "swin_base_patch4_window7_224", {}, {"in22k": "ms_in22k"},
        "Swin-B, window 7, 224 px, ImageNet-22k (timm)",
    ),
    "swin-l": BackboneSpec(
        "swin", "timm", "swin_large_patch4_window7_224", {}, {"in22k": "ms_in22k"},
        "Swin-L, window 7, 224 px, ImageNet-22k (timm)",
    ),
    "vit-test": BackboneSpec(
        "vit", "timm", "vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
        {}, "4x4-patch toy ViT for tests (timm)",
    ),
    "clip-test": BackboneSpec(
        "vit", "open_clip", "stgcma-clip-test", {"force_quick_gelu": True}, {}, "toy CLIP tower (QuickGELU) for tests",
    ),
    "swin-test": BackboneSpec(
        "swin", "timm", "swin_tiny_patch4_window7_224",
        {"img_size": 32, "embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window_size": 4},
        {}, "two-stage toy Swin for tests (timm)",
    ),
    "synth-vit": BackboneSpec(
        "vit", "timm", "vit_tiny_patch16_224",
        {"img_size": 112, "patch_size": 16, "embed_dim": 192, "depth": 6, "num_heads": 3},
        {}, "ViT-Tiny/16 at 112 px, 6 blocks: the embedded default's backbone (pretrained on SynthAV frames)",
    ),
}


# ----------------------------------------------------------------------------------------------
# Shared frozen sub-layers
# ----------------------------------------------------------------------------------------------


def _sigma(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm's sigma, sqrt(biased variance over the last dim + eps): (..., D) -> (..., 1).

    Centres before squaring instead of calling ``x.var``, which is 10x slower on CPU.
    """
    return torch.sqrt((x - x.mean(-1, keepdim=True)).square_().mean(-1, keepdim=True) + eps)


def _sigma_backward(x: torch.Tensor, sigma: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The gradient of ``_sigma(x)`` with respect to x: grad * (x - mean x) / (D sigma)."""
    return (x - x.mean(-1, keepdim=True)).mul_(grad / (x.shape[-1] * sigma))


def add_update(x: torch.Tensor, update: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """y = x + scale * update, the temporal stage's residual step, (B*T, N, D) with scale (B*T,) or None.

    ``STGCMABlock`` makes y with it and ``_UpdatedScale``'s backward pass rebuilds y with it: one
    formula, so the rebuilt y is the forward one.
    """
    return x + (update if scale is None else update * scale[:, None, None])


class _TokenScale(torch.autograd.Function):
    """``_sigma`` keeping only x and sigma for the backward pass (a centred copy would cost a tensor the
    size of x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        sigma = _sigma(x, eps)
        ctx.save_for_backward(x, sigma)
        return sigma

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, sigma = ctx.saved_tensors
        return _sigma_backward(x, sigma, grad), None


class _UpdatedScale(torch.autograd.Function):
    """LayerNorm's sigma of y = x + scale * (hidden @ weight^T + bias), like ``_TokenScale`` but keeping
    x and hidden instead of y.

    x is kept by LN1 and hidden by the adapter's up-projection anyway; the backward pass rebuilds y
    with the same (h -> D) matmul instead of keeping a (tokens, D) tensor per block and stream. The
    gradient goes to y, whose own graph carries it on to x, hidden and the adapter.
    y, x: (B*T, N, D); hidden: (B*T, N, h); scale: (B*T,) or None (then 1) -> (B*T, N, 1).
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, x: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, scale: torch.Tensor | None, eps: float) -> torch.Tensor:
        sigma = _sigma(y, eps)
        ctx.save_for_backward(x, hidden, weight, bias, scale, sigma)
        return sigma

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, hidden, weight, bias, scale, sigma = ctx.saved_tensors
        # as the block made it, also under autocast (which hands hidden over in its reduced precision)
        y = add_update(x, F.linear(hidden, weight.to(hidden.dtype), bias.to(hidden.dtype)), scale)
        return _sigma_backward(y, sigma, grad), None, None, None, None, None, None


def _time_major(qkv: torch.Tensor, frames: int, heads: int) -> torch.Tensor:
    """Time-major q, k, v of a frame-major qkv, in one copy: (B*T, N, 3D) -> (3, B*N*heads, T, d).

    Reduced precision (bf16, fp16) is computed in float32: the attention along time is a few T x T
    products per token, cheap next to the projection, and its softmax then runs at full precision.
    """
    BT, N, D3 = qkv.shape
    d = D3 // (3 * heads)
    dtype = torch.promote_types(qkv.dtype, torch.float32)
    time_major = qkv.new_empty(3, BT // frames, N, heads, frames, d, dtype=dtype)
    frame_major = qkv.reshape(BT // frames, frames, N, 3, heads, d)
    time_major.copy_(frame_major.permute(3, 0, 2, 4, 1, 5))  # (3, B, N, heads, T, d)
    return time_major.view(3, -1, frames, d)


def _time_weights(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) for q, k (B*N*heads, T, d) and bias (heads, T, T) or None.

    The softmax runs in place, written out: torch's kernel takes 5x longer over a last dim of T = 10.
    """
    G, T, d = q.shape
    scores = torch.bmm(q, k.transpose(1, 2)).mul_(d ** -0.5)  # (G, T, T)
    if bias is not None:
        scores.view(-1, heads, T, T).add_(bias.to(scores.dtype))
    scores.sub_(scores.amax(-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(-1, keepdim=True))


class QKVHandle:
    """Hands a frame-major qkv from ``_Reproject``'s backward pass to ``_TimeAttention``'s.

    The temporal stage's projection qkv(x) and the spatial stage's qkv(y) differ by the exact rank-h
    correction of ``SharedQKV.qkv_after_update``, so the backward pass rebuilds qkv(x) from qkv(y),
    which the spatial attention keeps anyway, instead of keeping both ((tokens, 3D) per block and
    stream). ``_Reproject``'s backward always runs first: the temporal attention's output reaches
    qkv(y) through the adapter's hidden units, so autograd cannot finish that output's gradient before it.
    """

    def __init__(self) -> None:
        self.qkv: torch.Tensor | None = None
        self.wanted = False  # set by the temporal attention when its backward pass will run

    def give(self, qkv: torch.Tensor) -> None:
        if self.wanted:  # else nothing would take it, and it would live until the graph is freed
            self.qkv = qkv

    def take(self) -> torch.Tensor:
        qkv, self.qkv = self.qkv, None
        if qkv is None:
            raise RuntimeError(
                "the temporal attention's backward pass ran before its Q/K/V were rebuilt: the gradient does "
                "not reach the spatial stage's projection (qkv_after_update) of the same block; pass handle=None "
                "to keep qkv instead")
        return qkv


class _TimeAttention(torch.autograd.Function):
    """Softmax attention along time over a frame-major qkv that keeps at most qkv (and the bias) for backward.

    With a ``QKVHandle`` it keeps no qkv at all: ``_Reproject``'s backward pass rebuilds it. Without,
    it keeps qkv; autograd's attention would add copies of the strided q, k, v and the T x T
    weights. Both passes copy q, k, v into time-major order once and run batched products over
    (token, head) pairs; the backward pass recomputes the weights (T x T per token and head: cheap)
    and writes the three gradients into one buffer. 2-core CPU, CLIP-B/16's video stream (T = 10):
    16 ms forward+backward, against 28 ms through SDPA's T x T path and a stacked gradient.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, frames: int, heads: int, bias: torch.Tensor | None,
                handle: QKVHandle | None) -> torch.Tensor:
        BT, N, D3 = qkv.shape
        with torch.autocast(qkv.device.type, enabled=False):  # float32 under autocast too, as in backward
            q, k, v = _time_major(qkv, frames, heads)  # each (B*N*heads, T, d)
            out = torch.bmm(_time_weights(q, k, bias, heads), v)  # (B*N*heads, T, d)
        ctx.save_for_backward(*((bias,) if handle is not None else (bias, qkv)))
        ctx.frames, ctx.heads, ctx.handle, ctx.shape = frames, heads, handle, qkv.shape
        if handle is not None:
            handle.wanted = any(ctx.needs_input_grad)
        out = out.view(BT // frames, N, heads, frames, -1).transpose(2, 3)  # (B, N, T, heads, d)
        return out.reshape(-1, frames, D3 // 3).to(qkv.dtype)  # (B*N, T, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        bias, *kept = ctx.saved_tensors
        qkv = kept[0] if kept else ctx.handle.take()
        frames, heads = ctx.frames, ctx.heads
        BT, N, D3 = qkv.shape
        B, d = BT // frames, D3 // (3 * heads)
        q, k, v = _time_major(qkv, frames, heads)  # each (B*N*heads, T, d)
        weights = _time_weights(q, k, bias, heads)  # (G, T, T), G = B*N*heads
        grad = grad.view(B, N, frames, heads, d).transpose(2, 3).to(q.dtype).reshape(-1, frames, d)  # (G, T, d)
        grads = q.new_empty(3, B, N, heads, frames, d)  # grad q, k, v, time-major
        grad_q, grad_k, grad_v = grads.view(3, -1, frames, d).unbind(0)
        torch.bmm(weights.transpose(1, 2), grad, out=grad_v)
        grad_scores = torch.bmm(grad, v.transpose(1, 2))  # (G, T, T): first the weights' gradient
        grad_scores.sub_((grad_scores * weights).sum(-1, keepdim=True)).mul_(weights)
        grad_bias = None
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = grad_scores.view(B, N, heads, frames, frames).sum_to_size(bias.shape).to(bias.dtype)
        grad_scores.mul_(d ** -0.5)
        torch.bmm(grad_scores, k, out=grad_q)
        torch.bmm(grad_scores.transpose(1, 2), q, out=grad_k)
        grad_qkv = grads.permute(1, 4, 2, 0, 3, 5).reshape(ctx.shape)  # (B, T, N, 3, heads, d) -> (B*T, N, 3D)
        return grad_qkv.to(qkv.dtype), None, None, grad_bias, None


def _add_correction(base: torch.Tensor, inputs: torch.Tensor, columns: torch.Tensor,
                    alpha: float = 1.0) -> torch.Tensor:
    """base += alpha * inputs @ columns^T, in place: the correction's rank-(h+2) term on a contiguous
    (B*T, N, 3D) base, inputs (B*T, N, h+2), columns (3D, h+2). Returns base."""
    base.view(-1, base.shape[-1]).addmm_(inputs.reshape(-1, inputs.shape[-1]), columns.T, alpha=alpha)
    return base


class _Reproject(torch.autograd.Function):
    """qkv(y) = inputs @ columns^T + ratio * qkv(x) (``SharedQKV.qkv_after_update``'s last step).

    Keeps its output, inputs (h+2 wide), columns and ratio, not qkv(x): the backward pass rebuilds
    qkv(x) = (qkv(y) - inputs @ columns^T) / ratio (ratio = sigma_x / sigma_y > 0) for its own
    gradient and hands it to the temporal attention's backward through ``handle``.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, inputs: torch.Tensor, columns: torch.Tensor, ratio: torch.Tensor,
                handle: QKVHandle) -> torch.Tensor:
        out = _add_correction(qkv * ratio, inputs, columns)  # one fresh tensor
        ctx.save_for_backward(out, inputs, columns, ratio)
        ctx.handle = handle
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out, inputs, columns, ratio = ctx.saved_tensors
        qkv = _add_correction(out.clone(), inputs, columns, alpha=-1).div_(ratio)  # qkv(x), rebuilt
        grad_ratio = (grad * qkv).sum(-1, keepdim=True) if ctx.needs_input_grad[3] else None
        ctx.handle.give(qkv)
        grad_qkv = grad * ratio if ctx.needs_input_grad[0] else None
        grad_inputs = grad @ columns if ctx.needs_input_grad[1] else None
        grad_columns = grad.flatten(0, -2).T @ inputs.flatten(0, -2) if ctx.needs_input_grad[2] else None
        return grad_qkv, grad_inputs, grad_columns, grad_ratio, None


class FrozenAttention(nn.Module):
    """Multi-head self-attention over a fused qkv projection, computed with SDPA.

    ``qkv`` and ``proj`` are the source model's own Linear layers (shared tensors).
    """

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, num_heads: int) -> None:
        super().__init__()
        self.qkv = qkv
        self.proj = proj
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, project: bool = True) -> torch.Tensor:
        """x: (..., N, D); bias: additive attention bias broadcastable to (..., heads, N, N).

        ``project=False`` returns the concatenated heads before the output projection, so a caller
        that feeds the result straight into another Linear can fold ``proj`` into it.
        """
        return self.attend_qkv(self.qkv(x), bias, project)

    def attend_qkv(self, qkv: torch.Tensor, bias: torch.Tensor | None = None, project: bool = True) -> torch.Tensor:
        """``forward`` from an already projected qkv: (..., N, 3D) -> (..., N, D)."""
        *lead, N, D3 = qkv.shape
        qkv = qkv.reshape(*lead, N, 3, self.num_heads, D3 // (3 * self.num_heads))
        q, k, v = qkv.movedim(-3, 0).transpose(-2, -3).unbind(0)  # each (..., heads, N, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(-2, -3).reshape(*lead, N, D3 // 3)  # (..., N, D)
        return self.proj(out) if project else out

    def attend_qkv_time(self, qkv: torch.Tensor, frames: int, bias: torch.Tensor | None = None,
                        handle: QKVHandle | None = None) -> torch.Tensor:
        """Attention along time from a frame-major qkv, before the output projection.

        qkv: (B*T, N, 3D) -> (B*N, T, D); bias: broadcastable to (heads, T, T). The time-major q, k, v
        are strided views, not copies, and the backward pass keeps nothing but qkv, or nothing at all
        with a ``QKVHandle`` that a later ``_Reproject`` of the same qkv fills.
        """
        return _TimeAttention.apply(qkv, frames, self.num_heads, bias, handle)


_GATE_ROWS = 256
MLP_ROWS = 1024


def by_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) for a token-wise fn of x (..., D), ``MLP_ROWS`` tokens at a time when no gradient is recorded.

    The frozen MLPs' (tokens, 4D) hidden activations are the largest tensors of a forward pass; in pieces
    they come from the allocator's free lists instead of fresh pages, which the kernel must zero first
    (CLIP-B/16's 12 video MLPs, 1970 tokens each: 1.37 -> 1.26 s on the 2-core CPU).
    """
    if torch.is_grad_enabled() or x.shape[:-1].numel() <= MLP_ROWS:
        return fn(x)
    flat = x.reshape(-1, x.shape[-1])  # (tokens, D)
    return torch.cat([fn(rows) for rows in flat.split(MLP_ROWS)]).view(*x.shape[:-1], -1)


def _quick_gelu_gate(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(1.702 x), in a new tensor: QuickGELU is x times this."""
    return x.mul(1.702).sigmoid_()


class _QuickGELUFunction(torch.autograd.Function):
    """x * sigmoid(1.702 x), saving only z = 1.702 x for the backward pass (autograd's own graph keeps x AND
    the sigmoid).

    x sigmoid(1.702 x) = silu(z) / 1.702, so its derivative in x is silu'(z): the backward pass is one
    fused ``silu_backward`` over z instead of recomputing the sigmoid and four passes over (tokens, 4D)
    (CLIP-B/16's video MLP: 12.5 -> 6.5 ms forward+backward on the 2-core CPU). The forward values are
    the reference's bit for bit.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        z = x.mul(1.702)
        ctx.save_for_backward(z)
        return torch.sigmoid(z).mul_(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad, z)


class LeanQuickGELU(nn.Module):
    """CLIP's QuickGELU with half the saved activations: the trunk's MLPs keep one (N, 4D) tensor per block, not two.

    Same forward values as open_clip's and timm's QuickGELU; the backward is one fused pass over the one
    saved tensor (``_QuickGELUFunction``). Without
    gradients it gates its input in place, ``_GATE_ROWS`` rows at a time, so the only new tensors are
    small: its input is the MLP's first projection, which nothing else reads.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _QuickGELUFunction.apply(x)
        if not x.is_contiguous():  # no row view to gate in place
            return _quick_gelu_gate(x).mul_(x)
        for rows in x.view(-1, x.shape[-1]).split(_GATE_ROWS):
            rows.mul_(_quick_gelu_gate(rows))
        return x


def _lean_activations(module: nn.Module) -> None:
    """Replace every QuickGELU (open_clip's or timm's) under ``module`` with ``LeanQuickGELU``, in place."""
    for name, child in list(module.named_children()):
        if type(child).__name__ == "QuickGELU":
            setattr(module, name, LeanQuickGELU())
        else:
            _lean_activations(child)


def _linear_from(weight: nn.Parameter, bias: nn.Parameter | None) -> nn.Linear:
    """An nn.Linear that shares (not copies) the given parameters."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = weight
    if bias is not None:
        layer.bias = bias
    return layer


def one_channel_conv(conv: nn.Conv2d, reduce: str) -> nn.Conv2d:
    """A 1-input-channel copy of an RGB patch embedding: weights summed (ViT/CLIP) or averaged (Swin) over RGB."""
    audio_conv = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, bias=conv.bias is not None)
    with torch.no_grad():
        weight = conv.weight.sum(dim=1, keepdim=True) if reduce == "sum" else conv.weight.mean(dim=1, keepdim=True)
        audio_conv.weight.copy_(weight)
        if conv.bias is not None:
            audio_conv.bias.copy_(conv.bias)
    return audio_conv


class SharedQKV:
    """One Q/K/V projection for both of STG-CMA's attention passes over a block (``ln1``, ``attn``).

    The temporal stage attends along time with ``project_qkv(x)``; the spatial stage needs the
    projection of x after the temporal update, which ``qkv_after_update`` derives exactly from the
    first at a fraction of the cost.
    """

    ln1: nn.Module
    attn: FrozenAttention
    # Below this width the projection is too cheap to pay for the correction's extra passes over
    # (tokens, 3D). STG-CMA block forward, shared over plain, 2-core CPU, T=10, 2026-12-05:
    # 0.86x at D=768 and 1024 (h = D/32), 0.90-0.98x at D=192-384 with 197 tokens a frame, but
    # 1.02-1.20x at D=192-384 with 50 (the embedded default's) and no gain in Swin's first stages.
    min_width: int = 512

    @property
    def shares_qkv(self) -> bool:
        """Whether the block uses ``qkv_after_update``: a LayerNorm with an affine scale, ``min_width`` or wider."""
        ln = self.ln1
        return isinstance(ln, nn.LayerNorm) and ln.weight is not None and ln.weight.numel() >= self.min_width

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """qkv(LN1(x)): (..., N, D) -> (..., N, 3D)."""
        return self.attn.qkv(self.ln1(x))

    def attend_projected(self, qkv: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The spatial ``attend`` from ``project_qkv``'s output: (B*T, N, 3D) -> (B*T, N, D)."""
        return self.project_heads(self.attend_heads(qkv, grid))

    def attend_time_projected(self, qkv: torch.Tensor, frames: int, bias: torch.Tensor | None = None,
                              handle: QKVHandle | None = None) -> torch.Tensor:
        """``attend_time(project=False)`` from the frame-major ``project_qkv(x)``: (B*T, N, 3D) -> (B*N, T, D).

        Give the same ``handle`` to the ``qkv_after_update`` of this qkv, and the backward pass keeps
        one projection instead of two.
        """
        return self.attn.attend_qkv_time(qkv, frames, bias, handle)

    def qkv_after_update(self, qkv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, hidden: torch.Tensor,
                         up: nn.Linear, scale: torch.Tensor | None = None,
                         handle: QKVHandle | None = None) -> torch.Tensor:
        """``project_qkv(y)`` for y = x + scale * up(hidden), from qkv = ``project_qkv(x)``; exact.

        LN1 then the qkv projection maps z to W'(z - mean z) / sigma_z + c, with W' = W diag(gamma)
        and c = W beta + b. With P the centring projection, W'(y - mean y) = sigma_x (qkv - c) +
        scale * W'P (U hidden + u), so the (D -> 3D) matmul over y's tokens becomes an (h -> 3D) one
        over the adapter's hidden units: 3Dh instead of 3D^2 per token.

        x, y: (B*T, N, D); qkv: (B*T, N, 3D); hidden: (B*T, N, h); scale: (B*T,) or None. ``handle``:
        the one given to ``attend_time_projected`` for this qkv (its backward pass then rebuilds qkv).
        Without gradients qkv is overwritten with the result (the caller must not read qkv(x) again).
        """
        ln, proj = self.ln1, self.attn.qkv
        beta = ln.bias if ln.bias is not None else torch.zeros_like(ln.weight)
        low_rank = torch.cat([up.weight, up.bias[:, None]], 1)  # [U u] (D, h+1)
        low_rank = (low_rank - low_rank.mean(0, keepdim=True)) * ln.weight[:, None]  # diag(gamma) P [U u]
        columns = proj.weight @ torch.cat([low_rank, beta[:, None]], 1)  # [W'PU  W'Pu  W beta] (3D, h+2)
        if proj.bias is not None:
            columns = columns + F.pad(proj.bias[:, None], (columns.shape[1] - 1, 0))  # last column: c
        inv_sigma_y = 1.0 / _UpdatedScale.apply(y, x, hidden, up.weight, up.bias, scale, ln.eps)  # (B*T, N, 1)
        ratio = _TokenScale.apply(x, ln.eps) * inv_sigma_y
        step = inv_sigma_y if scale is None else scale[:, None, None] * inv_sigma_y
        inputs = torch.cat([hidden * step, step, 1.0 - ratio], -1).to(qkv.dtype)  # (B*T, N, h+2)
        columns, ratio = columns.to(qkv.dtype), ratio.to(qkv.dtype)
        if not torch.is_grad_enabled() and qkv.is_contiguous():
            # Inference: qkv(x) is not read again, so qkv(y) overwrites it; no fresh (tokens, 3D) tensor.
            return _add_correction(qkv.mul_(ratio), inputs, columns)
        if handle is None:
            return torch.addcmul(F.linear(inputs, columns), qkv, ratio)
        return _Reproject.apply(qkv, inputs, columns, ratio, handle)


class ViTBlockParts(SharedQKV, nn.Module):
    """The frozen sub-layers of one pre-norm ViT block (CLIP or timm)."""

    def __init__(
        self, ln1: nn.Module, attn: FrozenAttention, ls1: nn.Module, ln2: nn.Module, mlp: nn.Module,
        ls2: nn.Module,
    ) -> None:
        super().__init__()
        self.ln1, self.attn, self.ls1 = ln1, attn, ls1
        self.ln2, self.mlp, self.ls2 = ln2, mlp, ls2

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    def attend(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Spatial MSA(LN1(x)) over all tokens of a frame; x: (B*T, N, D)."""
        return self.attend_projected(self.project_qkv(x))

    def attend_heads(self, qkv: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The spatial attention's heads before the output projection: (B*T, N, 3D) -> (B*T, N, D), a view
        of what SDPA keeps for its backward pass."""
        return self.attn.attend_qkv(qkv, project=False)

    def project_heads(self, heads: torch.Tensor) -> torch.Tensor:
        return self.ls1(self.attn.proj(heads))

    def attend_time(self, x: torch.Tensor, bias: torch.Tensor | None = None, project: bool = True) -> torch.Tensor:
        """MSA(LN1(x)) along time; x: (B*N, T, D). ``project=False``: see ``output_projection``."""
        if not project:
            return self.attn(self.ln1(x), bias, project=False)
        return self.ls1(self.attn(self.ln1(x), bias))

    def output_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of the attention output projection with any layer scale folded in."""
        weight, bias = self.attn.proj.weight, self.attn.proj.bias
        gamma = getattr(self.ls1, "gamma", None)
        if gamma is not None:
            weight, bias = gamma[:, None] * weight, None if bias is None else gamma * bias
        return weight, bias

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """MLP(LN2(x)); x: (..., D)."""
        return by_rows(lambda rows: self.ls2(self.mlp(self.ln2(rows))), x)

    def group(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return h

    def ungroup(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return h

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        x = x + self.attend(x)
        return x + self.feed_forward(x)


class Stage(nn.Module):
    """Optional patch merging followed by the stage's blocks (a ViT is one stage without merging)."""

    def __init__(self, downsample: nn.Module | None, blocks: list[SwinBlockParts], dim: int) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.dim = dim

    def merge(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch merging: (B, H*W, C) -> (B, H/2*W/2, 2C)."""
        if self.downsample is None:
            return x, grid
        x = self.downsample(x.reshape(x.shape[0], *grid, x.shape[-1]))  # (B, H/2, W/2, 2C)
        return x.flatten(1, 2), (grid[0] // 2, grid[1] // 2)


class ViTTrunk(nn.Module):
    """A frozen pre-norm ViT with a class token, as used by CLIP and timm."""

    family = "vit"

    def __init__(
        self, patch_embed: nn.Conv2d, cls_token: torch.Tensor, pos_embed: torch.Tensor, ln_pre: nn.Module,
        blocks: list[ViTBlockParts], norm: nn.Module, image_size: int,
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.cls_token = cls_token if isinstance(cls_token, nn.Parameter) else nn.Parameter(cls_token)
        self.pos_embed = pos_embed if isinstance(pos_embed, nn.Parameter) else nn.Parameter(pos_embed)
        self.ln_pre = ln_pre
        self.stages = nn.ModuleList([Stage(None, blocks, patch_embed.out_channels)])
        self.norm = norm
        self.image_size = image_size
        self.patch_size = patch_embed.kernel_size[0]
        self.embed_dim = patch_embed.out_channels
        self.grid = (image_size // self.patch_size, image_size // self.patch_size)

    @property
    def blocks(self) -> list[ViTBlockParts]:
        return list(self.stages[0].blocks)

    @property
    def stage_dims(self) -> list[int]:
        return [self.embed_dim]

    def embed(self, images: torch.Tensor, patch_embed: nn.Module | None = None,
              pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """Patchify and add class token + positional embedding: (B, C, H, W) -> (B, 1+N, D)."""
        x = (patch_embed or self.patch_embed)(images).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.reshape(1, 1, -1).expand(x.shape[0], 1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1)  # (B, 1+N, D)
        return x + (self.pos_embed if pos_embed is None else pos_embed).reshape(1, x.shape[1], -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The bare frozen tower: (B, 3, H, W) -> final-normed tokens (B, 1+N, D)."""
        x = self.ln_pre(self.embed(images))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def audio_embedding(self, audio_shape: tuple[int, int]) -> tuple[nn.Conv2d, torch.Tensor]:
        """One-channel patch embedding (sum over RGB) and positional embedding resampled to the audio grid."""
        audio_conv = one_channel_conv(self.patch_embed, "sum")
        grid = (audio_shape[0] // self.patch_size, audio_shape[1] // self.patch_size)
        pos = self.pos_embed.detach().reshape(-1, self.embed_dim)
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)  # (1, D, gh, gw)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bilinear", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)  # (Na, D)
        return audio_conv, torch.cat([cls_pos, patch_pos], dim=0)


def _vit_from_open_clip(visual: nn.Module, heads_override: int | None) -> ViTTrunk:
    blocks = []
    for rb in visual.transformer.resblocks:
        qkv = _linear_from(rb.attn.in_proj_weight, rb.attn.in_proj_bias)
        attn = FrozenAttention(qkv, rb.attn.out_proj, heads_override or rb.attn.num_heads)
        blocks.append(ViTBlockParts(rb.ln_1, attn, rb.ls_1, rb.ln_2, rb.mlp, rb.ls_2))
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    return ViTTrunk(visual.conv1, visual.class_embedding, visual.positional_embedding, visual.ln_pre,
                    blocks, visual.ln_post, size)


def _vit_from_timm(model: nn.Module, heads_override: int | None) -> ViTTrunk:
    if model.num_prefix_tokens != 1 or getattr(model, "no_embed_class", False):
        raise ConfigError("only timm ViTs with exactly one class token and embedded class position are supported")
    blocks = []
    for b in model.blocks:
        if not isinstance(b.attn.q_norm, nn.Identity):
            raise ConfigError("timm ViTs with q/k normalisation are not supported")
        attn = FrozenAttention(b.attn.qkv, b.attn.proj, heads_override or b.attn.num_heads)
        blocks.append(ViTBlockParts(b.norm1, attn, b.ls1, b.norm2, b.mlp, b.ls2))
    return ViTTrunk(model.patch_embed.proj, model.cls_token, model.pos_embed, model.norm_pre, blocks,
                    model.norm, model.patch_embed.img_size[0])


# ----------------------------------------------------------------------------------------------
# Swin
# ----------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, window*window, C)."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """(B*nW, window*window, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.reshape(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


class SwinBlockParts(SharedQKV, nn.Module):
    """The frozen sub-layers of one Swin block: (shifted) window attention with relative bias, MLP."""

    def __init__(self, block: nn.Module, heads_override: int | None) -> None:
        super().__init__()
        self.ln1, self.ln2, self.mlp = block.norm1, block.norm2, block.mlp
        self.attn = FrozenAttention(block.attn.qkv, block.attn.proj, heads_override or block.attn.num_heads)
        self.relative_position_bias_table = block.attn.relative_position_bias_table
        self.register_buffer("relative_position_index", block.attn.relative_position_index, persistent=False)
        self.window = int(block.window_size[0])
        self.shift = int(block.shift_size[0])
        mask = block.attn_mask
        self.register_buffer("shift_mask", mask if mask is None else mask.clone(), persistent=False)

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    def _window_bias(self) -> torch.Tensor:
        """Relative position bias (1, heads, w*w, w*w), plus the shift mask per window when shifted."""
        area = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(area, area, -1).permute(2, 0, 1).unsqueeze(0)  # (1, heads, A, A)
        if self.shift_mask is not None:
            bias = bias + self.shift_mask.unsqueeze(1)  # (nW, heads, A, A)
        return bias

    def group(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Token sequence -> (shifted) windows: (B, H*W, C) -> (B*nW, w*w, C)."""
        x = h.reshape(h.shape[0], *grid, h.shape[-1])  # (B, H, W, C)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        return window_partition(x, self.window)

    def ungroup(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Inverse of ``group``: (B*nW, w*w, C) -> (B, H*W, C)."""
        x = window_reverse(h, self.window, *grid)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def attend(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Shifted-window MSA(LN1(x)); x: (B, H*W, C)."""
        windows = self.group(self.ln1(x), grid)  # (B*nW, A, C)
        bias = self._window_bias()  # (nW or 1, heads, A, A)
        windows = windows.reshape(x.shape[0], -1, *windows.shape[1:])  # (B, nW, A, C)
        out = self.attn(windows, bias)
        return self.ungroup(out.flatten(0, 1), grid)

    def attend_heads(self, qkv: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The window attention's heads before the output projection, in token order: (B, H*W, 3C) -> (B, H*W, C)."""
        windows = self.group(qkv, grid)  # (B*nW, A, 3C)
        windows = windows.reshape(qkv.shape[0], -1, *windows.shape[1:])  # (B, nW, A, 3C)
        out = self.attn.attend_qkv(windows, self._window_bias(), project=False)
        return self.ungroup(out.flatten(0, 1), grid)

    def project_heads(self, heads: torch.Tensor) -> torch.Tensor:
        return self.attn.proj(heads)

    def attend_time(self, x: torch.Tensor, bias: torch.Tensor | None = None, project: bool = True) -> torch.Tensor:
        """MSA(LN1(x)) along time (no spatial bias); x: (B*N, T, C)."""
        return self.attn(self.ln1(x), bias, project=project)

    def output_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of the attention output projection."""
        return self.attn.proj.weight, self.attn.proj.bias

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return by_rows(lambda rows: self.mlp(self.ln2(rows)), x)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attend(x, grid)
        return x + self.feed_forward(x)


class SwinTrunk(nn.Module):
    """A frozen Swin transformer (timm layout) as stages of block parts."""

    family = "swin"

    def __init__(self, model: nn.Module, heads_override: int | None) -> None:
        super().__init__()
        self.patch_proj = model.patch_embed.proj
        self.patch_norm = model.patch_embed.norm
        stages = []
        for layer in model.layers:
            down = layer.downsample if not isinstance(layer.downsample, nn.Identity) else None
            blocks = [SwinBlockParts(b, heads_override) for b in layer.blocks]
            stages.append(Stage(down, blocks, blocks[0].ln1.weight.numel()))
        self.stages = nn.ModuleList(stages)
        self.norm = model.norm
        self.image_size = model.patch_embed.img_size[0]
        self.patch_size = self.patch_proj.kernel_size[0]
        self.grid = (self.image_size // self.patch_size,) * 2
        self.embed_dim = self.stages[-1].blocks[0].ln1.weight.numel()

    @property
    def blocks(self) -> list[SwinBlockParts]:
        return [b for s in self.stages for b in s.blocks]

    @property
    def stage_dims(self) -> list[int]:
        return [s.dim for s in self.stages]

    def embed(self, images: torch.Tensor, patch_proj: nn.Module | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/4*W/4, C0)."""
        x = (patch_proj or self.patch_proj)(images).flatten(2).transpose(1, 2)
        return self.patch_norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The bare frozen tower: (B, 3, H, W) -> final-normed tokens (B, N, C)."""
        x, grid = self.embed(images), self.grid
        for stage in self.stages:
            x, grid = stage.merge(x, grid)
            for block in stage.blocks:
                x = block(x, grid)
        return self.norm(x)

    def audio_embedding(self, audio_shape: tuple[int, int]) -> tuple[nn.Conv2d, None]:
        """One-channel patch projection (mean over RGB); audio must be image-sized for Swin."""
        if tuple(audio_shape) != (self.image_size, self.image_size):
            raise ConfigError(f"Swin needs a square {self.image_size}x{self.image_size} fbank; "
                              f"got {tuple(audio_shape)} (set preprocess.num_mel_bins/target_frames)")
        return one_channel_conv(self.patch_proj, "mean"), None


# ----------------------------------------------------------------------------------------------
# Building and pretrained loading
# ----------------------------------------------------------------------------------------------


def _offline_env() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in flags)


@lru_cache(maxsize=1)
def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _check_online(name: str, tag: str) -> None:
    """Fail fast, with instructions, when tagged weights would need a download that cannot happen."""
    how = ("download them on a machine with internet access and pass the local file or folder as "
           "backbone.pretrained=/path/to/weights, or build without weights (backbone.pretrained=null)")
    if _offline_env():
        raise PretrainedWeightsError(
            f"pretrained weights {name}:{tag} are not available offline (HF_HUB_OFFLINE is set); {how}")
    if not _hub_reachable():
        raise PretrainedWeightsError(
            f"pretrained weights {name}:{tag} need a download but the Hugging Face Hub cannot be reached; {how}")


def _resolve_local(path_text: str) -> Path:
    path = Path(path_text).expanduser()
    if path.is_dir():
        for candidate in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors", "model.safetensors",
                          "pytorch_model.bin"):
            if (path / candidate).exists():
                return path / candidate
        raise PretrainedWeightsError(f"no weights file in {path} (looked for *.safetensors / *.bin)")
    if not path.exists():
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist")
    return path


def _is_local(pretrained: str) -> bool:
    suffixes = (".bin", ".pt", ".pth", ".safetensors")
    return os.sep in pretrained or pretrained.endswith(suffixes) or Path(pretrained).exists()


def _build_open_clip(spec: BackboneSpec, pretrained: str | None) -> nn.Module:
    import open_clip
    from open_clip import model as oc_model

    if spec.arch == "stgcma-clip-test":
        cfg = _TINY_CLIP
    else:
        cfg = open_clip.get_model_config(spec.arch)
    quick_gelu = bool(spec.kwargs.get("force_quick_gelu", False))
    if pretrained is None:
        vision_cfg = oc_model.CLIPVisionCfg(**cfg["vision_cfg"])
        return oc_model._build_vision_tower(cfg["embed_dim"], vision_cfg, quick_gelu=quick_gelu)
    if _is_local(pretrained):
        model = oc_model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=quick_gelu)
        open_clip.load_checkpoint(model, str(_resolve_local(pretrained)))
        return model.visual
    if pretrained not in spec.tags:
        raise ConfigError(f"{spec.arch}: unknown pretrained tag {pretrained!r}; "
                          f"use one of {sorted(spec.tags)} or a path")
    _check_online(spec.arch, pretrained)
    return open_clip.create_model(spec.arch, pretrained=spec.tags[pretrained], **spec.kwargs).visual


def _load_timm_file(model: nn.Module, path: Path) -> None:
    """Load a local timm-format checkpoint (safetensors or torch; original-repo layouts are converted).

    Only the classifier head may be missing or mismatched (it is never used here).
    """
    import sys

    from timm.models import load_state_dict

    state = load_state_dict(str(path))
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, model)
    own = model.state_dict()
    head = {k for k in own if k.startswith(("head.", "fc_norm.", "head_drop."))}
    state = {k: v for k, v in state.items() if not (k in head and v.shape != own[k].shape)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise PretrainedWeightsError(f"{path} does not fit {type(model).__name__}: {detail}") from None
    missing = [k for k in missing if k not in head]
    if missing or unexpected:
        raise PretrainedWeightsError(f"{path} does not fit {type(model).__name__}: missing {missing[:4]}, "
                                     f"unexpected {unexpected[:4]}")


def _build_timm(spec: BackboneSpec, pretrained: str | None) -> nn.Module:
    import timm

    if pretrained is None:
        return timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    if _is_local(pretrained):
        model = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
        _load_timm_file(model, _resolve_local(pretrained))
        return model
    if pretrained not in spec.tags:
        raise ConfigError(f"{spec.arch}: unknown pretrained tag {pretrained!r}; "
                          f"use one of {sorted(spec.tags)} or a path")
    _check_online(spec.arch, pretrained)
    return timm.create_model(f"{spec.arch}.{spec.tags[pretrained]}", pretrained=True, **spec.kwargs)


def _build_source(spec: BackboneSpec, pretrained: str | None) -> nn.Module:
    builder = _build_open_clip if spec.library == "open_clip" else _build_timm
    return builder(spec, pretrained)


def build_trunk(config: BackboneConfig) -> ViTTrunk | SwinTrunk:
    """Build the frozen trunk named by ``config`` (weights per ``config.pretrained``), in eval mode."""
    if config.name not in BACKBONES:
        raise ConfigError(f"unknown backbone {config.name!r}; available: {', '.join(BACKBONES)}")
    spec = BACKBONES[config.name]
    source = _build_source(spec, config.pretrained)
    heads = config.frozen_attn_heads
    if spec.family == "swin":
        trunk = SwinTrunk(source, heads)
    elif spec.library == "open_clip":
        trunk = _vit_from_open_clip(source, heads)
    else:
        trunk = _vit_from_timm(source, heads)
    if heads is not None and any(trunk.embed_dim % b.num_heads for b in trunk.blocks):
        raise ConfigError(f"frozen_attn_heads={heads} does not divide the width {trunk.embed_dim}")
    _lean_activations(trunk)
    trunk.requires_grad_(False)
    return trunk.eval()


def source_model(config: BackboneConfig) -> nn.Module:
    """The UNWRAPPED source image tower (open_clip visual or timm model), frozen, in eval mode."""
    source = _build_source(BACKBONES[config.name], config.pretrained)
    source.requires_grad_(False)
    return source.eval()


def source_forward(config: BackboneConfig, source: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Final-normed tokens as the source library computes them: (B, 3, H, W) -> (B, N, D)."""
    if BACKBONES[config.name].library == "open_clip":
        x = source.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([source.class_embedding.reshape(1, 1, -1).expand(x.shape[0], 1, -1), x], 1)
        x = source.ln_pre(x + source.positional_embedding)
        return source.ln_post(source.transformer(x))
    feats = source.forward_features(images)
    return feats.flatten(1, 2) if feats.ndim == 4 else feats


def source_features(config: BackboneConfig, images: torch.Tensor) -> torch.Tensor:
    """Build the source model and run it once (for tests that compare trunks with their sources)."""
    with torch.no_grad():
        return source_forward(config, source_model(config), images)


def check_preprocess(trunk: ViTTrunk | SwinTrunk, pre: PreprocessConfig) -> None:
    """Raise ConfigError when the preprocessing does not fit the trunk's input grid."""
    if pre.image_size != trunk.image_size:
        raise ConfigError(f"preprocess.image_size={pre.image_size} but the backbone expects {trunk.image_size}")
    frames, mels = pre.audio_shape
    if frames < trunk.patch_size or mels < trunk.patch_size:
        raise ConfigError(f"fbank {pre.audio_shape} is smaller than one {trunk.patch_size}-px patch")


def audio_grid(trunk: ViTTrunk | SwinTrunk, pre: PreprocessConfig) -> tuple[int, int]:
    """Patch grid of one fbank image (time, frequency)."""
    return (pre.target_frames // trunk.patch_size, pre.num_mel_bins // trunk.patch_size)


def num_params(module: nn.Module, trainable: bool | None = None) -> int:
    """Count unique parameters (shared tensors once), optionally only (non-)trainable ones."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable is not None and p.requires_grad != trainable):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


__all__ = [
    "BACKBONES", "BackboneSpec", "FrozenAttention", "PretrainedWeightsError", "Stage", "SwinBlockParts", "SwinTrunk",
    "ViTBlockParts", "ViTTrunk", "audio_grid", "build_trunk", "check_preprocess", "num_params",
    "source_features", "source_forward", "source_model", "window_partition", "window_reverse",
]
