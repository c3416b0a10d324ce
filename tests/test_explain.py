"""Explanations: cross-attention maps (ViT and Swin) and captum attributions on toy backbones."""

import numpy as np
import pytest
import torch

from stgcma.explain import AGGREGATE, DIRECTIONS, STAGES, Target, attention_maps, attribute
from stgcma.model import STGCMAModel, create_model
from tests.conftest import random_inputs

TOYS = ["vit-test", "swin-test"]
SMALL = {"head.avs_channels": 16, "head.hidden": 32, "head.avqa_embed": 16}
WINDOW = 8  # occlusion/region side: the toy models' final token stride


def _trained_like(name: str, seed: int = 0, **overrides) -> STGCMAModel:
    """A toy model whose zero-initialised parts (adapter up-projections, gates) are moved off zero.

    With adapters at their initial state the cross-attention is nearly uniform and the streams do
    not exchange anything; random values stand in for training so that inputs and maps matter.
    """
    model = create_model(name, {**SMALL, **overrides})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.requires_grad:
                scale = 1.0 if p.ndim == 0 else 0.2 if "fc2" in pname else 0.5 if "fc1" in pname else 0.0
                p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


def _clip(model: STGCMAModel, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    video, audio = random_inputs(model.config, batch=1)
    return video.to(dtype), audio.to(dtype)


# ----------------------------------------------------------------------------------------------
# Attention maps
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOYS)
def test_capture_does_not_change_outputs_or_mode(name):
    model = _trained_like(name)
    video, audio = _clip(model)
    with torch.no_grad():
        expected = model(video, audio)["logits"][0].numpy()  # (T, C)
    model.train()
    maps = attention_maps(model, video[0], audio[0])
    assert model.training and not model.encoder.trunk.training  # mode restored
    np.testing.assert_array_equal(maps.outputs["logits"], expected)


@pytest.mark.parametrize("name, overrides", [
    ("vit-test", {"preprocess.target_frames": 44}),  # audio grid (5, 4): 4 fbank rows no patch sees
    ("swin-test", {}),
])
def test_map_shapes_sums_and_display_range(name, overrides):
    model = _trained_like(name, **overrides)
    video, audio = _clip(model)
    maps = attention_maps(model, video, audio)
    T, F, M, S = 4, audio.shape[-2], audio.shape[-1], 32
    blocks = list(range(len(model.encoder.blocks)))
    assert maps.blocks == blocks
    assert set(maps.maps) == {(b, s, d) for b in [*blocks, AGGREGATE] for s in STAGES for d in DIRECTIONS}
    vit = model.encoder.is_vit
    for (block, _, direction), m in maps.maps.items():
        if direction == "a<-v":
            grid = (4, 4) if vit else (8, 8) if block in (0, 1, AGGREGATE) else (4, 4)
            assert m.heatmap.shape == (T, S, S)
        else:
            grid = (5, 4) if vit else (8, 8) if block in (0, 1, AGGREGATE) else (4, 4)
            assert m.heatmap.shape == (T, F, M)
        assert m.probs.shape == (T, *grid)
        np.testing.assert_allclose(m.probs.sum(axis=(1, 2)), 1.0, atol=1e-5)  # before display scaling
        assert (m.probs >= 0).all() and m.heatmap.min() >= 0 and m.heatmap.max() <= 1
        assert np.allclose(m.heatmap.reshape(T, -1).max(1), 1.0)  # maps are not uniform here
        assert m.cls_mass.shape == (T,) and ((m.cls_mass > 0).all() if vit else (m.cls_mass == 0).all())
    if vit:
        assert (maps.select(0, "global", "v<-a").heatmap[:, 40:] == 0).all()  # the unseen fbank rows
    flat = maps.to_dict()
    assert flat["1/global/v<-a/probs"].shape == maps.select(1, "global", "v<-a").probs.shape
    assert flat["outputs/logits"].shape == (T, 29)
    with pytest.raises(KeyError, match="available blocks"):
        maps.select(7, "spatial", "a<-v")


def test_vit_maps_drop_cls_and_average_queries():
    """"a<-v" is over frame patches and "v<-a" over fbank patches, CLS key excluded per query row."""
    model = _trained_like("vit-test", **{"preprocess.target_frames": 48})  # audio grid (6, 4) != (4, 4)
    video, audio = _clip(model)
    with torch.no_grad(), model.capture_attention() as captured:
        model(video, audio)
    maps = attention_maps(model, video, audio)
    for (block, stage, direction), attn in captured.items():
        patches = attn[..., 1:] / attn[..., 1:].sum(-1, keepdim=True)  # (T, Nq, Nk-1)
        grid = (4, 4) if direction == "a<-v" else (6, 4)
        expected = patches.mean(1).reshape(4, *grid)
        np.testing.assert_allclose(maps.select(block, stage, direction).probs, expected.numpy(), atol=1e-6)
        np.testing.assert_allclose(maps.select(block, stage, direction).cls_mass, attn[..., 0].mean(1), atol=1e-6)


