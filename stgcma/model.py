"""The STG-CMA model: a frozen image backbone shared by audio and video, adapters, and a task head.

Reference: Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation", CVPR-W 2024 (arXiv 2403.01862).

``create_model("clip-b16-tiny")`` builds a model from a named preset; ``AudioVisualEncoder`` runs
both streams through the frozen trunk in ONE loop over blocks (``forward_intermediates``), with the
per-block trainable part chosen by ``adapter.method``: STG-CMA, LAVISH, or none (linear probe / full
fine-tuning). Trainable parameters are chosen structurally by module type (``mark_trainable``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from stgcma.adapters import AdapterModule, BottleneckCrossAttention, StreamNorm, TemporalEmbedding
from stgcma.backbones import SwinTrunk, ViTTrunk, audio_grid, build_trunk, check_preprocess, num_params
from stgcma.blocks import LavishBlock, PlainBlock, STGCMABlock, StreamContext
from stgcma.config import ConfigError, ModelConfig, apply_overrides, load_preset
from stgcma.heads import TaskHead, build_head


def _stage_ratios(ratio: float | list[float], num_stages: int) -> list[float]:
    ratios = list(ratio) if isinstance(ratio, (list, tuple)) else [ratio] * num_stages
    if len(ratios) != num_stages:
        raise ConfigError(f"adapter.ratio has {len(ratios)} values but the backbone has {num_stages} stages")
    return ratios


def recomputed_blocks(depth: int, fraction: float) -> set[int]:
    """Which of ``depth`` blocks activation checkpointing recomputes: ``floor(fraction * depth)`` of them,
    spread evenly (2/3 of 12: every block but 0, 3, 6 and 9)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"checkpoint_fraction must lie in [0, 1]; got {fraction}")
    return {i for i in range(depth) if int((i + 1) * fraction + 1e-9) > int(i * fraction + 1e-9)}


