"""Image-only pretraining of the embedded default's small ViT on SynthAV FRAMES (no audio at all).

This mirrors the paper's premise at toy scale: an image model that never heard anything is
pretrained, frozen, then adapted to audio-visual tasks. The objective is supervised, like
ImageNet pretraining, plus a dense term so patch tokens know what they cover:

- per patch: which object class (or background) covers most of the patch (cross-entropy, the
  background class down-weighted: it covers about nine patches in ten, and at full weight a tower
  that calls every patch background already scores 90% patch accuracy while naming nothing);
- per image: which classes are visible (multi-label, binary cross-entropy on the CLS token).

Every epoch draws new clips (a seed per epoch), so the tower never sees a frame twice. After training,
the image head is scored on frames of a held-out seed: ``visible_accuracy`` is the fraction of
frames whose set of visible classes it names exactly, ``visible_balanced`` its balanced per-class
accuracy. That, not patch accuracy, says whether the frozen tower can tell objects apart.

The result is saved as a plain timm state dict in safetensors, loadable by
``BackboneConfig(name="synth-vit", pretrained=PATH)`` like any local timm checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stgcma.backbones import source_model
from stgcma.config import BackboneConfig, PreprocessConfig
from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.render import render_class_maps, render_frames, segment_times
from stgcma.data.synthav.scene import NUM_MUSIC_CLASSES, SynthConfig
from stgcma.data.synthav.styles import class_styles
from stgcma.media.features import frames_to_tensor


class SynthFrames(Dataset):
    """Single SynthAV frames with a class-index map (0 = background, 1 + k = class k) per pixel."""

    def __init__(self, seed: int, n_clips: int, preprocess: PreprocessConfig, classes: int | None = None,
                 frames_per_clip: int = 4, world: str = "music") -> None:
        self.seed, self.n_clips, self.pre = seed, n_clips, preprocess
        self.frames_per_clip = frames_per_clip
        self.config = SynthConfig(num_segments=10, num_classes=classes, sample_rate=preprocess.sample_rate,
                                  world=world)
        self.classes = self.config.num_classes
        self.styles = class_styles(self.classes)

    def __len__(self) -> int:
        return self.n_clips * self.frames_per_clip

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = make_clip(self.seed, index // self.frames_per_clip, self.config, "train")
        scene = clip.scene
        seg = (index % self.frames_per_clip) * (scene.num_segments // self.frames_per_clip)
        t = float(segment_times(scene.num_segments)[seg])
        size = self.pre.image_size
        frame = render_frames(scene, np.array([t]), size, self.styles)  # (1, S, S, 3)
        labels = render_class_maps(scene, np.array([t]), size, self.styles)[0].astype(np.int64)  # (S, S)
        return frames_to_tensor(frame, self.pre)[0], torch.from_numpy(labels)


class PretrainHeads(nn.Module):
    """Patch classifier and image-level multi-label classifier on top of a timm ViT."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.patch = nn.Linear(dim, classes + 1)
        self.image = nn.Linear(dim, classes)


@dataclass
class PretrainResult:
    path: Path
    seconds: float
    patch_accuracy: float
    object_patch_accuracy: float = float("nan")  # over patches mostly covered by an object
    visible_accuracy: float = float("nan")  # held-out frames whose visible-class set is named exactly
    visible_balanced: float = float("nan")  # balanced per-class accuracy of the same multi-label head


MIN_VISIBLE_PIXELS = 16  # an object counts as on screen from this many pixels


def present_classes(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Which classes are on screen (at least ``MIN_VISIBLE_PIXELS``): (B, S, S) -> (B, K) float."""
    B = labels.shape[0]
    rows = labels.flatten(1) + (classes + 1) * torch.arange(B, device=labels.device)[:, None]  # (B, S*S) ids
    counts = torch.bincount(rows.flatten(), minlength=B * (classes + 1)).view(B, classes + 1)[:, 1:]  # (B, K)
    return (counts >= MIN_VISIBLE_PIXELS).float()


def patch_targets(labels: torch.Tensor, patch: int, classes: int) -> torch.Tensor:
    """Majority class per patch: (B, S, S) -> (B, S/p * S/p)."""
    one_hot = F.one_hot(labels, classes + 1).permute(0, 3, 1, 2).float()  # (B, K+1, S, S)
    votes = F.avg_pool2d(one_hot, patch)  # (B, K+1, S/p, S/p)
    return votes.flatten(2).argmax(1)  # (B, N)


@torch.no_grad()
def visible_scores(model: nn.Module, heads: PretrainHeads, data: SynthFrames, batch_size: int, device: str,
                   num_workers: int = 0) -> tuple[float, float]:
    """(exact-set accuracy, balanced accuracy) of the image head's visible classes on ``data``."""
    model.eval()
    hits = frames = 0
    true_pos = pos = true_neg = neg = 0
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers)
    for images, labels in loader:
        tokens = model.forward_features(images.to(device))  # (B, 1+N, D)
        truth = present_classes(labels.to(device), data.classes).bool()  # (B, K)
        guess = heads.image(tokens[:, 0]) > 0  # (B, K)
        hits += int((guess == truth).all(1).sum())
        frames += len(truth)
        true_pos += int((guess & truth).sum())
        pos += int(truth.sum())
        true_neg += int((~guess & ~truth).sum())
        neg += int((~truth).sum())
    return hits / max(frames, 1), 0.5 * (true_pos / max(pos, 1) + true_neg / max(neg, 1))