@pytest.mark.parametrize("block", [0, 1])  # block 1 attends in windows shifted by 2 tokens
def test_swin_windows_are_put_back_where_their_tokens_are(block):
    """Reference: scatter each window's query-mean to the token indices that ``group`` put in it."""
    model = _trained_like("swin-test")
    video, audio = _clip(model)
    with torch.no_grad(), model.capture_attention() as captured:
        model(video, audio)
    frozen = model.encoder.trunk.blocks[block]
    assert frozen.shift == (2 if block else 0)
    index = frozen.group(torch.arange(64.0).reshape(1, 64, 1), (8, 8))[..., 0].long()  # (nW, 16) token ids
    windows = index.shape[0]
    maps = attention_maps(model, video, audio)
    for direction in DIRECTIONS:
        rows = captured[(block, "spatial", direction)].mean(1).reshape(4, windows, 16)  # (T, nW, 16)
        expected = torch.zeros(4, 64, dtype=torch.float64)
        expected.scatter_add_(1, index.reshape(1, -1).expand(4, -1), rows.reshape(4, -1).double() / windows)
        got = maps.select(block, "spatial", direction).probs.reshape(4, 64)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def test_aggregate_is_gate_weighted_mean_of_blocks():
    model = _trained_like("vit-test")
    with torch.no_grad():
        model.encoder.blocks[0].cross.gate_a.fill_(0.3)
        model.encoder.blocks[1].cross.gate_a.fill_(-0.1)
    video, audio = _clip(model)
    maps = attention_maps(model, video, audio)
    p0, p1 = (maps.select(b, "spatial", "a<-v").probs for b in (0, 1))
    aggregate = maps.select(AGGREGATE, "spatial", "a<-v")
    np.testing.assert_allclose(aggregate.probs, (0.3 * p0 + 0.1 * p1) / 0.4, atol=1e-6)
    assert aggregate.weight == pytest.approx(0.4)
    uniform = attention_maps(model, video, audio, weighting="uniform").select(AGGREGATE, "spatial", "a<-v")
    np.testing.assert_allclose(uniform.probs, (p0 + p1) / 2, atol=1e-6)
    fresh = create_model("vit-test")  # all gates closed: blocks count equally
    maps = attention_maps(fresh, video, audio)
    p0, p1 = (maps.select(b, "global", "v<-a").probs for b in (0, 1))
    np.testing.assert_allclose(maps.select(AGGREGATE, "global", "v<-a").probs, (p0 + p1) / 2, atol=1e-6)


def test_attention_refuses_batches_and_models_without_cross_attention():
    model = create_model("vit-test")
    video, audio = random_inputs(model.config, batch=2)
    with pytest.raises(ValueError, match="per clip"):
        attention_maps(model, video, audio)
    with pytest.raises(ValueError, match="no bottleneck cross-attention"):
        attention_maps(create_model("vit-test", {"adapter.method": "lavish"}), video[:1], audio[:1])


# ----------------------------------------------------------------------------------------------
# Attributions
# ----------------------------------------------------------------------------------------------


def _assert_complete(attr, rtol: float = 1e-2, atol: float = 1e-3) -> float:
    """IG completeness: sum of both inputs' attributions == f(x) - f(baseline); returns |delta|."""
    gap = attr.output - attr.baseline_output
    assert abs(gap) > 10 * atol, "the target barely depends on the inputs: the check would be vacuous"
    total = attr.video_raw.astype(np.float64).sum() + attr.audio_raw.astype(np.float64).sum()
    assert abs(total - gap) < rtol * abs(gap) + atol, (total, gap)
    assert abs(attr.delta) < rtol * abs(gap) + atol
    return abs(attr.delta)


@pytest.mark.parametrize("name", TOYS)
def test_ig_completeness_ave(name):
    model = _trained_like(name).double()
    video, audio = _clip(model, torch.float64)
    attr = attribute(model, video, audio, Target.ave(segment=2, event_class=5), n_steps=32)
    with torch.no_grad():
        logits = model(video, audio)["logits"]
        assert attr.output == pytest.approx(float(logits[0, 2, 5]))
        assert attr.baseline_output == pytest.approx(float(model(video * 0, audio * 0)["logits"][0, 2, 5]))
    _assert_complete(attr)
    assert attr.video.shape == (4, 32, 32) and attr.audio.shape == (4, 32, 32)
    assert attr.video_raw.shape == (4, 3, 32, 32) and attr.audio_raw.shape == (4, 1, 32, 32)
    np.testing.assert_allclose(attr.video, np.abs(attr.video_raw).sum(1), rtol=1e-6)
    assert 0 < attr.audio_share < 1 and attr.audio_share + attr.visual_share == pytest.approx(1.0)
    share = attr.audio.sum() / (attr.audio.sum() + attr.video.sum())
    assert attr.audio_share == pytest.approx(share, rel=1e-5)
    assert attr.audio_share_per_segment.shape == (4,)


