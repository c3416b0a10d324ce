"""Task heads on top of the shared STG-CMA encoder (METHOD.md, "Task heads").

Reference: Wang, Tian, Hatzinakos, "Towards Efficient Audio-Visual Learners via Empowering
Pre-trained Vision Transformers with Cross-Modal Adaptation", CVPR-W 2024 (arXiv 2403.01862).
The AVS decoder follows AVSBench (Zhou et al., ECCV 2022: ASPP, TPAVI, FPN-style refinement) with a
ViTDet simple feature pyramid (Li et al., ECCV 2022) for ViT backbones; the AVQA head follows AVST
(Li et al., "Learning to Answer Questions in Dynamic Audio-Visual Scenarios", CVPR 2022).

A head is a ``TaskHead``: it is trained whenever the model is (selected by type in
``stgcma.model.mark_trainable``), declares which encoder blocks it taps (``taps``; ``None`` = the
end of every stage) and maps the encoder's feature dict (plus task inputs such as ``question``) to a
dict with ``logits``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from stgcma.adapters import init_linear
from stgcma.config import ConfigError, ModelConfig

TASKS = ("ave", "avs", "avqa")


class TaskHead(nn.Module):
    """Base class for task heads.

    A head that reads only a few vectors per segment (not the tokens themselves) says which in
    :meth:`summarize`; its ``forward`` then also accepts ``feats = {"summary": ...}``, so a head refit
    can cache those vectors instead of every token (``stgcma.train.head_refit.FeatureCache``).
    """

    taps: list[int] | None = None

    def summarize(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor] | None:
        """The per-clip tensors (B, ...) the head reads of the encoder's features, or None when it reads
        the tokens themselves."""
        return None

    def _summary(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        return feats["summary"] if "summary" in feats else self.summarize(feats, encoder)

    def reads(self) -> dict[str, Any] | None:
        """What a head refit's cached features of this head depend on beside the encoder: a summary head's
        summary settings, or which tokens a token-reading head reads. The refit keys its disk cache with it,
        so a head option that changes only what is done with the features reuses the cache; None: the
        head's whole config counts."""
        return None


def _patch_tokens(tokens: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    """Drop the ViT class token: (B*T, [1+]H*W, D) -> (B*T, H*W, D)."""
    return tokens[:, 1:] if encoder.is_vit else tokens


def pooled_tokens(feats: dict[str, Any], encoder: nn.Module, stream: str) -> torch.Tensor:
    """[mean, max] over each segment's patch tokens of ``stream`` ("audio" or "video"): (B, T, 2D).

    Audio: an image backbone's audio CLS token barely varies between segments of a clip (relative std
    about 0.04 on SynthAV); the pooled tokens vary several times more and tell which sounds are present.
    Video: the max keeps a small object's presence, which a mean over the frame (or a class token) dilutes.
    """
    tokens = _patch_tokens(feats[stream], encoder)  # (B*T, N, D)
    pooled = torch.cat([tokens.mean(dim=1), tokens.amax(dim=1)], dim=-1)  # (B*T, 2D)
    return pooled.reshape(feats["batch"], feats["frames"], -1)  # (B, T, 2D)


def pooled_audio(feats: dict[str, Any], encoder: nn.Module) -> torch.Tensor:
    """[mean, max] over each segment's audio patch tokens: (B, T, 2D) (:func:`pooled_tokens`)."""
    return pooled_tokens(feats, encoder, "audio")


def _to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B*T, H*W, C) tokens -> (B*T, C, H, W) map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)  # (B*T, C, H, W)


# ----------------------------------------------------------------------------------------------
# AVE
# ----------------------------------------------------------------------------------------------


def _ave_vectors(feats: dict[str, Any], encoder: nn.Module, audio: str) -> dict[str, torch.Tensor]:
    """An AVE head's per-segment inputs. audio: the audio class token (B, T, D), or with ``audio="tokens"``
    the [mean, max] of its patch tokens (B, T, 2D); video: the video class token (B, T, D)."""
    v, a = encoder.pooled(feats)  # (B, T, D) each
    if audio == "tokens":
        a = pooled_audio(feats, encoder)  # (B, T, 2D)
    return {"audio": a, "video": v}


class AVEHead(TaskHead):
    """Per-segment event classifier: concat [a, v] -> Linear(2D, 512) -> Dropout -> Linear(512, C).

    ``audio="tokens"`` replaces the audio CLS by the [mean, max] of the audio patch tokens
    (:func:`pooled_audio`), so ``a`` is 2D wide: on the embedded default a probe on the adapted features
    names the sounding classes at 0.89 balanced accuracy from the pooled tokens and 0.74 from the CLS.
    """

    def __init__(self, dim: int, hidden: int, num_classes: int, dropout: float, audio: str = "cls") -> None:
        super().__init__()
        self.audio = audio
        self.fc1 = init_linear(nn.Linear((3 if audio == "tokens" else 2) * dim, hidden))
        self.drop = nn.Dropout(dropout)
        self.fc2 = init_linear(nn.Linear(hidden, num_classes))

    def summarize(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        return _ave_vectors(feats, encoder, self.audio)

    def reads(self) -> dict[str, Any]:
        return {"summary": "ave", "audio": self.audio}

    def forward(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        s = self._summary(feats, encoder)
        logits = self.fc2(self.drop(self.fc1(torch.cat([s["audio"], s["video"]], dim=-1))))  # (B, T, C)
        return {"logits": logits}


def _class_mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(in_dim), init_linear(nn.Linear(in_dim, hidden)), nn.GELU(),
                         nn.Dropout(dropout), init_linear(nn.Linear(hidden, out_dim)))


class AVECountHead(TaskHead):
    """Counting AVE head (``head.ave_count``): an event is a class heard and seen, and a clip's event is
    the class heard and seen for the most seconds.

    Per segment t and event class k, ``heard[t, k] = sigmoid(MLP(a_t))`` and ``seen[t, k] =
    sigmoid(MLP(v_t))`` (v_t: the video's class token with the [mean, max] of its patch tokens), and
    ``both = heard * seen``. The clip's class posterior is ``pi = softmax(tau * mean_t both)`` (tau
    learnt), so it follows each class's count of audio-visual seconds; then ``p[t, k] = pi_k * both[t, k]``
    and background takes the rest, ``1 - sum_k p[t, k]`` (at least 1e-6). The per-segment head sees one
    second at a time and cannot tell the event from another class heard and seen for fewer seconds.

    ``logits`` are the log-probabilities (C = classes + background), so a softmax gives p back and the
    cross-entropy, the decoders and the app read them as they read :class:`AVEHead`'s logits.

    ``context=True`` (``head.ave_context``) lets each second's heard and seen logits read their
    neighbours' and the clip's (:class:`SegmentContext`), zero-initialised: a trained head gains it unchanged.
    """

    def __init__(self, dim: int, hidden: int, num_classes: int, dropout: float, audio: str = "cls",
                 context: bool = False) -> None:
        super().__init__()
        self.audio = audio
        events = num_classes - 1
        self.hear = _class_mlp((2 if audio == "tokens" else 1) * dim, hidden, events, dropout)
        self.see = _class_mlp(3 * dim, hidden, events, dropout)
        self.log_tau = nn.Parameter(torch.tensor(2.3))  # tau = 10: one second more of 10 moves pi by e
        self.hear_context = SegmentContext(events) if context else None
        self.see_context = SegmentContext(events) if context else None

    def summarize(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        """:func:`_ave_vectors`, with the [mean, max] of the video patch tokens beside the class token."""
        s = _ave_vectors(feats, encoder, self.audio)
        return {**s, "video": torch.cat([s["video"], pooled_tokens(feats, encoder, "video")], dim=-1)}  # (B, T, 3D)

    def reads(self) -> dict[str, Any]:
        return {"summary": "ave_count", "audio": self.audio}

    def forward(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        s = self._summary(feats, encoder)
        heard, seen = self.hear(s["audio"]), self.see(s["video"])  # (B, T, K) logits each
        if self.hear_context is not None:
            heard, seen = self.hear_context(heard), self.see_context(seen)
        log_both = (F.logsigmoid(heard) + F.logsigmoid(seen)).float()  # (B, T, K)
        log_pi = F.log_softmax(self.log_tau.exp() * log_both.exp().mean(dim=1), dim=-1)  # (B, K)
        log_event = log_pi.unsqueeze(1) + log_both  # (B, T, K)
        rest = (1 - log_event.exp().sum(dim=-1, keepdim=True)).clamp_min(1e-6)  # (B, T, 1)
        return {"logits": torch.cat([log_event, rest.log()], dim=-1)}  # (B, T, K + 1)


class SegmentContext(nn.Module):
    """Per-segment class logits (B, T, K) plus what their neighbours and the whole clip say:
    ``x + conv_t(x) + W mean_t(x)``, a width-3 convolution over the segments and a map of the clip's mean,
    both across classes and zero-initialised (the identity at the start). A second's detector sees that
    second alone; an instrument heard or seen in the seconds around it, or all clip long, is likelier there.
    """

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.local = nn.Conv1d(classes, classes, 3, padding=1)
        self.clip = nn.Linear(classes, classes)
        for layer in (self.local, self.clip):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x.transpose(1, 2)).transpose(1, 2)  # (B, K, T) -> (B, T, K)
        return x + local + self.clip(x.mean(dim=1, keepdim=True))  # (B, T, K)


def decode_ave(logits: torch.Tensor, mode: str = "segment") -> torch.Tensor:
    """AVE labels from the head's logits; the last class is background.

    ``"segment"``: each segment's argmax (the paper's rule). ``"clip"``: an AVE clip holds one event
    category, so the clip's class is the event class with the largest probability summed over its
    segments, and each segment is that class where its probability beats background's, else
    background. On the embedded default's validation clips this chose best among the sums of
    probabilities, of log-probabilities and of event-weighted log-probabilities (see README).

    Args:
        logits: (..., T, C) over the T segments of each clip.
        mode: ``"segment"`` or ``"clip"``.

    Returns:
        (..., T) class indices.
    """
    if mode == "segment":
        return logits.argmax(-1)
    if mode != "clip":
        raise ValueError(f"AVE decode mode must be 'segment' or 'clip', got {mode!r}")
    probs = logits.float().softmax(-1)  # (..., T, C)
    background = logits.shape[-1] - 1
    event = probs[..., :background].sum(-2).argmax(-1, keepdim=True)  # (..., 1): the clip's class
    p_event = probs.gather(-1, event.unsqueeze(-2).expand(*probs.shape[:-1], 1)).squeeze(-1)  # (..., T)
    return torch.where(p_event > probs[..., background], event, torch.full_like(event, background))


# ----------------------------------------------------------------------------------------------
# AVS: multi-scale visual features -> AVSBench decoder
# ----------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (N, C, H, W)


def _resampler(dim: int, scale: float) -> tuple[nn.Module, int]:
    """ViTDet simple-pyramid resampling by ``scale`` (4, 2, 1 or 0.5); returns (module, output width)."""
    if scale == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
        ), dim // 4
    if scale == 2:
        return nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), dim // 2
    if scale == 1:
        return nn.Identity(), dim
    if scale == 0.5:
        return nn.MaxPool2d(2), dim
    raise ValueError(f"pyramid scale must be 4, 2, 1 or 0.5; got {scale}")