class AudioVisualEncoder(nn.Module):
    """Both streams through one frozen trunk, adapted per ``config.adapter``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        pre, ad = config.preprocess, config.adapter
        self.trunk: ViTTrunk | SwinTrunk = build_trunk(config.backbone)
        check_preprocess(self.trunk, pre)
        self.num_frames = pre.num_segments
        self.is_vit = isinstance(self.trunk, ViTTrunk)
        audio_conv, audio_pos = self.trunk.audio_embedding(pre.audio_shape)
        audio_conv.requires_grad_(False)
        self.audio_patch_embed = audio_conv
        self.register_buffer("audio_pos_embed", audio_pos, persistent=False)
        self.grid_a = audio_grid(self.trunk, pre)
        stgcma = ad.method == "stgcma"
        dim0 = self.trunk.stage_dims[0]
        with_embed = stgcma and self.is_vit and ad.temporal
        self.temporal_embed_v = TemporalEmbedding(self.num_frames, dim0) if with_embed else None
        self.temporal_embed_a = TemporalEmbedding(self.num_frames, dim0) if with_embed else None

        depth = len(self.trunk.blocks)
        rates = np.linspace(0.0, ad.drop_path, depth).tolist()
        ratios = _stage_ratios(ad.ratio, len(self.trunk.stages))
        blocks: list[nn.Module] = []
        for s, stage in enumerate(self.trunk.stages):
            hidden = int(stage.dim * ratios[s])
            if ad.method in ("stgcma", "lavish") and hidden < 1:
                raise ConfigError(f"adapter.ratio {ratios[s]} gives an empty bottleneck for width {stage.dim}")
            for j, frozen in enumerate(stage.blocks):
                if ad.method == "stgcma":
                    temporal = ad.temporal and (self.is_vit or j % 2 == 0)
                    blocks.append(STGCMABlock(
                        stage.dim, hidden, frozen.num_heads, self.num_frames, temporal=temporal,
                        spatial=ad.spatial, global_=ad.global_, temporal_bias=not self.is_vit,
                        drop_path_rate=rates[len(blocks)],
                    ))
                elif ad.method == "lavish":
                    blocks.append(LavishBlock(stage.dim, hidden, ad.lavish_tokens))
                else:
                    blocks.append(PlainBlock())
        self.blocks = nn.ModuleList(blocks)
        dim = self.trunk.stage_dims[-1]
        self.norm_v = StreamNorm(dim, self.trunk.norm)
        self.norm_a = StreamNorm(dim, self.trunk.norm)
        self.embed_dim = dim
        self.checkpointing = False  # recompute blocks in the backward pass (less memory, more time)
        self.checkpoint_fraction = 1.0  # of the blocks, spread evenly (see ``recomputed_blocks``)
        self.stage_ends = np.cumsum([len(s.blocks) for s in self.trunk.stages]).astype(int) - 1
        self.stage_ends = [int(e) for e in self.stage_ends]

    def check_inputs(self, video: torch.Tensor, audio: torch.Tensor) -> None:
        """Raise ValueError with the expected shapes when inputs do not fit the model."""
        pre = self.config.preprocess
        size = pre.image_size
        if video.ndim != 5 or tuple(video.shape[2:]) != (3, size, size):
            raise ValueError(f"video must be (B, T, 3, {size}, {size}); got {tuple(video.shape)}")
        if audio.ndim != 5 or tuple(audio.shape[2:]) != (1, *pre.audio_shape):
            raise ValueError(f"audio must be (B, T, 1, {pre.target_frames}, {pre.num_mel_bins}); "
                             f"got {tuple(audio.shape)}")
        if video.shape[:2] != audio.shape[:2]:
            raise ValueError(f"video and audio must share (B, T); "
                             f"got {tuple(video.shape[:2])} and {tuple(audio.shape[:2])}")
        if video.shape[1] != self.num_frames:
            raise ValueError(f"this model was built for T={self.num_frames} segments; got T={video.shape[1]}")

    def _embed(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames, specs = video.flatten(0, 1), audio.flatten(0, 1)  # (B*T, C, H, W)
        if self.is_vit:
            xv = self.trunk.embed(frames)  # (B*T, 1+Nv, D)
            xa = self.trunk.embed(specs, self.audio_patch_embed, self.audio_pos_embed)  # (B*T, 1+Na, D)
            if self.temporal_embed_v is not None:
                xv = self.temporal_embed_v(xv, self.num_frames)
                xa = self.temporal_embed_a(xa, self.num_frames)
            return self.trunk.ln_pre(xv), self.trunk.ln_pre(xa)
        return self.trunk.embed(frames), self.trunk.embed(specs, self.audio_patch_embed)  # (B*T, H*W, C)

    def forward_intermediates(
        self, video: torch.Tensor, audio: torch.Tensor, taps: list[int] | None = None,
    ) -> dict[str, Any]:
        """Run both streams; return final tokens and the token maps after the blocks in ``taps``.

        Returns a dict with ``video``/``audio`` (B*T, N, D) final-normed tokens, ``grid_v``/``grid_a``
        token grids, ``intermediates``: a list of (xv, xa, grid_v) after each tapped block
        (default: the last block of every stage), and ``frames_in``: the input frames (B*T, 3, S, S).
        """
        self.check_inputs(video, audio)
        B, T = video.shape[:2]
        xv, xa = self._embed(video, audio)
        grid_v, grid_a = self.trunk.grid, self.grid_a
        taps = set(self.stage_ends if taps is None else taps)
        recompute = recomputed_blocks(len(self.blocks), self.checkpoint_fraction) \
            if self.checkpointing and torch.is_grad_enabled() else set()
        intermediates = []
        i = 0
        for stage in self.trunk.stages:
            xv, grid_v = stage.merge(xv, grid_v)
            xa, grid_a = stage.merge(xa, grid_a)
            ctx = StreamContext(B, T, grid_v, grid_a)
            for frozen in stage.blocks:
                if i in recompute:
                    xv, xa = checkpoint(self.blocks[i], frozen, xv, xa, ctx, use_reentrant=False)
                else:
                    xv, xa = self.blocks[i](frozen, xv, xa, ctx)
                if i in taps:
                    intermediates.append((xv, xa, grid_v))
                i += 1
        return {"video": self.norm_v(xv), "audio": self.norm_a(xa), "grid_v": grid_v, "grid_a": grid_a,
                "intermediates": intermediates, "batch": B, "frames": T,
                "frames_in": video.flatten(0, 1)}  # (B*T, 3, S, S), a view: the AVS detail branch reads it

    def pooled(self, feats: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-segment stream vectors: CLS (ViT) or mean token (Swin) -> (B, T, D) each."""
        B, T = feats["batch"], feats["frames"]
        if self.is_vit:
            v, a = feats["video"][:, 0], feats["audio"][:, 0]
        else:
            v, a = feats["video"].mean(1), feats["audio"].mean(1)
        return v.reshape(B, T, -1), a.reshape(B, T, -1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, Any]:
        return self.forward_intermediates(video, audio)

    def train(self, mode: bool = True) -> AudioVisualEncoder:
        """Train mode for the adapters; the frozen trunk stays in eval mode unless fully fine-tuned."""
        super().train(mode)
        if self.config.adapter.method != "full_finetune":
            self.trunk.eval()
            self.audio_patch_embed.eval()
        return self


