"""Cross-modal attention maps of the STG-CMA bottleneck cross-attention, per block, stage and direction.

Reference: Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation", CVPR-W 2024 (arXiv 2403.01862).

Each STG-CMA block exchanges information between the streams twice, in its spatial stage (inside the
frozen block's token groups: the whole frame for ViT, (shifted) windows for Swin) and in its global
stage (over all tokens of a frame). ``model.capture_attention()`` records both softmax maps of each
exchange; this module turns them into per-segment maps over an input:

- ``"a<-v"``: audio tokens (queries) attending video tokens (keys), averaged over the audio queries
  -> where in the FRAME the sound looks: (T, gh, gw) over the frame's patch grid, projected to (T, S, S);
- ``"v<-a"``: video queries attending audio keys, averaged over the video queries -> where in the
  SPECTROGRAM the picture listens: (T, ga_h, ga_w) over the fbank's (time, mel) patch grid,
  projected to the fbank's (T, F, M) bins.

ViT: every map is over the frame's tokens; the class tokens are left out of the maps (see
``_key_distribution``). Swin: maps live on the grid of the block's stage (halved by each patch
merging); spatial-stage maps come per (shifted) window and are put back on that grid first, global-
stage maps are per frame. ``probs`` keep the probabilities; ``heatmap`` is the display projection:
bilinear upsampling from token centres to the pixels/bins each token covers, min-max per segment
(``stgcma.explain.common.project``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stgcma.adapters import BottleneckCrossAttention
from stgcma.explain.common import BlockLayout, as_clip, as_task_inputs, block_layouts, clip_outputs, eval_mode, project

STAGES = ("spatial", "global")
DIRECTIONS = ("a<-v", "v<-a")
AGGREGATE = "aggregate"


@dataclass
class AttentionMap:
    """One cross-attention map of one clip, per segment.

    Attributes:
        probs: (T, h, w) attention probabilities over the KEY stream's patch grid at the block's
            stage (frame patches for "a<-v", fbank (time, mel) patches for "v<-a"); each segment
            sums to 1. ViT class tokens are excluded and each query's row renormalised over patches.
        heatmap: (T, S, S) frame pixels ("a<-v") or (T, F, M) fbank bins ("v<-a"): ``probs``
            upsampled bilinearly and min-max scaled to [0, 1] per segment, for display.
        cls_mass: (T,) mean attention the queries put on the key stream's class token before it was
            excluded (ViT; zeros for Swin, which has none).
        weight: the block's |gate| for this direction (for the aggregate: the sum over its blocks).
    """

    probs: np.ndarray
    heatmap: np.ndarray
    cls_mass: np.ndarray
    weight: float


@dataclass
class AttentionMaps:
    """All maps of one clip: ``maps[(block, stage, direction)]``, block an index or ``"aggregate"``.

    Attributes:
        maps: the maps; blocks without cross-attention (or a disabled stage) have none.
        outputs: the head's outputs for the clip, batch axis dropped (e.g. ``logits`` (T, C) for AVE),
            identical to an uncaptured forward pass in eval mode.
        weighting: how blocks were weighted in the aggregate ("gate" or "uniform").
    """

    maps: dict[tuple[int | str, str, str], AttentionMap]
    outputs: dict[str, np.ndarray]
    weighting: str = "gate"
    blocks: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.blocks = sorted({b for b, _, _ in self.maps if b != AGGREGATE})

    def select(self, block: int | str = AGGREGATE, stage: str = "spatial", direction: str = "a<-v") -> AttentionMap:
        """One map: ``block`` an index or "aggregate", ``stage`` in STAGES, ``direction`` in DIRECTIONS."""
        key = (block, stage, direction)
        if key not in self.maps:
            raise KeyError(f"no attention map for {key}; available blocks {self.blocks} + {AGGREGATE!r}, "
                           f"stages {sorted({s for _, s, _ in self.maps})}, directions {list(DIRECTIONS)}")
        return self.maps[key]

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat numpy dict: ``"{block}/{stage}/{direction}/{field}"`` for every map field, ``"outputs/{name}"``."""
        out: dict[str, np.ndarray] = {}
        for (block, stage, direction), m in self.maps.items():
            prefix = f"{block}/{stage}/{direction}"
            out[f"{prefix}/probs"] = m.probs
            out[f"{prefix}/heatmap"] = m.heatmap
            out[f"{prefix}/cls_mass"] = m.cls_mass
            out[f"{prefix}/weight"] = np.asarray(m.weight, dtype=np.float32)
        out.update({f"outputs/{k}": v for k, v in self.outputs.items()})
        return out