def test_ig_completeness_avs():
    model = _trained_like("vit-test", **{"head.task": "avs", "preprocess.num_segments": 2})
    video, audio = _clip(model)  # float32: the decoder's ReLU kinks, not rounding, bound the delta
    attr = attribute(model, video, audio, Target.avs(frame=1), n_steps=32, internal_batch_size=32)
    with torch.no_grad():
        mask_logits = model(video, audio)["logits"][0, 1, 0]  # (S, S)
    assert "predicted-positive" in attr.description
    assert attr.output == pytest.approx(float(mask_logits[mask_logits > 0].sum()), rel=1e-5)
    _assert_complete(attr)
    mean = attribute(model, video, audio, Target.avs(frame=1, reduction="mean"), n_steps=2, internal_batch_size=2)
    assert mean.output == pytest.approx(float(mask_logits.mean()), rel=1e-5)


def test_ig_completeness_avqa():
    model = _trained_like("vit-test", **{"head.task": "avqa"}).double()
    with torch.no_grad():
        model.head.classifier.weight.mul_(100)  # a fresh head's answer logits hardly move with the inputs
    video, audio = _clip(model, torch.float64)
    question = torch.randint(1, 100, (6,))  # one clip's question, (L,)
    with torch.no_grad():
        logits = model(video, audio, question=question[None])["logits"][0]  # (A,)
        answer = int((logits - model(video * 0, audio * 0, question=question[None])["logits"][0]).abs().argmax())
    attr = attribute(model, video, audio, Target.avqa(answer=answer), n_steps=32, question=question)
    assert attr.output == pytest.approx(float(logits[answer]))
    _assert_complete(attr)
    occlusion = attribute(model, video, audio, Target.avqa(answer=answer), method="occlusion", question=question)
    assert occlusion.video.shape == (4, 32, 32) and occlusion.output == pytest.approx(attr.output)


def _occlusion_change(model, video, audio, modality: str, region: tuple[int, int, int]) -> float:
    """|f(x) - f(x with one WINDOW x WINDOW region of one segment set to the baseline)| for AVE (2, 5)."""
    t, i, j = region
    video2, audio2 = video.clone(), audio.clone()
    (video2 if modality == "video" else audio2)[0, t, :, i:i + WINDOW, j:j + WINDOW] = 0
    with torch.no_grad():
        return float((model(video, audio)["logits"][0, 2, 5] - model(video2, audio2)["logits"][0, 2, 5]).abs())


def test_occluding_top_ig_region_changes_output_more_than_random_regions():
    """The region with the largest net IG attribution matters more than random regions of its size.

    Regions: WINDOW x WINDOW squares of one segment (all channels), on the token grid. A region's
    score is |sum of its signed attributions| (IG's first-order estimate of what removing it does);
    the test asks for at least twice the mean change of 8 random other regions, per modality.
    """
    model = _trained_like("vit-test").double()
    video, audio = _clip(model, torch.float64)
    attr = attribute(model, video, audio, Target.ave(segment=2, event_class=5), n_steps=32)
    rng = np.random.default_rng(0)
    regions = [(t, i, j) for t in range(4) for i in range(0, 32, WINDOW) for j in range(0, 32, WINDOW)]
    for modality, raw in (("video", attr.video_raw.sum(1)), ("audio", attr.audio_raw[:, 0])):  # (T, H, W)
        scores = [abs(raw[t, i:i + WINDOW, j:j + WINDOW].sum()) for t, i, j in regions]
        top = regions[int(np.argmax(scores))]
        others = [regions[k] for k in rng.choice(len(regions), 9, replace=False) if regions[k] != top][:8]
        random_change = np.mean([_occlusion_change(model, video, audio, modality, r) for r in others])
        assert _occlusion_change(model, video, audio, modality, top) > 2 * random_change, modality


def test_occlusion_window_attribution_is_the_output_change():
    model = _trained_like("vit-test").double()
    video, audio = _clip(model, torch.float64)
    attr = attribute(model, video, audio, Target.ave(segment=2, event_class=5), method="occlusion")
    assert attr.delta is None and attr.baseline_output is None
    assert attr.video_raw.shape == (4, 3, 32, 32) and attr.audio_raw.shape == (4, 1, 32, 32)
    for modality, raw, region in (("video", attr.video_raw, (1, 8, 16)), ("audio", attr.audio_raw, (2, 24, 0))):
        t, i, j = region
        window = raw[t, :, i:i + WINDOW, j:j + WINDOW]
        assert np.allclose(window, window.flat[0])  # one value per non-overlapping window
        assert abs(window.flat[0]) == pytest.approx(_occlusion_change(model, video, audio, modality, region), abs=1e-6)
    assert 0 < attr.audio_share < 1


def test_targets_are_checked():
    model = create_model("vit-test")
    video, audio = _clip(model)
    with pytest.raises(ValueError, match="model's head is 'ave'"):
        attribute(model, video, audio, Target.avqa(answer=0))
    with pytest.raises(ValueError, match="segment must lie in"):
        attribute(model, video, audio, Target.ave(segment=4, event_class=0))
    with pytest.raises(ValueError, match="index must lie in"):
        attribute(model, video, audio, Target.ave(segment=0, event_class=29))
    with pytest.raises(ValueError, match="method must be"):
        attribute(model, video, audio, Target.ave(0, 0), method="lime")
    with pytest.raises(ValueError, match="reduction"):
        Target.avs(frame=0, reduction="max")