class STGCMAModel(nn.Module):
    """Encoder + task head. ``forward`` returns the head's outputs (a dict with ``logits``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = AudioVisualEncoder(config)
        self.head: TaskHead = build_head(config, self.encoder)
        mark_trainable(self)

    def forward_features(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, Any]:
        return self.encoder.forward_intermediates(video, audio, taps=self.head.taps)

    def forward_head(self, feats: dict[str, Any], **task_inputs: Any) -> dict[str, torch.Tensor]:
        return self.head(feats, self.encoder, **task_inputs)

    def forward(self, video: torch.Tensor, audio: torch.Tensor, **task_inputs: Any) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(video, audio), **task_inputs)

    @contextmanager
    def capture_attention(self):
        """Record every bottleneck cross-attention map; yields {(block, stage, direction): (G, Nq, Nk)}."""
        maps: dict[tuple[int, str, str], torch.Tensor] = {}
        modules = [(i, b.cross) for i, b in enumerate(self.encoder.blocks)
                   if isinstance(getattr(b, "cross", None), BottleneckCrossAttention)]
        per_block = {i: {} for i, _ in modules}
        for i, m in modules:
            m.capture = per_block[i]
        try:
            yield maps
        finally:
            for i, m in modules:
                m.capture = None
                for (stage, direction), value in per_block[i].items():
                    maps[(i, stage, direction)] = value

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained tensors: trainable parameters plus the persistent buffers of the modules that own them
        (e.g. BatchNorm running statistics in a head). Values are the live tensors."""
        state = {k: v for k, v in self.named_parameters() if v.requires_grad}
        for name, module in self.named_modules():
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                continue
            for bname, buf in module.named_buffers(recurse=False):
                if buf is not None and bname not in module._non_persistent_buffers_set:
                    state[f"{name}.{bname}" if name else bname] = buf
        return state

    def parameter_counts(self) -> dict[str, int]:
        return {"trainable": num_params(self, trainable=True), "total": num_params(self)}

    def print_trainable_parameters(self) -> None:
        c = self.parameter_counts()
        print(f"trainable params: {c['trainable']:,} || all params: {c['total']:,} || "
              f"trainable%: {100 * c['trainable'] / c['total']:.4f}")

    def save_pretrained(self, folder: str | Path, meta: dict[str, Any] | None = None, **card: Any) -> Path:
        """Adapter-only checkpoint + generated model card (``README.md``) in ``folder``; see :mod:`stgcma.hub`."""
        from stgcma.hub import save_pretrained

        return save_pretrained(self, folder, meta, **card)

    def push_to_hub(self, repo_id: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Upload the checkpoint and its model card to the Hugging Face Hub; see :func:`stgcma.hub.push_to_hub`."""
        from stgcma.hub import push_to_hub

        return push_to_hub(self, repo_id, meta=meta, **kwargs)

    def train(self, mode: bool = True) -> STGCMAModel:
        super().train(mode)
        self.encoder.train(mode)
        return self


def mark_trainable(model: nn.Module) -> nn.Module:
    """Freeze everything, then unfreeze by module TYPE: adapters and task heads (all, for full fine-tuning).

    Idempotent. The trunk's parameters are never selected by name.
    """
    full = getattr(getattr(model, "config", None), "adapter", None)
    full = full is not None and full.method == "full_finetune"
    model.requires_grad_(full)
    for module in model.modules():
        if isinstance(module, (AdapterModule, TaskHead)):
            module.requires_grad_(True)
    return model


def create_model(name_or_config: str | ModelConfig, overrides: list[str] | dict[str, Any] | None = None) -> STGCMAModel:
    """Build a model from a preset name, a JSON path or a ``ModelConfig``, with optional overrides.

    >>> model = create_model("vit-test")
    """
    if isinstance(name_or_config, ModelConfig):
        config = apply_overrides(name_or_config, overrides) if overrides else name_or_config
    else:
        config = load_preset(name_or_config, overrides)
    return STGCMAModel(config)