class ASPP(nn.Module):
    """AVSBench's atrous pyramid: the sum of 3x3 convolutions with dilations 3, 6, 12, 18."""

    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...] = (3, 6, 12, 18)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels, channels, 3, padding=d, dilation=d) for d in dilations)
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.convs)


class PyramidLevel(nn.Module):
    """Tokens of one tapped block -> one decoder scale: LayerNorm, resample, 1x1 projection, ASPP.

    ``normed=True`` skips the LayerNorm for tokens that already went through the encoder's final norm.
    """

    def __init__(self, dim: int, channels: int, scale: float = 1.0, normed: bool = False) -> None:
        super().__init__()
        self.norm = nn.Identity() if normed else nn.LayerNorm(dim)
        self.resample, width = _resampler(dim, scale)
        self.proj = nn.Conv2d(width, channels, 1)
        self.aspp = ASPP(channels, channels)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B*T, h*w, D) tokens on ``grid`` -> (B*T, C, H, W)."""
        x = self.resample(_to_map(self.norm(tokens), grid))  # (B*T, D', H, W)
        return self.aspp(self.proj(x))  # (B*T, C, H, W)


class TPAVI(nn.Module):
    """AVSBench's temporal pixel-wise audio-visual interaction (a non-local block, "dot" mode).

    Each position i of each frame attends the clip's T audio vectors, broadcast over space, and
    gathers visual values: ``y_i = sum_(t,j) theta(x_i) . phi(a_t) g(x_(t,j)) / (T*H*W)``; then
    ``z = LayerNorm(x + BN(W y))`` with the BN scale at zero, so the block starts as LayerNorm(x).
    Since the audio is constant over a frame's positions, the sum is computed in factored form
    (no (THW x THW) matrix); the result equals AVSBench's.
    """

    def __init__(self, channels: int, audio_dim: int) -> None:
        super().__init__()
        inter = channels // 2
        self.align = nn.Linear(audio_dim, channels)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Linear(channels, inter)  # the 1x1 conv on the broadcast audio map
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = nn.Conv2d(inter, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        self.norm = LayerNorm2d(channels)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x: (B*T, C, H, W) visual maps; audio: (B, T, audio_dim) -> (B*T, C, H, W)."""
        B, T = audio.shape[:2]
        H, W = x.shape[-2:]
        phi = self.phi(self.align(audio))  # (B, T, c)
        theta = self.theta(x).flatten(2).transpose(1, 2).reshape(B, T * H * W, -1)  # (B, T*H*W, c)
        g = self.g(x).flatten(2).mean(-1).reshape(B, T, -1)  # (B, T, c): averaged over each frame
        y = (theta @ phi.transpose(1, 2) / T) @ g  # (B, T*H*W, c); 1/T * 1/(H*W) = AVSBench's 1/N
        y = y.reshape(B * T, H, W, -1).permute(0, 3, 1, 2)  # (B*T, c, H, W)
        return self.norm(x + self.bn(self.out(y)))


class ResidualConvUnit(nn.Module):
    """ReLU -> 3x3 conv -> ReLU -> 3x3 conv, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class RefineBlock(nn.Module):
    """FPN-style top-down step (AVSBench's FeatureFusionBlock): add the refined lateral map, refine, upsample."""

    def __init__(self, channels: int, lateral: bool) -> None:
        super().__init__()
        self.lateral = ResidualConvUnit(channels) if lateral else None
        self.refine = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None = None) -> torch.Tensor:
        """x, skip: (B*T, C, h, w) -> (B*T, C, *size)."""
        if skip is not None:
            x = x + self.lateral(skip)
        return F.interpolate(self.refine(x), size=size, mode="bilinear", align_corners=True)


