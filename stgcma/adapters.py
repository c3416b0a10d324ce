"""Trainable adaptation modules of STG-CMA (Wang, Tian, Hatzinakos, CVPR-W 2024, arXiv 2403.01862).

Every trainable piece that sits on the frozen backbone derives from ``AdapterModule``, so the
trainable set is chosen structurally (by module type, see ``stgcma.model.mark_trainable``):

- ``Adapter``: Linear(D, h) -> GELU -> Linear(h, D), up-projection zero-initialised.
- ``BottleneckCrossAttention``: the audio-visual exchange inside the bottleneck space,
  ``H_v += g_v * softmax(H_v H_a^T) H_a`` and ``H_a += g_a * softmax(H_a H_v^T) H_v`` (no projections,
  no 1/sqrt(d) scale), with zero-initialised scalar gates; can record its attention maps.
- ``TemporalEmbedding`` (ViT) and ``TemporalBias`` (Swin, a relative (2T-1, heads) table).
- ``StreamNorm``: the trainable final LayerNorm of each stream.
- ``LavishAdapter``: the LAVISH baseline (parallel adapter with latent-token cross-modal exchange).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdapterModule(nn.Module):
    """Marker base class: modules of this type are trained when the backbone is frozen."""


def init_linear(layer: nn.Linear, zero: bool = False) -> nn.Linear:
    """trunc_normal(std=0.02) weights and zero bias, or all zeros."""
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.trunc_normal_(layer.weight, std=0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def drop_path_scale(batch: int, rate: float, training: bool, like: torch.Tensor) -> torch.Tensor | None:
    """Stochastic depth's per-sample factor, (batch,): 0 or 1/keep; None when nothing is dropped."""
    if rate == 0.0 or not training:
        return None
    keep = 1.0 - rate
    return like.new_empty(batch).bernoulli_(keep) / keep


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (first dim), scaled to keep the expectation."""
    scale = drop_path_scale(x.shape[0], rate, training, x)
    return x if scale is None else x * scale.reshape((-1,) + (1,) * (x.ndim - 1))


class Adapter(AdapterModule):
    """Bottleneck adapter; ``down`` and ``up`` are exposed so cross-attention can run in between."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = init_linear(nn.Linear(dim, hidden))
        self.fc2 = init_linear(nn.Linear(hidden, dim), zero=True)

    def down(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.fc1(x))

    def down_after(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``down(Linear(weight, bias)(x))`` with the two linear maps folded into one (h x D) matrix."""
        fused_bias = self.fc1.bias if bias is None else self.fc1.bias + self.fc1.weight @ bias
        return F.gelu(F.linear(x, self.fc1.weight @ weight, fused_bias))

    def up(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class BottleneckCrossAttention(AdapterModule):
    """Parameter-free cross-attention between the two streams' bottleneck features, with two gates.

    One instance per block, shared by the spatial and the global stage (as in the paper). When
    ``capture`` is a dict, each call stores its softmax maps there under ``(stage, "v<-a")`` and
    ``(stage, "a<-v")``; outputs are unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate_v = nn.Parameter(torch.zeros(()))
        self.gate_a = nn.Parameter(torch.zeros(()))
        self.capture: dict[tuple[str, str], torch.Tensor] | None = None

    def forward(self, hv: torch.Tensor, ha: torch.Tensor, stage: str = "spatial") -> tuple[torch.Tensor, torch.Tensor]:
        """hv: (G, Nv, h), ha: (G, Na, h) with G groups (frames or windows); returns updated (hv, ha).

        Explicit bmm + softmax: for bottleneck widths this is faster on CPU than SDPA (measured 1.3-1.8x
        forward, also with backward), the one score matrix serves both directions, and it yields the
        maps for ``capture`` at no extra cost. The audio-to-video map is the softmax over the score
        matrix's video axis, used transposed: no (Na, Nv) copy (a Swin frame's global stage holds
        3136 x 3136 scores, where that copy cost a third of the stage).
        """
        scores = hv @ ha.transpose(-1, -2)  # (G, Nv, Na)
        attn_va = torch.softmax(scores, dim=-1)  # (G, Nv, Na), rows over audio tokens
        attn_av = torch.softmax(scores, dim=-2).transpose(-1, -2)  # (G, Na, Nv) view, rows over video tokens
        if self.capture is not None:
            self.capture[(stage, "v<-a")] = attn_va.detach()
            self.capture[(stage, "a<-v")] = attn_av.detach()
        return hv + self.gate_v * (attn_va @ ha), ha + self.gate_a * (attn_av @ hv)


class TemporalEmbedding(AdapterModule):
    """Zero-initialised (1, T, D) embedding added to every token of segment t."""

    def __init__(self, num_frames: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, num_frames, 1, dim))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B*T, N, D) -> same, with the embedding of each token's segment added."""
        BT, N, D = x.shape
        x = x.reshape(BT // num_frames, num_frames, N, D) + self.weight  # (B, T, N, D)
        return x.reshape(BT, N, D)


class TemporalBias(AdapterModule):
    """Trainable relative temporal position bias: a (2T-1, heads) table -> (heads, T, T) bias."""

    def __init__(self, num_frames: int, num_heads: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(2 * num_frames - 1, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        steps = torch.arange(num_frames)
        self.register_buffer("index", steps[:, None] - steps[None, :] + num_frames - 1, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table[self.index].permute(2, 0, 1)  # (heads, T, T)


class StreamNorm(AdapterModule):
    """Trainable final LayerNorm of one stream, initialised from the backbone's final norm."""

    def __init__(self, dim: int, source: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=getattr(source, "eps", 1e-5))
        if isinstance(source, nn.LayerNorm):
            self.norm.load_state_dict(source.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class LavishAdapter(AdapterModule):
    """LAVISH-style adapter (Lin et al., CVPR 2023), the baseline STG-CMA is compared with.

    Runs IN PARALLEL with a frozen sub-layer. K latent tokens first summarise the other modality by
    cross-attention, the stream then attends to those latents (zero-init gate), and a bottleneck of
    grouped 1x1 convolutions maps the result back to width D behind a zero-init output gate.
    """

    def __init__(self, dim: int, hidden: int, num_latents: int, groups: int = 2) -> None:
        super().__init__()
        groups = groups if dim % groups == 0 and hidden % groups == 0 else 1
        self.latents = nn.Parameter(torch.zeros(num_latents, dim))
        nn.init.trunc_normal_(self.latents, std=0.02)
        self.gate_cross = nn.Parameter(torch.zeros(()))
        self.down = nn.Conv1d(dim, hidden, 1, groups=groups)
        self.up = nn.Conv1d(hidden, dim, 1, groups=groups)
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.zeros(()))
        for conv in (self.down, self.up):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """x: (G, N, D) this stream; other: (G, M, D) the other stream -> (G, N, D) update."""
        latents = self.latents.expand(x.shape[0], -1, -1)  # (G, K, D)
        latents = latents + F.scaled_dot_product_attention(latents, other, other)  # (G, K, D)
        x = x + self.gate_cross * F.scaled_dot_product_attention(x, latents, latents)
        h = F.gelu(self.down(self.norm(x).transpose(1, 2)))  # (G, h, N)
        return self.gate * self.up(h).transpose(1, 2)  # (G, N, D)