def _key_distribution(attn: torch.Tensor, layout: BlockLayout, key_grid: tuple[int, int], stage: str,
                      is_vit: bool, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, Nq, Nk) softmax maps -> ((T, h, w) mean distribution over key patches, (T,) class-token mass).

    ViT: the key class token is dropped and each query row renormalised over patch keys, then rows
    are averaged over ALL queries (the query class token included: it is what the heads read).
    Swin spatial stage: G = T * windows and each row covers one window; the per-window means are put
    back on the stage's grid by the frozen block's ``ungroup`` (undoing the window partition and the
    cyclic shift) and divided by the number of windows, which equals averaging over all queries of
    the frame with zeros outside each query's window.
    """
    attn = attn.detach().cpu().double()  # small (G, Nq, Nk); float64 keeps sums at 1 to 1e-12
    cls_mass = attn.new_zeros(attn.shape[0])  # (G,)
    if is_vit:
        cls_mass = attn[..., 0].mean(-1)  # (G,)
        attn = attn[..., 1:]  # (G, Nq, Nk-1)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(torch.finfo(attn.dtype).tiny)
    dist = attn.mean(1)  # (G, Nk)
    if stage == "spatial" and not is_vit:
        windows = dist.shape[0] // frames
        dist = layout.frozen.ungroup(dist.unsqueeze(-1), key_grid).squeeze(-1) / windows  # (T, h*w)
        cls_mass = cls_mass.reshape(frames, windows).mean(1)  # (T,)
    if dist.shape != (frames, key_grid[0] * key_grid[1]):
        raise ValueError(f"captured {stage} map gives {tuple(dist.shape)} keys; expected (T={frames}, {key_grid})")
    return dist.reshape(frames, *key_grid), cls_mass  # (T, h, w)


def _to_finer(probs: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(T, h, w) probabilities -> (T, *grid) on a finer grid, each cell's mass split evenly among its sub-cells."""
    fh, fw = grid[0] // probs.shape[1], grid[1] // probs.shape[2]
    if (fh * probs.shape[1], fw * probs.shape[2]) != tuple(grid):
        raise ValueError(f"grid {tuple(probs.shape[1:])} does not divide the finest grid {grid}")
    return probs.repeat_interleave(fh, 1).repeat_interleave(fw, 2) / (fh * fw)  # (T, H, W)


def attention_maps(model: nn.Module, video: Any, audio: Any, weighting: str = "gate",
                   **task_inputs: Any) -> AttentionMaps:
    """Run one clip under ``model.capture_attention()`` and return its cross-attention maps.

    Args:
        model: an ``STGCMAModel`` with STG-CMA adapters; run in eval mode (its mode is restored).
        video: (T, 3, S, S) or (1, T, 3, S, S) normalised frames.
        audio: (T, 1, F, M) or (1, T, 1, F, M) normalised fbank.
        weighting: block weights of the aggregate, "gate" (|gate| of the direction) or "uniform".
        **task_inputs: what the head needs, e.g. ``question=(L,) or (1, L)`` token ids for AVQA.

    The aggregate over blocks (key ``"aggregate"``): attention rollout multiplies self-attention
    matrices through depth, which needs one token set attending itself block after block; a cross-
    attention map instead goes from one stream to the OTHER, and between blocks each stream also
    mixes through frozen self-attention, so there is no chain of cross maps to multiply. The
    aggregate is therefore a weighted mean over blocks of the per-block distributions, each first
    moved to the finest key grid among the blocks (Swin: the first stage's; a coarse cell's mass is
    split evenly over its sub-cells, so every map still sums to 1 per segment). With "gate"
    weighting a block counts by |g| of the gate that scales this direction's update (g_a for
    "a<-v", whose result enters the audio stream; g_v for "v<-a"): a closed gate means the map had
    no effect on the output. When all those gates are zero (an untrained model), blocks count equally.
    """
    if weighting not in ("gate", "uniform"):
        raise ValueError(f"weighting must be 'gate' or 'uniform'; got {weighting!r}")
    encoder = model.encoder
    video, audio = as_clip(model, video, audio)
    frames = video.shape[1]
    size_v = (video.shape[-2], video.shape[-1])
    size_a = (audio.shape[-2], audio.shape[-1])
    with eval_mode(model), torch.no_grad(), model.capture_attention() as captured:
        outputs = model(video, audio, **as_task_inputs(model, task_inputs))
    if not captured:
        raise ValueError(f"this model has no bottleneck cross-attention to show "
                         f"(adapter.method={model.config.adapter.method!r}, stages spatial/global off?)")
    layouts = block_layouts(encoder)
    maps: dict[tuple[int | str, str, str], AttentionMap] = {}
    raw: dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor, float, int]]] = {}
    for (block, stage, direction), attn in sorted(captured.items()):
        layout = layouts[block]
        key_grid = layout.grid_v if direction == "a<-v" else layout.grid_a
        probs, cls_mass = _key_distribution(attn, layout, key_grid, stage, encoder.is_vit, frames)
        cross: BottleneckCrossAttention = encoder.blocks[block].cross
        weight = float((cross.gate_a if direction == "a<-v" else cross.gate_v).detach().abs())
        size = size_v if direction == "a<-v" else size_a
        maps[(block, stage, direction)] = AttentionMap(
            probs.float().numpy(), project(probs, layout.stride, size), cls_mass.float().numpy(), weight)
        raw.setdefault((stage, direction), []).append((probs, cls_mass, weight, layout.stride))
    for (stage, direction), entries in raw.items():
        weights = torch.tensor([w for _, _, w, _ in entries], dtype=torch.float64)
        if weighting == "uniform" or float(weights.sum()) == 0.0:
            weights = torch.ones_like(weights)
        weights = weights / weights.sum()
        fine = max(entries, key=lambda e: e[0].shape[1] * e[0].shape[2])
        grid, stride = tuple(fine[0].shape[1:]), fine[3]
        probs = sum(w * _to_finer(p, grid) for w, (p, _, _, _) in zip(weights, entries, strict=True))
        cls_mass = sum(w * c for w, (_, c, _, _) in zip(weights, entries, strict=True))
        size = size_v if direction == "a<-v" else size_a
        total = float(sum(w for _, _, w, _ in entries))
        maps[(AGGREGATE, stage, direction)] = AttentionMap(
            probs.float().numpy(), project(probs, stride, size), cls_mass.float().numpy(), total)
    return AttentionMaps(maps, clip_outputs(outputs), weighting)