class MaskOutput(nn.Module):
    """AVSBench's output convs: 3x3 conv -> upsample -> 3x3 conv -> ReLU -> 1x1 conv to 1 logit -> upsample.

    AVSBench upsamples to the full image before the 128 -> 32 convolution; here it runs at half the
    image size and the one-channel logits are upsampled instead: that convolution is most of the
    decoder's cost, and this cuts it 4x. ``width`` is the middle width (AVSBench: 128); at
    ``channels=32`` these two convolutions are about two thirds of the head's time, 32 cuts them 4x.
    """

    def __init__(self, channels: int, width: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 1, 1)

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """(B*T, C, h, w) -> (B*T, 1, size, size)."""
        x = self.conv1(x)
        if x.shape[-2:] != (size // 2, size // 2):  # the same size would be an identity resample: skip the copy
            x = F.interpolate(x, size=(size // 2, size // 2), mode="bilinear", align_corners=False)
        logits = self.conv3(F.relu(self.conv2(x)))  # (B*T, 1, size/2, size/2)
        return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


class DetailRefiner(nn.Module):
    """Mask-logit corrections from the input frames, for objects smaller than the decoder's detail.

    A ViT's decoder sees the frame through 16-px patches; an object of 16 x 16 px is one or two of
    them, and its mask edge is a guess (the true masks seen through a 7 x 7 grid score mIoU 0.16 on
    SynthAV's s4 test clips; through 28 x 28, 0.79: ``python -m stgcma bounds``). As ViTMatte's
    detail capture does for matting, a small conv stream reads the frame at full and half
    resolution and meets the decoder's last map and logits there:
    ``delta = out(fuse_full([up(fuse_half([x, d2])), d1, logits]))``, d1 = stem_full(frame) (S),
    d2 = stem_half(d1) (S/2). ``out`` starts at zero, so the head starts as the decoder alone.
    """

    def __init__(self, channels: int, width: int = 8) -> None:
        super().__init__()
        self.stem_full = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.GELU())
        self.stem_half = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU())
        self.fuse_half = nn.Sequential(nn.Conv2d(channels + 2 * width, 2 * width, 3, padding=1), nn.GELU())
        self.fuse_full = nn.Sequential(nn.Conv2d(3 * width + 1, width, 3, padding=1), nn.GELU())
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """x: (B*T, C, h, w) decoder map; logits: (B*T, 1, S, S); frames: (B*T, 3, S, S) -> (B*T, 1, S, S)."""
        d1 = self.stem_full(frames)  # (B*T, w, S, S)
        d2 = self.stem_half(d1)  # (B*T, 2w, S/2, S/2)
        if x.shape[-2:] != d2.shape[-2:]:
            x = F.interpolate(x, size=d2.shape[-2:], mode="bilinear", align_corners=False)
        h = self.fuse_half(torch.cat([x, d2], dim=1))  # (B*T, 2w, S/2, S/2)
        h = F.interpolate(h, size=d1.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.fuse_full(torch.cat([h, d1, logits], dim=1)))  # (B*T, 1, S, S)


class AVSMatch(nn.Module):
    """How much each patch looks like what is heard: ``m = <Wv x_i, Wa a_t> / sqrt(c)`` per frame.

    Added to the decoder's mask logits (upsampled from the patch grid), it lets the head lower a
    silent object that the decoder finds as object-like as the sounding one: on the embedded default
    without it, the masks covered every visible object (IoU 0.65 with all objects, 0.36 with the
    sounding one). ``Wa`` starts at zero, so the head starts as the plain decoder.
    """

    def __init__(self, dim: int, audio_dim: int, width: int = 64) -> None:
        super().__init__()
        self.visual = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.audio = nn.Linear(audio_dim, width)
        nn.init.zeros_(self.audio.weight)
        nn.init.zeros_(self.audio.bias)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], audio: torch.Tensor) -> torch.Tensor:
        """tokens: (B*T, H*W, D) patch tokens; audio: (B, T, audio_dim) -> (B*T, 1, H, W) match logits."""
        q = self.visual(tokens)  # (B*T, H*W, c)
        k = self.audio(audio).flatten(0, 1)  # (B*T, c)
        m = (q @ k.unsqueeze(-1)) / q.shape[-1] ** 0.5  # (B*T, H*W, 1)
        return m.transpose(1, 2).reshape(-1, 1, *grid)  # (B*T, 1, H, W)