def pretrain_backbone(out: str | Path, backbone: str = "synth-vit", preprocess: PreprocessConfig | None = None,
                      seed: int = 1000, n_clips: int = 2000, epochs: int = 6, batch_size: int = 64,
                      lr: float = 1e-3, device: str = "cpu", progress: bool = True,
                      num_workers: int = 0, world: str = "music", classes: int | None = None,
                      background_weight: float = 0.1, presence_pos_weight: float = 4.0,
                      n_eval: int = 200) -> PretrainResult:
    """Train the backbone on SynthAV frames of ``world`` and save its timm state dict to ``out`` (safetensors).

    Epoch ``e`` renders ``n_clips`` new clips of seed ``seed + e``; ``n_eval`` clips of seed
    ``seed + 9999`` score the result (``PretrainResult.visible_accuracy``). ``classes`` defaults to the
    world's full class set (8 shapes, every music-bank class).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    pre = preprocess or PreprocessConfig(image_size=112)
    model = source_model(BackboneConfig(name=backbone)).train().to(device)
    model.requires_grad_(True)
    classes = classes or (NUM_MUSIC_CLASSES if world == "music" else 8)
    heads = PretrainHeads(model.embed_dim, classes).to(device)
    from stgcma.train.loop import worker_init

    def loader_for(epoch: int) -> DataLoader:
        data = SynthFrames(seed + epoch, n_clips, pre, classes, world=world)
        return DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                          worker_init_fn=worker_init if num_workers else None,
                          generator=torch.Generator().manual_seed(seed + epoch))

    params = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    class_weight = torch.ones(classes + 1, device=device)
    class_weight[0] = background_weight
    pos_weight = torch.full((classes,), presence_pos_weight, device=device)  # ~2 of K classes are on screen
    total = epochs * len(loader_for(0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * 0.5 * (1 + math.cos(math.pi * s / total)))
    patch = model.patch_embed.patch_size[0]
    start = time.time()
    correct = seen = object_correct = object_seen = 0
    for epoch in range(epochs):
        correct = seen = object_correct = object_seen = 0
        model.train()
        bar = tqdm(loader_for(epoch), desc=f"pretrain {epoch + 1}/{epochs}", disable=not progress)
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device)
            tokens = model.forward_features(images)  # (B, 1+N, D), final-normed
            target = patch_targets(labels, patch, classes)  # (B, N)
            patch_logits = heads.patch(tokens[:, 1:])  # (B, N, K+1)
            present = present_classes(labels, classes)  # (B, K)
            loss = F.cross_entropy(patch_logits.flatten(0, 1), target.flatten(), weight=class_weight)
            loss = loss + F.binary_cross_entropy_with_logits(heads.image(tokens[:, 0]), present, pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            right = patch_logits.argmax(-1) == target  # (B, N)
            correct += int(right.sum())
            seen += target.numel()
            object_correct += int(right[target > 0].sum())
            object_seen += int((target > 0).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", patch_acc=f"{correct / seen:.3f}",
                            object_acc=f"{object_correct / max(object_seen, 1):.3f}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "pretraining": "SynthAV frames only (no audio)"})
    tmp.replace(out)
    seconds = time.time() - start
    exact, balanced = visible_scores(model, heads, SynthFrames(seed + 9999, n_eval, pre, classes, world=world),
                                     batch_size, device, num_workers) if n_eval else (float("nan"),) * 2
    return PretrainResult(out, seconds, correct / max(seen, 1), object_correct / max(object_seen, 1), exact, balanced)