class AVSHead(TaskHead):
    """Sounding-object mask decoder (AVSBench-style) over multi-scale visual features of the encoder.

    Scales, finest first: Swin stage outputs (strides 4, 8, 16, 32 for a 4-stage Swin); for a ViT, a
    ViTDet simple pyramid over blocks tapped evenly through the depth (block ``depth*(k+1)//n - 1``
    for scale k), resampled x4, x2, x1, /2 (strides p/4, p/2, p, 2p for patch size p; the /2 level is
    dropped when the patch grid is under 4x4). Per scale: 1x1 projection + ASPP to ``channels``, then
    TPAVI with the audio feature (``pooled_audio``: [mean, max] of the audio patch tokens ->
    LayerNorm -> Linear(2D, audio_dim)); then top-down
    refinement and upsampling to ``image_size`` logits. ``match=True`` adds :class:`AVSMatch` over the
    last block's patch tokens to those logits; ``detail=True`` adds :class:`DetailRefiner`'s corrections
    from the input frames.

    ``forward(feats, encoder)`` returns ``{"logits": (B, T, 1, S, S)}`` mask logits (S = image size).
    """

    def __init__(self, encoder: nn.Module, channels: int, audio_dim: int, match: bool = False,
                 mask_width: int = 128, detail: bool = False) -> None:
        super().__init__()
        trunk = encoder.trunk
        depth = len(trunk.blocks)
        self.image_size = encoder.config.preprocess.image_size
        if encoder.is_vit:
            scales = [4.0, 2.0, 1.0] + ([0.5] if min(trunk.grid) >= 4 else [])
            n = len(scales)
            self.level_taps = [max(depth * (k + 1) // n - 1, 0) for k in range(n)]
            dims = [trunk.embed_dim] * n
        else:
            scales = [1.0] * len(trunk.stages)
            self.level_taps = [int(e) for e in encoder.stage_ends]
            dims = list(trunk.stage_dims)
        self.last_block = depth - 1
        self.taps = sorted(set(self.level_taps))
        self.levels = nn.ModuleList(
            PyramidLevel(d, channels, s, normed=t == self.last_block)
            for d, s, t in zip(dims, scales, self.level_taps, strict=True)
        )
        width = 2 * encoder.embed_dim  # pooled_audio: [mean, max]
        self.audio_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, audio_dim))
        self.tpavi = nn.ModuleList(TPAVI(channels, audio_dim) for _ in scales)
        self.refine = nn.ModuleList(RefineBlock(channels, lateral=k < len(scales) - 1) for k in range(len(scales)))
        self.output = MaskOutput(channels, mask_width)
        self.match = AVSMatch(encoder.embed_dim, audio_dim) if match else None
        self.detail = DetailRefiner(channels) if detail else None

    def _level_tokens(self, feats: dict[str, Any], tap: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens and grid after block ``tap``; the last block's come final-normed from the encoder."""
        if tap == self.last_block:
            return feats["video"], feats["grid_v"]
        xv, _, grid = feats["intermediates"][self.taps.index(tap)]
        return xv, grid

    def forward(self, feats: dict[str, Any], encoder: nn.Module) -> dict[str, torch.Tensor]:
        if len(feats["intermediates"]) != len(self.taps):
            raise ValueError(f"the AVS head needs the encoder blocks {self.taps} tapped; "
                             "compute features with model.forward_features(video, audio)")
        B, T = feats["batch"], feats["frames"]
        audio = self.audio_proj(pooled_audio(feats, encoder))  # (B, T, audio_dim)
        maps = []
        for level, tpavi, tap in zip(self.levels, self.tpavi, self.level_taps, strict=True):
            tokens, grid = self._level_tokens(feats, tap)
            maps.append(tpavi(level(_patch_tokens(tokens, encoder), grid), audio))  # (B*T, C, H_k, W_k)
        h, w = maps[0].shape[-2:]
        sizes = [(2 * h, 2 * w)] + [tuple(m.shape[-2:]) for m in maps[:-1]]  # each level's output size
        x = self.refine[-1](maps[-1], sizes[-1])
        for k in range(len(maps) - 2, -1, -1):
            x = self.refine[k](x, sizes[k], skip=maps[k])  # (B*T, C, H_k', W_k')
        logits = self.output(x, self.image_size)  # (B*T, 1, S, S)
        if self.match is not None:
            tokens, grid = self._level_tokens(feats, self.last_block)
            match = self.match(_patch_tokens(tokens, encoder), grid, audio)  # (B*T, 1, H, W)
            logits = logits + F.interpolate(match, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        if self.detail is not None:
            if "frames_in" not in feats:
                raise ValueError("the AVS head's detail branch reads the input frames: compute features with "
                                 "model.forward_features(video, audio)")
            logits = logits + self.detail(x, logits, feats["frames_in"])
        return {"logits": logits.reshape(B, T, *logits.shape[1:])}  # (B, T, 1, S, S)


# ----------------------------------------------------------------------------------------------
# AVQA: AVST-style question answering
# ----------------------------------------------------------------------------------------------


class QuestionEncoder(nn.Module):
    """AVST's question encoder: tanh(word embedding) -> LSTM -> final [h, c] -> tanh -> Linear(2H, H).

    Token 0 is padding. Trailing padding is packed away (the final state is the last real token's),
    so padding a question with more zeros does not change its vector.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.fc = nn.Linear(2 * hidden, hidden)

    def forward(self, question: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, H)."""
        positions = torch.arange(1, question.shape[1] + 1, device=question.device)
        lengths = (positions * (question != 0)).amax(dim=1).clamp(min=1)  # (B,): up to the last real token
        x = torch.tanh(self.embed(question))  # (B, L, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.lstm(packed)  # (1, B, H) each, in input order
        return self.fc(torch.tanh(torch.cat([h[0], c[0]], dim=-1)))  # (B, H)


class QuestionTemporalAttention(nn.Module):
    """AVST's question-guided temporal attention over T segment vectors, residual FFN, LayerNorm, + mean."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """query: (B, H), seq: (B, T, H) -> (B, H)."""
        x = self.attn(query.unsqueeze(1), seq, seq, need_weights=False)[0].squeeze(1)  # (B, H)
        x = self.norm(x + self.drop(self.ffn(x)))
        return x + seq.mean(dim=1)


def sincos_positions(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 1-D sine-cosine position codes (Vaswani et al.): (n, dim), values in [-1, 1]."""
    half = dim // 2
    freq = torch.exp(-torch.arange(half, device=device) * (torch.log(torch.tensor(1e4)) / max(half - 1, 1)))
    angle = torch.arange(n, device=device)[:, None] * freq[None]  # (n, half)
    codes = torch.cat([angle.sin(), angle.cos()], dim=1)  # (n, 2*half)
    return F.pad(codes, (0, dim - 2 * half))  # (n, dim)


def sincos_positions_2d(grid: tuple[int, int], dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D codes for a (rows, cols) token grid in raster order: (rows*cols, dim), half per axis."""
    rows, cols = grid
    y = sincos_positions(rows, dim // 2, device)[:, None].expand(rows, cols, -1)  # (rows, cols, dim/2)
    x = sincos_positions(cols, dim - dim // 2, device)[None].expand(rows, cols, -1)  # (rows, cols, dim - dim/2)
    return torch.cat([y, x], dim=-1).reshape(rows * cols, dim)  # (N, dim)


def first_to_last(n: int, like: torch.Tensor) -> torch.Tensor:
    """Weights (n,) from -1/n at the first segment to +1/n at the last: a weighted sum over time is
    positive when its evidence comes late and negative when early, and reversing time flips its sign."""
    return torch.linspace(-1.0, 1.0, n, device=like.device, dtype=like.dtype) / n


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dimension of a (..., C) tensor: each feature centred and scaled across
    clips, segments and patches (running statistics at inference).

    A frozen image backbone's features of different clips share a large common component (pooled audio
    tokens: across-clip std about 4% of their magnitude); LayerNorm keeps it, so a head fed with them
    sees nearly the same input for every clip. Centring across the batch makes what differs between
    clips the signal (measured after training: across-clip std 36-87% of the magnitude).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class ScaledCosineAttention(nn.Module):
    """Softmax over keys of ``scale * cos(query, key)`` with a learnable scale (CLIP's logit scale).

    Cosines live in [-1, 1], so without the scale a softmax over ~50 patches is nearly uniform and
    "grounding" is a plain mean; the scale starts at 10 and is clamped to at most 100.
    """

    def __init__(self, init: float = 10.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init)).log())

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (..., H), keys (..., N, H) -> weights (..., N) summing to 1 over N."""
        cos = (F.normalize(keys, dim=-1) @ F.normalize(query, dim=-1).unsqueeze(-1)).squeeze(-1)  # (..., N)
        return (self.log_scale.exp().clamp(max=100.0) * cos).softmax(dim=-1)


class QuestionReadout(nn.Module):
    """A direct, multiplicative path from the clip's segment vectors to the answer, per question.

    ``e_t = (W_a a_t) * (U_a q)`` and ``f_t = (W_v v_t) * (U_v q)`` for the T segments; their mean and
    max over time are layer-normed and projected to H. A question names what to look for ("Is there a
    <Object> sound?"); the elementwise product with a projection of q lets one linear layer pick the
    feature that answers it, and max over time answers "at any moment" questions. AVST's only such
    product is at the very end, after the temporal attention has averaged the segments.

    Mean and max ignore the segment order. ``order=True`` adds, through its own zero-initialised
    projection (so a trained read-out keeps its outputs until the new weights learn), the
    time-weighted sums ``sum_t c_t e_t`` with ``c_t`` running from -1 (first segment) to +1 (last),
    normalised by T: positive when the named evidence comes late, negative when early, so "which
    sounds first?" has a feature whose sign reversing the clip flips.
    """

    def __init__(self, hidden: int, order: bool = False) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, 2 * hidden)
        self.audio = nn.Linear(hidden, hidden)
        self.visual = nn.Linear(hidden, hidden)
        self.out = nn.Sequential(nn.LayerNorm(4 * hidden), nn.Linear(4 * hidden, hidden))
        self.order = nn.Sequential(nn.LayerNorm(2 * hidden), nn.Linear(2 * hidden, hidden)) if order else None
        if self.order is not None:
            nn.init.zeros_(self.order[1].weight)
            nn.init.zeros_(self.order[1].bias)

    def forward(self, q: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """q (B, Q, H), audio (B, T, H), visual (B, Q, T, H) -> (B*Q, H)."""
        qa, qv = self.query(q).chunk(2, dim=-1)  # (B, Q, H) each
        ea = self.audio(audio)[:, None] * qa[:, :, None]  # (B, Q, T, H)
        ev = self.visual(visual) * qv[:, :, None]  # (B, Q, T, H)
        pooled = torch.cat([ea.mean(2), ea.amax(2), ev.mean(2), ev.amax(2)], dim=-1)  # (B, Q, 4H)
        out = self.out(pooled)  # (B, Q, H)
        if self.order is not None:
            T = ea.shape[2]
            when = first_to_last(T, ea)[:, None]  # (T, 1)
            trend = torch.cat([(ea * when).sum(2), (ev * when).sum(2)], dim=-1)  # (B, Q, 2H)
            out = out + self.order(trend)
        return out.flatten(0, 1)  # (B*Q, H)


class ColumnTokens(nn.Module):
    """The clip's layout as one token per column of the patch grid, for the AVQA reasoner.

    A segment vector is the frame pooled one way or another (mean, audio- or question-grounded), so
    "what is on the left of the <Object>?" or "what kind of object is the leftest object?" has no input
    that says what stands where. Here the position-coded patch tokens (B, T, rows*cols, H) are pooled
    over the rows and then over time, [mean, max] each, one vector per column; with it go three numbers
    of the audio-guided grounding's weight on the column (its mean and max over time, and its
    time-weighted sum from -1 at the first segment to +1 at the last), so a column carries whether and
    when the sound was placed there. A Linear maps each to H; a fixed code of the column's place (the
    patch tokens' own position codes are small beside their contents) and a learnt embedding that marks
    the tokens as columns are added. The reasoner reads them beside the segment vectors, and ``pooled``
    (the question's attention over them) reaches the fused vector through ``out``, zero-initialised so
    that direct path adds nothing to a trained head until it learns (the reasoner attending to the new
    tokens moves its answers a little: the shipped head's validation accuracy stayed at 0.660).
    """

    def __init__(self, hidden: int, heads: int = 4) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(4 * hidden + 3), nn.Linear(4 * hidden + 3, hidden))
        self.modality = nn.Parameter(torch.zeros(hidden))
        nn.init.normal_(self.modality, std=0.02)
        self.attend = QuestionTemporalAttention(hidden, heads)
        self.out = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """tokens (B, T, N, H), audio-grounding weights (B, T, N), grid (rows, cols) -> (B, cols, H)."""
        B, T, N, H = tokens.shape
        rows, cols = grid
        x = tokens.reshape(B, T, rows, cols, H)
        per_time = torch.cat([x.mean(2), x.amax(2)], dim=-1)  # (B, T, cols, 2H)
        pooled = torch.cat([per_time.mean(1), per_time.amax(1)], dim=-1)  # (B, cols, 4H)
        share = weights.reshape(B, T, rows, cols).sum(2)  # (B, T, cols): the sound's weight per column
        when = first_to_last(T, share)[None, :, None]  # (1, T, 1)
        sound = torch.stack([share.mean(1), share.amax(1), (share * when).sum(1)], dim=-1)  # (B, cols, 3)
        where = sincos_positions(cols, H, tokens.device)  # (cols, H): the column's place, as `when` for segments
        return self.proj(torch.cat([pooled, sound], dim=-1)) + where + self.modality  # (B, cols, H)

    def pooled(self, query: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """query (B', H), reasoned column tokens (B', cols, H) -> the fused vector's addend (B', H)."""
        return self.out(self.attend(query, columns))


class PatchReadout(nn.Module):
    """Per-patch question read-out: where in the frame the thing a question names shows, before any pooling.

    ``e_n = (W tok_n) * (U q)`` for every patch n of every segment (position-coded tokens).
    ``QuestionReadout`` multiplies the question with segment vectors, each a whole frame pooled, where
    a small instrument is a few of 49 patches; here the product is taken per patch. Two summaries:

    - the max over patches and time, projected to H: the named thing's strongest evidence anywhere;
    - per column the max over rows and time, scored by a Linear and softmaxed over the columns (scaled
      so a uniform profile is 1, resampled to ``bins`` places across the frame for any grid), then an
      MLP of the profile multiplied by a projection of q: one peak or several, so "how many <Object>s
      are there?" can count places. Against a refit of the same head on the same clips without it
      (1500 clips, 4 epochs), Visual counting rose from 0.758 to 0.835 and the frame max alone did not
      move it (0.765); where-questions stayed at 0.39, so the profile is no pointer to a side.

    Both reach the fused vector through ``out``, zero-initialised: a trained head keeps its answers
    until the new weights learn.
    """

    def __init__(self, hidden: int, width: int = 64, bins: int = 8) -> None:
        super().__init__()
        self.bins = bins
        self.token = nn.Linear(hidden, width)
        self.query = nn.Linear(hidden, width)
        self.score = nn.Linear(width, 1)
        self.place = nn.Sequential(nn.Linear(bins, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.gate = nn.Linear(hidden, hidden)
        self.found = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, q: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """q (B, Q, H), position-coded tokens (B, T, rows*cols, H) -> the fused vector's addend (B*Q, H)."""
        B, Q, _ = q.shape
        T, (rows, cols) = tokens.shape[1], grid
        e = self.token(tokens)[:, None] * self.query(q)[:, :, None, None]  # (B, Q, T, N, W)
        e = e.reshape(B, Q, T, rows, cols, -1).amax(dim=(2, 3))  # (B, Q, cols, W): the strongest patch per column
        places = self.score(e).squeeze(-1).softmax(dim=-1) * cols  # (B, Q, cols): uniform = 1
        places = F.adaptive_avg_pool1d(places.flatten(0, 1)[:, None], self.bins)[:, 0]  # (B*Q, bins)
        found = self.found(e.amax(dim=2).flatten(0, 1))  # (B*Q, H)
        return self.out(found + self.place(places) * self.gate(q.flatten(0, 1)))  # (B*Q, H)


def layout_targets(class_map: torch.Tensor, grid: tuple[int, int], classes: int | None = None,
                   min_share: float = 0.125) -> torch.Tensor:
    """Per-patch class targets from pixel class maps (0 backdrop, 1 + k class k).

    A patch is the object class that covers most of it when that class covers at least ``min_share``
    of its pixels, else background: SynthAV's instruments cover one or two 16-px patches, and a
    majority vote would hand most of them to the backdrop. ``classes``: the layout map's K; a map that
    names a class beyond it is refused.

    class_map (B, T, S, S) integer -> (B, T, rows, cols) long.
    """
    if classes is not None and class_map.numel() and int(class_map.max()) > classes:
        raise ValueError(f"the class maps name class {int(class_map.max()) - 1}, but the layout map has "
                         f"{classes} classes (head.avqa_layout_classes)")
    B, T = class_map.shape[:2]
    depth = int(class_map.max()) + 1 if class_map.numel() else 1
    one_hot = F.one_hot(class_map.long().flatten(0, 1), max(depth, 2)).permute(0, 3, 1, 2).float()  # (B*T, K+1, S, S)
    share = F.adaptive_avg_pool2d(one_hot[:, 1:], grid)  # (B*T, K, rows, cols): object pixels per patch
    best, cls = share.max(dim=1)  # (B*T, rows, cols)
    target = torch.where(best >= min_share, cls + 1, torch.zeros_like(cls))
    return target.reshape(B, T, *grid)


class LayoutRefine(nn.Module):
    """A second opinion on each patch's class for the layout map (``head.avqa_layout_refine``).

    ``LayoutReadout.classify`` is one Linear on a patch token of one frame: a 16-px patch that holds a
    third of an instrument, in a frame where the player may have drifted half a patch. Here an MLP reads
    the patch token beside the same patch's mean over the clip's segments (SynthAV's objects drift
    around a rest position) and the mean of its 3 x 3 neighbourhood of those time means (an instrument
    straddles patches), and adds its logits to the Linear's. The last layer is zero-initialised, so a
    trained head keeps its map until the new weights learn.
    """

    def __init__(self, hidden: int, classes: int, width: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(3 * hidden), nn.Linear(3 * hidden, width), nn.GELU(),
                                 nn.Linear(width, classes + 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """position-coded tokens (B, T, rows*cols, H) -> logits to add (B, T, rows*cols, K+1)."""
        B, T, N, H = tokens.shape
        rows, cols = grid
        still = tokens.mean(dim=1)  # (B, N, H): each patch over the clip
        around = F.avg_pool2d(still.transpose(1, 2).reshape(B, H, rows, cols), 3, stride=1, padding=1,
                              count_include_pad=False)  # (B, H, rows, cols)
        around = around.flatten(2).transpose(1, 2)  # (B, N, H)
        context = torch.cat([still, around], dim=-1)[:, None].expand(-1, T, -1, -1)  # (B, T, N, 2H)
        return self.mlp(torch.cat([tokens, context], dim=-1))  # (B, T, N, K+1)


class LayoutReadout(nn.Module):
    """A per-patch class map, trained on SynthAV's class maps, read by the question: what stands where.

    The answer alone does not teach a head where a word's object stands: pointers over the columns
    trained by "Where is the <Object>?" stayed at 38-41% on held-out questions, while a class map
    supervised by the scene's layout, read the same way, reached 50-55% (probes on the shipped head's
    cached features). So ``classify`` names each position-coded patch token's class (or background);
    its logits (B, T, K+1, rows, cols) are returned for the auxiliary loss (``layout_targets``), and
    its probabilities give the clip's class-by-column map m (B, K, cols): the max over time and rows,
    resampled to ``bins`` places. Beside it, ``heard`` gives each class a few numbers from the audio
    vectors (their mean and max over time): how that class sounds, e.g. how loud. From them:

    - a pointer over the classes, softmaxed: ``lookup(q)`` (the class a question names) plus the match
      of q with each class's heard numbers (the loudest, the quietest); its profile over m, normalised,
      beside the occupancy of every column (any class) and the number of classes seen, through an MLP
      gated by q: "where is the <Object>?", "where is the loudest object?" (a side is a rank among the
      objects, so it needs both);
    - per class, features of its own profile, the pointer's profile, the occupancy and its heard
      numbers, matched with q and summed into the fused vector: "what kind of object is the leftest
      object?", "what is on the left of the <Object>?", "is the object on the left louder than the
      object on the right?" (the loudness of the class that stands left, minus that of the one on the
      right).

    Both reach the fused vector through ``out``, zero-initialised: a trained head keeps its answers
    until the new weights learn. With ``refine=True`` a ``LayoutRefine`` adds its logits to the
    Linear's: each patch is also named from its mean over the clip and its neighbourhood.

    With ``levels=L`` the loudness is supervised too: ``hear`` names, per segment and class, silence or
    one of L loudness levels (``sound_logits`` (B, T, K, L+1), trained against SynthAV's ``sound_level``).
    The answer alone taught the unsupervised heard numbers little: AV comparative ("is the object on the
    left louder...?") stayed 3 points above its floor, while a probe trained on the levels from the same
    audio vectors ranks two sounding objects' loudness right 92% of the time. Each class's duration (the
    mean sounding probability) and loudness (its expected level while sounding) then join the pointer
    (``sound_query``, zero-initialised) and the per-class features (``per_class_sound``, whose last layer
    is zero-initialised), so a head refitted with them starts from its previous answers.

    With ``sides=True`` (needs ``levels``) the map is also read as MUSIC-AVQA's sides, explicitly
    (``side_slots``): a side is a rank among the objects (one object: middle; two: left, right;
    three: left, middle, right), which per-class features cannot see. Each class's presence (its
    peak on the map past a learnt threshold), mean column and soft rank among the present classes
    give its weight on each side; the sides' loudness, duration and occupancy, read by two question
    pointers over the sides (the first and the second side a question names) and as a whole, feed a
    zero-initialised path:
    "is the object on the left louder than the object on the right?", "where is the loudest object?".
    A training-free probe of this reading on the heard-loudness head's map and levels ranked AV
    comparative's "louder" pairs right 68% of the time (a fixed rule given the object count and
    counting heard classes only: 78%), where that head answered 56% of AV comparative's validation
    questions. Trained by the answers alone, the slots stayed the weak link: on the refitted head,
    comparing the true sides' slots answered 69% of the "louder" pairs (92% from the true classes'
    heard loudness) and its three sides' occupancy was exactly right in 51% of the clips. So
    SynthAV's ``side_class`` (the class at each side) supervises each class's weight on each side
    (``tasks.side_loss``), which trains the map, the presence threshold and the ranks.
    """

    def __init__(self, hidden: int, classes: int, width: int = 64, bins: int = 8, heard: int = 4,
                 levels: int = 0, sides: bool = False, refine: bool = False) -> None:
        super().__init__()
        if sides and not levels:
            raise ValueError("side slots read the heard loudness: set levels too")
        self.classes, self.bins, self.heard_dim, self.levels, self.sides = classes, bins, heard, levels, sides
        self.classify = nn.Linear(hidden, classes + 1)
        self.refine = LayoutRefine(hidden, classes) if refine else None
        self.heard = nn.Sequential(nn.LayerNorm(2 * hidden), nn.Linear(2 * hidden, classes * heard))
        self.lookup = nn.Linear(hidden, classes)
        self.loudness = nn.Linear(hidden, heard)
        self.side = nn.Sequential(nn.Linear(2 * bins + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.gate = nn.Linear(hidden, hidden)
        self.per_class = nn.Sequential(nn.Linear(3 * bins + heard, width), nn.ReLU(), nn.Linear(width, width))
        self.query = nn.Linear(hidden, width)
        self.scores = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if levels:
            self.hear = nn.Linear(hidden, classes * (levels + 1))
            self.sound_query = nn.Linear(hidden, 2)
            self.per_class_sound = nn.Sequential(nn.Linear(3 * bins + 2, width), nn.ReLU(), nn.Linear(width, width))
            for layer in (self.sound_query, self.per_class_sound[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if sides:
            self.side_pointers = nn.Linear(hidden, 2 * 3)  # the first and the second side a question names
            self.side_read = nn.Sequential(nn.Linear(3 * 3 + 9, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.side_gate = nn.Linear(hidden, hidden)
            self.presence = nn.Parameter(torch.tensor([10.0, 0.5]))  # sharpness and threshold of "present"
            nn.init.zeros_(self.side_read[-1].weight)
            nn.init.zeros_(self.side_read[-1].bias)

    def side_slots(self, m: torch.Tensor, sound: torch.Tensor, sharpness: float = 20.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-by-place map m (B, K, P) in [0, 1] and per-class [duration, loudness] (B, K, 2) -> (per
        side (left, middle, right) [occupancy, duration, loudness] (B, 3, 3), each class's weight on
        each side (B, 3, K) in [0, 1]).

        A class's weight on a side is its presence (its peak on the map past a learnt threshold) times
        how well its soft rank among the present classes (how many stand left of it) and the soft
        object count fit that side. SynthAV's ``side_class`` supervises the weights
        (``tasks.side_loss``).
        """
        P = m.shape[-1]
        presence = torch.sigmoid(self.presence[0] * (m.amax(-1) - self.presence[1]))  # (B, K)
        place = torch.linspace(0, 1, P, device=m.device, dtype=m.dtype)
        x = (m * place).sum(-1) / m.sum(-1).clamp_min(1e-3)  # (B, K): mean place
        left_of = torch.sigmoid(sharpness * (x[:, :, None] - x[:, None, :]))  # (B, K, K): j stands left of k
        left_of = left_of * (1 - torch.eye(m.shape[1], device=m.device, dtype=m.dtype))
        rank = (left_of * presence[:, None, :]).sum(-1)  # (B, K)
        count = presence.sum(-1, keepdim=True)  # (B, 1)
        counts = torch.arange(1, 4, device=m.device, dtype=m.dtype)
        fits = torch.softmax(-((count - counts) ** 2) / 0.1, dim=-1)  # (B, 3): one, two or three objects
        at = [(1 - (rank - j).abs()).clamp_min(0) for j in range(3)]  # (B, K) each: rank is j
        one, two, three = (fits[:, c, None] for c in range(3))
        weight = torch.stack([two * at[0] + three * at[0],  # left
                              one * at[0] + three * at[1],  # middle
                              two * at[1] + three * at[2]], dim=1) * presence[:, None]  # (B, 3, K)
        occupancy = weight.sum(-1, keepdim=True)  # (B, 3, 1)
        heard = torch.einsum("bsk,bkf->bsf", weight, sound) / occupancy.clamp_min(1e-3)  # (B, 3, 2)
        return torch.cat([occupancy.clamp_max(1), heard], dim=-1), weight  # (B, 3, 3), (B, 3, K)

    def heard_sound(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio vectors (B, T, H) -> (sound logits (B, T, K, L+1), per class [duration, loudness] (B, K, 2)
        in [0, 1])."""
        B, T = audio.shape[:2]
        logits = self.hear(audio).reshape(B, T, self.classes, self.levels + 1)  # (B, T, K, L+1)
        p = logits.softmax(-1)
        on = 1 - p[..., 0]  # (B, T, K): sounding
        scale = torch.arange(1, self.levels + 1, device=audio.device, dtype=p.dtype) / self.levels
        level = (p[..., 1:] * scale).sum(-1) / on.clamp_min(1e-3)  # (B, T, K): expected level while sounding
        loudness = (level * on).sum(1) / on.sum(1).clamp_min(1e-3)  # (B, K)
        return logits, torch.stack([on.mean(1), loudness], dim=-1)  # (B, K, 2)

    def forward(self, q: torch.Tensor, tokens: torch.Tensor, audio: torch.Tensor, grid: tuple[int, int]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """q (B, Q, H), position-coded tokens (B, T, rows*cols, H), audio vectors (B, T, H) -> (the fused
        vector's addend (B*Q, H), the outputs the auxiliary losses read: ``layout_logits`` (B, T, K+1,
        rows, cols), with ``levels`` ``sound_logits`` (B, T, K, L+1), with ``sides`` ``side_weights``
        (B, 3, K))."""
        B, Q, _ = q.shape
        T, (rows, cols), K = tokens.shape[1], grid, self.classes
        logits = self.classify(tokens)  # (B, T, N, K+1)
        if self.refine is not None:
            logits = logits + self.refine(tokens, grid)
        probs = logits.softmax(-1)[..., 1:].reshape(B, T, rows, cols, K)
        m = probs.amax(dim=(1, 2)).transpose(1, 2)  # (B, K, cols): how likely each class stands in each column
        m = F.adaptive_max_pool1d(m, self.bins)  # (B, K, bins): any grid's columns, resampled to fixed places
        occupied = m.amax(dim=1)  # (B, bins): any object
        seen = m.amax(dim=2).sum(dim=1, keepdim=True) / K  # (B, 1)
        heard = self.heard(torch.cat([audio.mean(1), audio.amax(1)], dim=-1)).reshape(B, K, self.heard_dim)
        pointer = self.lookup(q) + torch.einsum("bqd,bkd->bqk", self.loudness(q), heard)  # (B, Q, K)
        aux = {}
        if self.levels:
            aux["sound_logits"], sound = self.heard_sound(audio)  # (B, T, K, L+1), (B, K, 2)
            pointer = pointer + torch.einsum("bqd,bkd->bqk", self.sound_query(q), sound)
        named = torch.einsum("bqk,bkp->bqp", pointer.softmax(-1), m)  # (B, Q, bins)
        named = named / named.sum(-1, keepdim=True).clamp_min(1e-3)
        occ = (occupied / occupied.sum(-1, keepdim=True).clamp_min(1e-3))[:, None].expand(-1, Q, -1)  # (B, Q, bins)
        side = self.side(torch.cat([named, occ, seen[:, None].expand(-1, Q, -1)], dim=-1)) * self.gate(q)
        own = torch.cat([m, heard], dim=-1)[:, None].expand(-1, Q, -1, -1)  # (B, Q, K, bins + heard)
        context = torch.cat([named, occ], dim=-1)[:, :, None].expand(-1, -1, K, -1)  # (B, Q, K, 2*bins)
        per_class = self.per_class(torch.cat([own, context], dim=-1))  # (B, Q, K, W)
        if self.levels:
            own_sound = torch.cat([m, sound], dim=-1)[:, None].expand(-1, Q, -1, -1)  # (B, Q, K, bins + 2)
            per_class = per_class + self.per_class_sound(torch.cat([own_sound, context], dim=-1))
        per_class = per_class * self.query(q)[:, :, None]  # (B, Q, K, W)
        addend = side + self.scores(per_class.sum(2))  # (B, Q, H)
        if self.sides:
            slots, aux["side_weights"] = self.side_slots(m, sound)  # (B, 3, 3), (B, 3, K)
            first, second = self.side_pointers(q).reshape(B, Q, 2, 3).softmax(-1).unbind(2)  # (B, Q, 3) each
            asked = [torch.einsum("bqs,bsf->bqf", p, slots) for p in (first, second)]  # (B, Q, 3) each
            whole = slots.flatten(1)[:, None].expand(-1, Q, -1)  # (B, Q, 9)
            read = self.side_read(torch.cat([asked[0], asked[1], asked[0] - asked[1], whole], dim=-1))
            addend = addend + read * self.side_gate(q)
        addend = self.out(addend)  # (B, Q, H)
        aux["layout_logits"] = logits.permute(0, 1, 3, 2).reshape(B, T, K + 1, rows, cols)
        return addend.flatten(0, 1), aux


class AVQAHead(TaskHead):
    """MUSIC-AVQA answer classifier in the style of AVST, on the shared encoder's features.

    Per segment t:

    - audio a_t = MLP(FeatureBatchNorm([mean, max] of the audio patch tokens)); the audio CLS token of a
      frozen image backbone barely varies between segments, the pooled tokens do, and centring them across
      the batch makes their differences the signal;
    - visual patch tokens v_t,j = Linear(FeatureBatchNorm(token)) + 2-D position code, so a grounded
      vector carries WHERE it looked;
    - audio-guided spatial grounding (softmax over patches of a learnably scaled cosine with a_t) and
      question-guided spatial grounding (the same with a projection of q), fused with the mean token:
      v_t = Linear(LayerNorm([mean, audio-grounded, question-grounded])).

    The question vector q (``QuestionEncoder``), the T audio vectors and the T visual vectors (each with
    a segment position code and a modality embedding) go through a small Transformer encoder, so
    first/last/before/after relations between segments are computable. AVST's question-guided temporal
    attention then pools each modality; [audio, visual, question] outputs are fused (LayerNorm ->
    Linear(3H, H)), layer-normed and multiplied with the layer-normed q, tanh, and classified into
    ``answers``. No tanh sees an unnormalised input: with AVST's tanh before the fusion and before the
    classifier, trained on these features, the tanh inputs saturated (a shipped default gave every clip
    bit-identical logits for a question).

    With ``readout=True`` a ``QuestionReadout`` of the segment vectors is added to the fused vector
    (``readout_order=True``: with its order-aware time-weighted sums). With ``columns=True`` the reasoner
    also reads one ``ColumnTokens`` token per column of the patch grid (what stands where, and where the
    sound was placed), and the question's attention over them is added to the fused vector. With
    ``patch_readout=True`` a ``PatchReadout`` (the question times every patch token, pooled after the
    product: over the frame, and per column into a profile that can count places) is added too. With
    ``layout_classes=K`` a ``LayoutReadout`` names every patch's class (``layout_logits``
    (B, T, K+1, rows, cols), trained against SynthAV's class maps through ``layout_targets``) and
    reads that class-by-column map with the question: where the named object stands, and which class
    stands where; with ``sound_levels=L`` it also hears how loud each class sounds per segment
    (``sound_logits`` (B, T, K, L+1), trained against SynthAV's ``sound_level``), and with
    ``side_slots=True`` compares the loudness and duration at the sides a question names.

    ``forward(feats, encoder, question=(B, L) LongTensor)`` returns ``logits`` (B, answers),
    ``match_logits`` (B*T, 2) for the clip's own audio-visual pairs and, when B > 1,
    ``match_neg_logits`` (B*T, 2) for each clip's audio against the previous clip's frames in the batch (cyclically). A
    (B, Q, L) question tensor asks Q questions per clip on one pass of the encoder: ``logits``
    (B, Q, answers).

    Matching loss (AVST, weight 0.5): ``AVQAHead.matching_loss(out["match_logits"],
    out["match_neg_logits"])``. AVST pairs a clip's audio with another clip's frames; here the other
    clip is a neighbour in the batch, so negatives cost no second encoder pass and their visual tokens
    come from the same adapted encoder as the positives' (frames sent through the frozen backbone alone
    would differ in their statistics and make the task trivially separable).
    """

    def __init__(self, dim: int, hidden: int, answers: int, vocab_size: int, embed_dim: int, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1, readout: bool = False, readout_order: bool = False,
                 columns: bool = False, patch_readout: bool = False, layout_classes: int = 0,
                 sound_levels: int = 0, side_slots: bool = False, layout_refine: bool = False) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.question_encoder = QuestionEncoder(vocab_size, embed_dim, hidden)
        self.audio_mlp = nn.Sequential(FeatureBatchNorm(2 * dim), nn.Linear(2 * dim, hidden), nn.ReLU(),
                                       nn.Linear(hidden, hidden))
        self.visual_proj = nn.Sequential(FeatureBatchNorm(dim), nn.Linear(dim, hidden))
        self.audio_ground = ScaledCosineAttention()
        self.question_ground = ScaledCosineAttention()
        self.question_query = nn.Linear(hidden, hidden)
        self.ground_fc = nn.Sequential(nn.LayerNorm(3 * hidden), nn.Linear(3 * hidden, hidden))
        self.match = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, hidden // 4), nn.ReLU(), nn.Linear(hidden // 4, 2),
        )
        self.modality = nn.Parameter(torch.zeros(3, hidden))  # question, audio, visual
        nn.init.normal_(self.modality, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True, norm_first=True)
        self.reasoner = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.attend_audio = QuestionTemporalAttention(hidden, heads)
        self.attend_visual = QuestionTemporalAttention(hidden, heads)
        self.fusion = nn.Sequential(nn.LayerNorm(3 * hidden), nn.Linear(3 * hidden, hidden))
        self.fused_norm = nn.LayerNorm(hidden)
        self.question_norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, answers)
        self.readout = QuestionReadout(hidden, order=readout_order) if readout else None
        self.columns = ColumnTokens(hidden, heads) if columns else None
        self.patch_readout = PatchReadout(hidden) if patch_readout else None
        self.layout = (LayoutReadout(hidden, layout_classes, levels=sound_levels, sides=side_slots,
                                     refine=layout_refine) if layout_classes > 0 else None)

    def reads(self) -> dict[str, Any]:
        """The head reads the encoder's final tokens, whatever its options (which targets a refit's cache
        keeps beside them is keyed by ``head_refit.extra_targets``)."""
        return {"tokens": "final"}

    def segment_inputs(self, feats: dict[str, Any], encoder: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio vectors (B, T, H) and position-coded visual patch tokens (B, T, N, H)."""
        B, T = feats["batch"], feats["frames"]
        audio = self.audio_mlp(pooled_audio(feats, encoder))  # (B, T, H)
        tokens = self.visual_proj(_patch_tokens(feats["video"], encoder))  # (B*T, N, H)
        tokens = tokens + sincos_positions_2d(feats["grid_v"], tokens.shape[-1], tokens.device)
        return audio, tokens.reshape(B, T, *tokens.shape[1:])  # (B, T, N, H)

    def audio_grounded(self, audio: torch.Tensor, tokens: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
        """audio (B, T, H), tokens (B, T, N, H) -> the audio-attended visual vector (B, T, H); ``weights``
        (B, T, N): the grounding's weights when already computed."""
        weights = self.audio_ground(audio, tokens) if weights is None else weights  # (B, T, N)
        return (weights.unsqueeze(-1) * tokens).sum(dim=2)  # (B, T, H)

    def _match(self, audio: torch.Tensor, grounded: torch.Tensor) -> torch.Tensor:
        return self.match(torch.cat([audio, grounded], dim=-1).flatten(0, 1))  # (B*T, 2)

    @staticmethod
    def matching_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with class 1 for positive pairs and class 0 for negative pairs."""
        target = torch.cat([pos_logits.new_ones(len(pos_logits)), neg_logits.new_zeros(len(neg_logits))])
        return F.cross_entropy(torch.cat([pos_logits, neg_logits]).float(), target.long())

    def _check_question(self, question: torch.Tensor | None, batch: int) -> torch.Tensor:
        if question is None:
            raise ValueError("the AVQA head needs question=LongTensor (B, L) of token ids (0 = padding), "
                             "e.g. model(video, audio, question=question)")
        if question.ndim not in (2, 3) or question.shape[0] != batch or question.is_floating_point():
            raise ValueError(f"question must be an integer tensor (B={batch}, L) or (B={batch}, Q, L); "
                             f"got {question.dtype} {tuple(question.shape)}")
        if question.numel() and (question.min() < 0 or question.max() >= self.vocab_size):
            raise ValueError(f"question token ids must lie in [0, {self.vocab_size}) (head.avqa_vocab_size)")
        return question

    def forward(self, feats: dict[str, Any], encoder: nn.Module,
                question: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``question`` (B, L) -> ``logits`` (B, answers); (B, Q, L), Q questions per clip sharing the
        clip's features -> ``logits`` (B, Q, answers)."""
        question = self._check_question(question, feats["batch"])
        asked = question if question.ndim == 3 else question[:, None]  # (B, Q, L)
        B, Q = asked.shape[:2]
        q = self.question_encoder(asked.flatten(0, 1)).unflatten(0, (B, Q))  # (B, Q, H)
        audio, tokens = self.segment_inputs(feats, encoder)  # (B, T, H), (B, T, N, H)
        T = audio.shape[1]
        sound_at = self.audio_ground(audio, tokens)  # (B, T, N)
        by_audio = self.audio_grounded(audio, tokens, sound_at)  # (B, T, H)
        out = {"match_logits": self._match(audio, by_audio)}
        if B > 1:
            out["match_neg_logits"] = self._match(audio, self.audio_grounded(audio, tokens.roll(1, dims=0)))
        weights = self.question_ground(self.question_query(q)[:, :, None], tokens[:, None])  # (B, Q, T, N)
        by_question = torch.einsum("bqtn,btnh->bqth", weights, tokens)  # (B, Q, T, H)
        context = torch.cat([tokens.mean(dim=2), by_audio], dim=-1)[:, None].expand(-1, Q, -1, -1)  # (B, Q, T, 2H)
        visual = self.ground_fc(torch.cat([context, by_question], dim=-1))  # (B, Q, T, H)
        when = sincos_positions(T, q.shape[-1], q.device)  # (T, H)
        parts = [
            (q + self.modality[0])[:, :, None],
            (audio + when + self.modality[1])[:, None].expand(-1, Q, -1, -1),
            visual + when + self.modality[2],
        ]
        if self.columns is not None:
            parts.append(self.columns(tokens, sound_at, feats["grid_v"])[:, None].expand(-1, Q, -1, -1))
        seq = self.reasoner(torch.cat(parts, dim=2).flatten(0, 1))  # (B*Q, 1 + 2T [+ cols], H)
        q_flat = q.flatten(0, 1)  # (B*Q, H)
        a = self.attend_audio(q_flat, seq[:, 1:1 + T])  # (B*Q, H)
        v = self.attend_visual(q_flat, seq[:, 1 + T:1 + 2 * T])  # (B*Q, H)
        fused = self.fusion(torch.cat([a, v, seq[:, 0]], dim=-1))  # (B*Q, H)
        if self.readout is not None:
            fused = fused + self.readout(q, audio, visual)
        if self.columns is not None:
            fused = fused + self.columns.pooled(q_flat, seq[:, 1 + 2 * T:])
        if self.patch_readout is not None:
            fused = fused + self.patch_readout(q, tokens, feats["grid_v"])
        if self.layout is not None:
            placed, aux = self.layout(q, tokens, audio, feats["grid_v"])
            out.update(aux)  # layout_logits, sound_logits, side_weights: the auxiliary losses' inputs
            fused = fused + placed
        gated = self.fused_norm(fused) * self.question_norm(q_flat)  # (B*Q, H), both factors O(1)
        logits = self.classifier(torch.tanh(gated)).unflatten(0, (B, Q))  # (B, Q, answers)
        out["logits"] = logits if question.ndim == 3 else logits[:, 0]  # (B, Q, answers) or (B, answers)
        return out


def build_head(config: ModelConfig, encoder: nn.Module) -> TaskHead:
    """The head named by ``config.head.task`` (one of ``TASKS``)."""
    h = config.head
    if h.task == "ave":
        if h.ave_context and not h.ave_count:
            raise ConfigError("head.ave_context refines the counting head's heard and seen logits: set "
                              "head.ave_count=true too")
        if h.ave_count:
            return AVECountHead(encoder.embed_dim, h.hidden, h.num_classes, h.dropout, h.ave_audio, h.ave_context)
        return AVEHead(encoder.embed_dim, h.hidden, h.num_classes, h.dropout, h.ave_audio)
    if h.task == "avs":
        return AVSHead(encoder, h.avs_channels, h.avs_audio_dim, match=h.avs_match, mask_width=h.avs_mask_width,
                       detail=h.avs_detail)
    if h.task == "avqa":
        if h.hidden % 4:
            raise ConfigError(f"head.hidden must be divisible by the AVQA head's 4 attention heads; got {h.hidden}")
        if h.avqa_sound_levels and h.avqa_layout_classes <= 0:
            raise ConfigError("head.avqa_sound_levels hears each class of the layout map: set "
                              "head.avqa_layout_classes too")
        if h.avqa_layout_refine and h.avqa_layout_classes <= 0:
            raise ConfigError("head.avqa_layout_refine refines the layout map: set head.avqa_layout_classes too")
        if h.avqa_side_slots and not h.avqa_sound_levels:
            raise ConfigError("head.avqa_side_slots reads the heard loudness at each side: set "
                              "head.avqa_sound_levels (and head.avqa_layout_classes) too")
        return AVQAHead(encoder.embed_dim, h.hidden, h.avqa_answers, h.avqa_vocab_size, h.avqa_embed,
                        readout=h.avqa_readout, readout_order=h.avqa_readout_order, columns=h.avqa_columns,
                        patch_readout=h.avqa_patch_readout, layout_classes=h.avqa_layout_classes,
                        sound_levels=h.avqa_sound_levels, side_slots=h.avqa_side_slots,
                        layout_refine=h.avqa_layout_refine)
    raise ConfigError(f"unknown task {h.task!r}; expected one of {', '.join(TASKS)}")
