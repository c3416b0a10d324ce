"""Task heads (AVS decoder, AVQA head, build_head) on toy ViT and Swin backbones."""

import pytest
import torch
import torch.nn.functional as F

from stgcma.adapters import AdapterModule
from stgcma.config import ConfigError, load_preset
from stgcma.heads import (
    TPAVI,
    AVQAHead,
    AVSHead,
    LayoutReadout,
    TaskHead,
    build_head,
    decode_ave,
    layout_targets,
    sincos_positions,
)
from stgcma.model import STGCMAModel, create_model
from stgcma.train.tasks import layout_loss, side_loss, sound_loss
from tests.conftest import random_inputs

TOYS = ["vit-test", "swin-test"]
SMALL = {"head.avs_channels": 16, "head.hidden": 32, "head.avqa_embed": 16}


def _model(name: str, task: str, **overrides) -> STGCMAModel:
    return create_model(name, {"head.task": task, **SMALL, **overrides})


def _question(batch: int = 2, length: int = 6, vocab: int = 100) -> torch.Tensor:
    return torch.randint(1, vocab, (batch, length))


def _assert_gradients_reach_adapters_and_head(model: STGCMAModel) -> None:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing[:5]}"
    adapters = [m for m in model.encoder.modules() if isinstance(m, AdapterModule)]
    assert any(p.grad.abs().sum() > 0 for m in adapters for p in m.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.blocks[0].parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize("name", TOYS)
def test_avs_mask_logits_and_gradients(name):
    model = _model(name, "avs").train()
    assert isinstance(model.head, AVSHead) and isinstance(model.head, TaskHead)
    video, audio = random_inputs(model.config)
    logits = model(video, audio)["logits"]
    assert logits.shape == (2, 4, 1, 32, 32)
    assert torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, torch.rand_like(logits).round()).backward()
    _assert_gradients_reach_adapters_and_head(model)


@pytest.mark.parametrize("name, taps, sizes", [
    ("vit-test", [0, 1], [16, 8, 4, 2]),  # 4x4 patch grid (stride 8) -> strides 2, 4, 8, 16
    ("swin-test", [1, 3], [8, 4]),  # the two stage outputs, strides 4 and 8
])
def test_avs_pyramid_scales(name, taps, sizes):
    model = _model(name, "avs").eval()
    assert model.head.taps == taps
    seen = []
    hooks = [lvl.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1])) for lvl in model.head.levels]
    with torch.no_grad():
        model(*random_inputs(model.config, batch=1))
    for h in hooks:
        h.remove()
    assert seen == sizes


def test_avs_head_needs_its_taps():
    model = _model("vit-test", "avs")
    feats = model.encoder(*random_inputs(model.config, batch=1))  # default taps: stage ends only
    with pytest.raises(ValueError, match="forward_features"):
        model.forward_head(feats)


@pytest.mark.parametrize("h", [16, 8])
def test_mask_output_equals_avsbench_order_and_its_width_is_a_key(h):
    """Skipping the resample when the map is already at half size changes nothing; width sets conv1/conv2."""
    from stgcma.heads import MaskOutput

    torch.manual_seed(0)
    out = MaskOutput(16).eval()
    x = torch.randn(3, 16, h, h)
    with torch.no_grad():
        mid = F.interpolate(out.conv1(x), size=(16, 16), mode="bilinear", align_corners=False)
        expected = F.interpolate(out.conv3(F.relu(out.conv2(mid))), size=(32, 32), mode="bilinear",
                                 align_corners=False)
        assert torch.equal(out(x, 32), expected)
    narrow = _model("vit-test", "avs", **{"head.avs_mask_width": 8})
    assert narrow.head.output.conv1.out_channels == 8 == narrow.head.output.conv2.in_channels
    assert _model("vit-test", "avs").head.output.conv1.out_channels == 128  # AVSBench's, the default
    assert narrow(*random_inputs(narrow.config))["logits"].shape == (2, 4, 1, 32, 32)


def test_tpavi_equals_avsbench_non_local_block():
    torch.manual_seed(1)
    B, T, C, H, W = 2, 3, 8, 4, 5
    tpavi = TPAVI(C, audio_dim=6).eval()
    torch.nn.init.normal_(tpavi.bn.weight)
    x, audio = torch.randn(B * T, C, H, W), torch.randn(B, T, 6)
    # AVSBench: audio broadcast over space, full (THW x THW) dot-product affinity divided by THW.
    x5 = x.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    a5 = tpavi.align(audio).permute(0, 2, 1)[..., None, None].expand(-1, -1, -1, H, W)  # (B, C, T, H, W)
    theta = torch.einsum("oc,bcthw->bthwo", tpavi.theta.weight[:, :, 0, 0], x5) + tpavi.theta.bias
    g = torch.einsum("oc,bcthw->bthwo", tpavi.g.weight[:, :, 0, 0], x5) + tpavi.g.bias
    phi = torch.einsum("oc,bcthw->bthwo", tpavi.phi.weight, a5) + tpavi.phi.bias
    theta, g, phi = (t.reshape(B, T * H * W, -1) for t in (theta, g, phi))
    y = (theta @ phi.transpose(1, 2) / (T * H * W)) @ g  # (B, THW, c)
    y = y.reshape(B * T, H, W, -1).permute(0, 3, 1, 2)  # (B*T, c, H, W)
    expected = tpavi.norm(x + tpavi.bn(tpavi.out(y)))
    torch.testing.assert_close(tpavi(x, audio), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TOYS)
def test_avqa_outputs_and_matching_loss(name):
    model = _model(name, "avqa").train()
    assert isinstance(model.head, AVQAHead)
    video, audio = random_inputs(model.config)
    question = _question()
    feats = model.forward_features(video, audio)
    out = model.forward_head(feats, question=question)
    assert out["logits"].shape == (2, 42) and out["match_logits"].shape == (2 * 4, 2)
    assert torch.isfinite(out["logits"]).all()
    neg = out["match_neg_logits"]
    assert neg.shape == (2 * 4, 2) and not torch.allclose(neg, out["match_logits"])
    answer = torch.tensor([3, 7])
    loss = F.cross_entropy(out["logits"], answer) + 0.5 * AVQAHead.matching_loss(out["match_logits"], neg)
    loss.backward()
    _assert_gradients_reach_adapters_and_head(model)


def test_avqa_negatives_pair_each_audio_with_another_clips_frames():
    model = _model("vit-test", "avqa").eval()
    video, audio = random_inputs(model.config, batch=3)
    question = _question(batch=3)
    out = model(video, audio, question=question)
    head, feats = model.head, model.forward_features(video, audio)
    a, tokens = head.segment_inputs(feats, model.encoder)
    expected = head._match(a, head.audio_grounded(a, tokens[[2, 0, 1]]))
    torch.testing.assert_close(out["match_neg_logits"], expected)
    single = model(video[:1], audio[:1], question=question[:1])
    assert "match_neg_logits" not in single  # one clip has no other clip to pair with


def test_avqa_grounding_scale_concentrates_the_softmax():
    from stgcma.heads import ScaledCosineAttention

    attend = ScaledCosineAttention(init=10.0)
    keys = torch.randn(1, 49, 32)
    query = keys[:, 7] + 0.1 * torch.randn(1, 32)  # one matching patch among 49
    weights = attend(query, keys)
    assert weights.sum().item() == pytest.approx(1.0) and weights[0].argmax() == 7
    assert weights[0, 7] > 0.5
    with torch.no_grad():
        attend.log_scale.zero_()  # scale 1: a softmax over raw cosines, as before the scale existed
    assert attend(query, keys)[0, 7] < 0.1  # nearly uniform (1/49 = 0.02 each)


@pytest.mark.parametrize("name", TOYS)
def test_avqa_padding_does_not_change_the_answer(name):
    model = _model(name, "avqa").eval()
    video, audio = random_inputs(model.config)
    question = torch.tensor([[5, 9, 2, 0, 0, 0], [7, 0, 3, 8, 4, 1]])  # an interior 0 is kept as a token
    padded = F.pad(question, (0, 8))  # 14 tokens, the extra ones padding
    with torch.no_grad():
        feats = model.forward_features(video, audio)
        out = model.forward_head(feats, question=question)
        out_padded = model.forward_head(feats, question=padded)
        alone = model.forward_head(feats, question=question[:, :3])["logits"][0]
    torch.testing.assert_close(out["logits"], out_padded["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["logits"][0], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["match_logits"], out_padded["match_logits"])  # matching ignores the question


@pytest.mark.parametrize("name", TOYS)
def test_avqa_several_questions_per_clip_equal_one_at_a_time(name):
    model = _model(name, "avqa").eval()
    video, audio = random_inputs(model.config)
    questions = torch.stack([_question(), _question().flip(0), _question().roll(1, dims=1)], dim=1)  # (B=2, Q=3, L)
    with torch.no_grad():
        feats = model.forward_features(video, audio)
        out = model.forward_head(feats, question=questions)
        single = [model.forward_head(feats, question=questions[:, k])["logits"] for k in range(3)]
    assert out["logits"].shape == (2, 3, 42)
    torch.testing.assert_close(out["logits"], torch.stack(single, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["match_logits"], model.forward_head(feats, question=questions[:, 0])["match_logits"])


def test_avqa_question_is_required_and_checked():
    model = _model("vit-test", "avqa")
    video, audio = random_inputs(model.config)
    with pytest.raises(ValueError, match="needs question="):
        model(video, audio)
    with pytest.raises(ValueError, match="integer tensor"):
        model(video, audio, question=torch.rand(2, 6))
    with pytest.raises(ValueError, match="avqa_vocab_size"):
        model(video, audio, question=torch.full((2, 6), 100))
    with pytest.raises(ValueError, match=r"\(B=2, Q, L\)"):
        model(video, audio, question=torch.ones(2, 3, 4, 5, dtype=torch.long))


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("frames", [5, 10])
def test_heads_for_5_and_10_segments(name, frames):
    video = audio = None
    for task in ["avs", "avqa"]:
        model = _model(name, task, **{"preprocess.num_segments": frames}).eval()
        if video is None:
            video, audio = random_inputs(model.config, batch=1)
        kwargs = {"question": _question(batch=1)} if task == "avqa" else {}
        with torch.no_grad():
            out = model(video, audio, **kwargs)
        if task == "avs":
            assert out["logits"].shape == (1, frames, 1, 32, 32)
        else:
            assert out["logits"].shape == (1, 42) and out["match_logits"].shape == (frames, 2)


def test_unknown_task_is_a_config_error():
    config = load_preset("vit-test")
    model = create_model(config)
    config.head.task = "segmentation"
    with pytest.raises(ConfigError, match="unknown task 'segmentation'.*ave, avs, avqa"):
        build_head(config, model.encoder)
    with pytest.raises(ConfigError, match="head.task"):
        create_model("vit-test", {"head.task": "segmentation"})
    with pytest.raises(ConfigError, match="divisible"):
        create_model("vit-test", {"head.task": "avqa", "head.hidden": 30})


@pytest.mark.parametrize("name", TOYS)
def test_ave_head_reads_the_audio_tokens_when_asked(name):
    """``head.ave_audio=tokens``: the audio patch tokens reach the logits, not only the audio CLS."""
    for audio in ("cls", "tokens"):
        model = _model(name, "ave", **{"head.ave_audio": audio}).eval()
        dim = model.encoder.embed_dim
        assert model.head.fc1.in_features == (3 if audio == "tokens" else 2) * dim
        video, audio_in = random_inputs(model.config, batch=2)
        feats = model.forward_features(video, audio_in)
        logits = model.head(feats, model.encoder)["logits"]
        assert logits.shape == (2, model.config.num_frames, model.config.head.num_classes)
        if not model.encoder.is_vit:
            continue  # Swin has no CLS token: both read pooled tokens
        changed = dict(feats, audio=feats["audio"].clone())
        changed["audio"][:, 1:] += torch.randn_like(changed["audio"][:, 1:])  # patch tokens only, CLS kept
        moved = not torch.allclose(model.head(changed, model.encoder)["logits"], logits)
        assert moved == (audio == "tokens")


def test_ave_decode_segment_is_the_argmax_and_clip_keeps_one_event_class():
    """``clip``: one event class per clip (largest summed probability), event vs background per segment."""
    torch.manual_seed(0)
    logits = torch.randn(4, 10, 6) * 3  # (B, T, C), background = 5
    assert torch.equal(decode_ave(logits, "segment"), logits.argmax(-1))
    labels = decode_ave(logits, "clip")
    probs = logits.softmax(-1)
    for b in range(4):
        event = int(probs[b, :, :5].sum(0).argmax())
        expected = torch.where(probs[b, :, event] > probs[b, :, 5], event, 5)
        assert torch.equal(labels[b], expected)
    # a second that argmax calls class 1 inside a clip of class 0 becomes class 0, and a
    # second whose class 0 is less probable than background stays background
    p = torch.full((1, 4, 3), 0.05)
    p[0, :, 0] = torch.tensor([0.8, 0.7, 0.35, 0.1])
    p[0, 2, 1], p[0, 3, 2] = 0.6, 0.85
    p[0, :, 2] = 1 - p[0, :, :2].sum(-1)
    clip = decode_ave(p.log(), "clip")
    assert p.log().argmax(-1).tolist() == [[0, 0, 1, 2]] and clip.tolist() == [[0, 0, 0, 2]]
    with pytest.raises(ValueError, match="segment' or 'clip"):
        decode_ave(logits, "majority")
    with pytest.raises(ConfigError, match="ave_decode"):
        _model("vit-test", "ave", **{"head.ave_decode": "majority"})


@pytest.mark.parametrize("name", TOYS)
def test_ave_count_head_gives_probabilities_and_gradients(name):
    """``head.ave_count``: the logits are log-probabilities (classes + background) and every part trains."""
    model = _model(name, "ave", **{"head.ave_count": True, "head.ave_audio": "tokens"}).train()
    assert type(model.head).__name__ == "AVECountHead"
    logits = model(*random_inputs(model.config))["logits"]
    assert logits.shape == (2, model.config.num_frames, model.config.head.num_classes)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(logits.shape[:-1]))
    torch.testing.assert_close(logits.softmax(-1), logits.exp())
    labels = torch.full(logits.shape[:-1], model.config.head.num_classes - 1)
    labels[:, 1:3] = 2
    F.cross_entropy(logits.flatten(0, 1), labels.flatten()).backward()
    _assert_gradients_reach_adapters_and_head(model)


def test_ave_count_head_names_the_class_heard_and_seen_longest():
    """Class 0 is heard and seen for 3 seconds, class 1 for 5 (and heard alone for 2 more): the clip is
    class 1, labelled in its 5 seconds only; a per-second readout of class 0's seconds would say 0."""
    from stgcma.heads import AVECountHead

    class Fixed(torch.nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits

    T = 10
    head = AVECountHead(dim=8, hidden=4, num_classes=5, dropout=0.0).eval()
    heard, seen = torch.full((1, T, 4), -9.0), torch.full((1, T, 4), -9.0)  # logits of 4 event classes
    heard[0, :3, 0] = seen[0, :3, 0] = 9.0  # class 0: seconds 0-2
    heard[0, 3:8, 1] = seen[0, 3:8, 1] = 9.0  # class 1: seconds 3-7
    heard[0, 8:, 1] = 9.0  # class 1 heard but not seen: seconds 8-9
    head.hear, head.see = Fixed(heard), Fixed(seen)
    head.log_tau.data.fill_(torch.tensor(50.0).log())
    feats = {"video": torch.zeros(T, 5, 8), "audio": torch.zeros(T, 5, 8), "batch": 1, "frames": T}
    encoder = type("Encoder", (), {"is_vit": True, "pooled": lambda self, f: (torch.zeros(1, T, 8),) * 2})()
    logits = head(feats, encoder)["logits"]
    assert decode_ave(logits, "clip").tolist() == [[4, 4, 4, 1, 1, 1, 1, 1, 4, 4]]
    assert decode_ave(logits, "segment").tolist() == [[4, 4, 4, 1, 1, 1, 1, 1, 4, 4]]


@pytest.mark.parametrize("name", TOYS)
def test_avs_match_map_starts_neutral_and_lets_the_audio_move_the_masks(name):
    """``head.avs_match``: zero-initialised (same logits as without it), then audio-dependent."""
    torch.manual_seed(0)
    plain = _model(name, "avs").eval()
    torch.manual_seed(0)
    matched = _model(name, "avs", **{"head.avs_match": True}).eval()
    assert matched.parameter_counts()["trainable"] > plain.parameter_counts()["trainable"]
    matched.load_state_dict(plain.state_dict(), strict=False)
    video, audio = random_inputs(plain.config, batch=2)
    feats = plain.forward_features(video, audio)
    before = plain.head(feats, plain.encoder)["logits"]
    torch.testing.assert_close(matched.head(feats, matched.encoder)["logits"], before)
    with torch.no_grad():
        matched.head.match.audio.weight.normal_()
    logits = matched.head(feats, matched.encoder)["logits"]
    other = dict(feats, audio=feats["audio"].flip(0))  # the other clip's audio
    assert not torch.allclose(matched.head(other, matched.encoder)["logits"], logits)
    logits.sum().backward()
    assert matched.head.match.visual[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TOYS)
def test_avs_detail_branch_starts_neutral_and_reads_the_frames_at_full_resolution(name):
    """``head.avs_detail``: zero-initialised (same logits as without it); once trained, the logits of a
    pixel follow the frame's pixels near it, which the patch tokens cannot resolve."""
    torch.manual_seed(0)
    plain = _model(name, "avs").eval()
    torch.manual_seed(0)
    detailed = _model(name, "avs", **{"head.avs_detail": True}).eval()
    detailed.load_state_dict(plain.state_dict(), strict=False)
    video, audio = random_inputs(plain.config, batch=2)
    feats = plain.forward_features(video, audio)
    assert feats["frames_in"].shape == (video.shape[0] * video.shape[1], *video.shape[2:])
    before = plain.head(feats, plain.encoder)["logits"]
    torch.testing.assert_close(detailed.head(feats, detailed.encoder)["logits"], before)
    with torch.no_grad():
        detailed.head.detail.out.weight.normal_()
    logits = detailed.head(feats, detailed.encoder)["logits"]
    frames = feats["frames_in"].clone()
    frames[:, :, 0, 0] += 5.0  # one pixel of every frame; the tokens stay as they were
    moved = detailed.head(dict(feats, frames_in=frames), detailed.encoder)["logits"]
    changed = (moved - logits).abs()[:, :, 0] > 1e-6  # (B, T, S, S)
    assert changed[..., 0, 0].all() and not changed[..., -1, -1].any()
    logits.sum().backward()
    assert detailed.head.detail.stem_full[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="input frames"):
        detailed.head({k: v for k, v in feats.items() if k != "frames_in"}, detailed.encoder)


@pytest.mark.parametrize("name", TOYS)
def test_avqa_column_tokens_carry_the_layout_and_train(name):
    """``head.avqa_columns``: gradients reach adapters, head and the column tokens; a column's token
    keeps its column's code and carries what stands in it (mirroring the grid mirrors the contents);
    the zero-initialised output adds nothing to the fused vector of a head that has just gained them."""
    model = _model(name, "avqa", **{"head.avqa_columns": True}).train()
    video, audio = random_inputs(model.config)
    question = _question()
    feats = model.forward_features(video, audio)
    out = model.forward_head(feats, question=question)
    match = AVQAHead.matching_loss(out["match_logits"], out["match_neg_logits"])
    (out["logits"].logsumexp(-1).sum() + match).backward()
    _assert_gradients_reach_adapters_and_head(model)
    assert model.head.columns.proj[1].weight.grad.abs().sum() > 0

    head = model.head.eval()
    with torch.no_grad():
        tokens = torch.randn(2, 4, 6, 32)  # (B, T, rows*cols, H) for a 2 x 3 grid
        weights = torch.rand(2, 4, 6).softmax(-1)
        cols = head.columns(tokens, weights, (2, 3))
        mirrored = head.columns(tokens.reshape(2, 4, 2, 3, 32).flip(3).reshape(2, 4, 6, 32),
                                weights.reshape(2, 4, 2, 3).flip(3).reshape(2, 4, 6), (2, 3))
        assert cols.shape == (2, 3, 32)
        where = sincos_positions(3, 32)  # each token also says which column it is
        torch.testing.assert_close(mirrored - where, (cols - where).flip(1))  # and its content follows the column's
        assert not torch.allclose(mirrored, cols.flip(1))
        fresh = type(head.columns)(32)
        assert fresh.pooled(torch.randn(2, 32), cols).abs().max() == 0


@pytest.mark.parametrize("name", TOYS)
def test_avqa_patch_readout_reads_single_patches_and_trains(name):
    """``head.avqa_patch_readout``: gradients reach adapters, head and the read-out; the read-out takes
    the question's product with every patch before pooling, so one patch of one segment moves it; the
    segment order and the row do not, the column does; a fresh read-out adds nothing to the fused vector."""
    model = _model(name, "avqa", **{"head.avqa_patch_readout": True}).train()
    video, audio = random_inputs(model.config)
    out = model.forward_head(model.forward_features(video, audio), question=_question())
    match = AVQAHead.matching_loss(out["match_logits"], out["match_neg_logits"])
    (out["logits"].logsumexp(-1).sum() + match).backward()
    _assert_gradients_reach_adapters_and_head(model)
    assert model.head.patch_readout.out.weight.grad.abs().sum() > 0

    readout = model.head.patch_readout.eval()
    with torch.no_grad():
        readout.out.weight.normal_()  # as if trained: a fresh read-out's output is zero
        q, tokens = torch.randn(2, 3, 32), torch.randn(2, 4, 6, 32)  # (B, Q, H), (B, T, N, H)
        before = readout(q, tokens, (2, 3))
        assert before.shape == (6, 32)
        spiked = tokens.clone()
        spiked[0, 2, 5] += 10.0 * readout.token.weight[0]  # one patch of one segment of the first clip
        after = readout(q, spiked, (2, 3))
        assert not torch.allclose(after[:3], before[:3]) and torch.equal(after[3:], before[3:])
        later = spiked[:, torch.randperm(4)]  # the same frames in another order
        torch.testing.assert_close(readout(q, later, (2, 3)), after)
        below = spiked.reshape(2, 4, 2, 3, 32).flip(2).reshape(2, 4, 6, 32)  # each patch moved to the other row
        torch.testing.assert_close(readout(q, below, (2, 3)), after)
        aside = spiked.reshape(2, 4, 2, 3, 32).flip(3).reshape(2, 4, 6, 32)  # each patch moved to the mirrored column
        assert not torch.allclose(readout(q, aside, (2, 3))[:3], after[:3])
        assert type(readout)(32)(q, tokens, (2, 3)).abs().max() == 0


def test_avqa_layout_map_hears_how_loud_each_class_sounds():
    """``head.avqa_sound_levels``: per segment and class, silence or one of L loudness levels, trained by
    ``sound_loss`` through the head's audio vectors; each class's duration and loudness follow the heard
    levels; the new paths start at zero, so a refitted head keeps its answers until they learn."""
    with pytest.raises(ConfigError, match="avqa_layout_classes"):
        _model("vit-test", "avqa", **{"head.avqa_sound_levels": 3})
    model = _model("vit-test", "avqa", **{"head.avqa_layout_classes": 5, "head.avqa_sound_levels": 3}).train()
    video, audio = random_inputs(model.config)
    out = model(video, audio, question=_question())
    T = model.config.preprocess.num_segments
    assert out["sound_logits"].shape == (2, T, 5, 4)
    level = torch.randint(0, 4, (2, T, 5), dtype=torch.uint8)
    sound_loss(out["sound_logits"], level).backward()
    assert model.head.layout.hear.weight.grad.abs().sum() > 0
    assert model.head.audio_mlp[1].weight.grad.abs().sum() > 0  # the audio vectors learn to carry loudness
    with pytest.raises(ValueError, match="avqa_sound_levels"):
        sound_loss(out["sound_logits"], level + 4)

    plain, hearing = LayoutReadout(32, 5).eval(), LayoutReadout(32, 5, levels=3).eval()
    with torch.no_grad():
        plain.out.weight.normal_()  # as if trained
        missing, _ = hearing.load_state_dict(plain.state_dict(), strict=False)
        assert all(k.startswith(("hear.", "sound_query.", "per_class_sound.")) for k in missing)
        q, tokens, audio = torch.randn(2, 3, 32), torch.randn(2, 4, 6, 32), torch.randn(2, 4, 32)
        torch.testing.assert_close(hearing(q, tokens, audio, (2, 3))[0], plain(q, tokens, audio, (2, 3))[0])
        hearing.hear.weight.zero_()
        bias = torch.full((5, 4), -20.0)
        bias[:, 0] = 20.0  # silent...
        bias[1] = torch.tensor([-20.0, -20.0, -20.0, 20.0])  # ...but class 1 at the loudest level
        bias[2] = torch.tensor([-20.0, 20.0, -20.0, -20.0])  # and class 2 at the quietest
        hearing.hear.bias.copy_(bias.flatten())
        _, heard = hearing.heard_sound(audio)  # (B, K, [duration, loudness])
        torch.testing.assert_close(heard[0, :, 0], torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
        torch.testing.assert_close(heard[0, 1:3, 1], torch.tensor([1.0, 1 / 3]), atol=1e-4, rtol=0)
        hearing.per_class_sound[-1].weight.normal_()  # as if trained: the heard levels now reach the answer
        assert not torch.allclose(hearing(q, tokens, audio, (2, 3))[0], plain(q, tokens, audio, (2, 3))[0])


def test_side_slots_read_the_layout_map_as_ranks_among_the_objects():
    """``head.avqa_side_slots``: a side is a rank among the objects (one object: middle; two: left and
    right; three: left, middle, right), each side carrying its object's loudness and duration; the path
    starts at zero and needs the heard loudness."""
    with pytest.raises(ConfigError, match="avqa_sound_levels"):
        _model("vit-test", "avqa", **{"head.avqa_layout_classes": 5, "head.avqa_side_slots": True})
    layout = LayoutReadout(32, 5, levels=3, sides=True).eval()
    sound = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8], [0.9, 1.0]])[None]  # (1, K, 2)

    def read(places: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.zeros(1, 5, 8)  # (B, K, places)
        for k, place in places.items():
            m[0, k, place] = 1.0
        with torch.no_grad():
            return layout.side_slots(m, sound)  # (1, 3 sides, [occupancy, duration, loudness]), (1, 3 sides, K)

    (one, _), (two, held), (three, _) = read({2: 4}), read({3: 6, 1: 1}), read({4: 0, 0: 3, 2: 7})
    one, two, three = one[0], two[0], three[0]  # held: class 1 left, class 3 right, the middle empty
    torch.testing.assert_close(held[0, [0, 2]].argmax(-1), torch.tensor([1, 3]))
    assert held[0, 1].sum() < 0.05
    right, wrong = torch.tensor([[1, -1, 3]]), torch.tensor([[3, -1, 1]])
    assert side_loss(held, right) < 0.1 and side_loss(held, wrong) > 10 * side_loss(held, right)
    with pytest.raises(ValueError, match="avqa_layout_classes"):
        side_loss(held, torch.tensor([[1, -1, 5]]))
    torch.testing.assert_close(one[:, 0], torch.tensor([0.0, 1.0, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(one[1, 1:], sound[0, 2], atol=0.02, rtol=0)
    torch.testing.assert_close(two[:, 0], torch.tensor([1.0, 0.0, 1.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(two[[0, 2], 1:], sound[0, [1, 3]], atol=0.02, rtol=0)  # left: class 1, right: class 3
    torch.testing.assert_close(three[:, 0], torch.ones(3), atol=0.02, rtol=0)
    torch.testing.assert_close(three[:, 1:], sound[0, [4, 0, 2]], atol=0.02, rtol=0)
    q, tokens, audio = torch.randn(2, 3, 32), torch.randn(2, 4, 6, 32), torch.randn(2, 4, 32)
    with torch.no_grad():
        layout.out.weight.normal_()
        before = layout(q, tokens, audio, (2, 3))[0]
        layout.side_read[-1].weight.normal_()  # as if trained: the sides now reach the answer
        assert not torch.allclose(layout(q, tokens, audio, (2, 3))[0], before)
        layout.side_read[-1].weight.zero_()
        hearing = LayoutReadout(32, 5, levels=3)
        hearing.load_state_dict({k: v for k, v in layout.state_dict().items() if hasattr(hearing, k.split(".")[0])})
        torch.testing.assert_close(hearing.eval()(q, tokens, audio, (2, 3))[0], before)  # fresh sides add zero

    model = _model("vit-test", "avqa", **{"head.avqa_layout_classes": 5, "head.avqa_sound_levels": 3,
                                          "head.avqa_side_slots": True}).train()
    video, audio = random_inputs(model.config)
    out = model(video, audio, question=_question())
    assert out["side_weights"].shape == (2, 3, 5)
    side_loss(out["side_weights"], torch.tensor([[1, -1, 3], [-1, 2, -1]])).backward()
    lay = model.head.layout  # the side loss trains the map, the presence threshold and the heard sound
    assert lay.classify.weight.grad.abs().sum() > 0 and lay.presence.grad.abs().sum() > 0


def test_layout_refine_starts_as_the_map_it_refines_and_then_reads_the_clip_and_the_neighbours():
    """``head.avqa_layout_refine``: zero-initialised, the refined map is the Linear's map; once trained, a
    patch's class depends on the same patch in other segments and on its neighbours, not on far patches."""
    with pytest.raises(ConfigError, match="avqa_layout_classes"):
        _model("vit-test", "avqa", **{"head.avqa_layout_refine": True})
    plain, refined = LayoutReadout(32, 5, levels=3).eval(), LayoutReadout(32, 5, levels=3, refine=True).eval()
    refined.load_state_dict(plain.state_dict(), strict=False)
    q, tokens, audio = torch.randn(2, 3, 32), torch.randn(2, 4, 9, 32), torch.randn(2, 4, 32)  # a 3 x 3 grid
    with torch.no_grad():
        for layout in (plain, refined):
            layout.out.weight.normal_(generator=torch.Generator().manual_seed(0))
        before, after = plain(q, tokens, audio, (3, 3)), refined(q, tokens, audio, (3, 3))
        torch.testing.assert_close(after[0], before[0])
        torch.testing.assert_close(after[1]["layout_logits"], before[1]["layout_logits"])
        refined.refine.mlp[-1].weight.normal_()  # as if trained
        wide = torch.randn(1, 2, 25, 32)  # a 5 x 5 grid

        def patch_logits(x: torch.Tensor) -> torch.Tensor:  # patch (0, 0) of segment 0: (K+1,)
            return refined.refine(x, (5, 5))[0, 0, 0]

        base = patch_logits(wide)
        for segment, patch, reaches in ((1, 0, True), (0, 6, True), (1, 6, True), (0, 12, False), (1, 24, False)):
            moved = wide.clone()
            moved[0, segment, patch] += 1.0
            assert (not torch.allclose(patch_logits(moved), base)) == reaches, (segment, patch)

    model = _model("vit-test", "avqa", **{"head.avqa_layout_classes": 5, "head.avqa_layout_refine": True}).train()
    video, audio = random_inputs(model.config)
    out = model(video, audio, question=_question())
    layout_loss(out["layout_logits"], torch.randint(0, 6, out["layout_logits"][:, :, 0].shape)).backward()
    assert model.head.layout.refine.mlp[-1].weight.grad.abs().sum() > 0


def test_layout_targets_name_small_objects_and_leave_slivers_to_the_backdrop():
    """A patch is the object class covering most of it when that covers >= 1/8 of it: a 4 x 4 object
    in a 16-px patch (1/16) is backdrop, a 6 x 6 one (36/256) names its patch, and of two objects in
    one patch the larger wins."""
    class_map = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)  # (B, T, S, S): a 2 x 2 grid of 16-px patches
    class_map[0, 0, 0:4, 0:4] = 3  # top-left: a sliver
    class_map[0, 0, 0:6, 16:22] = 5  # top-right: small but named
    class_map[0, 0, 16:24, 0:8] = 2  # bottom-left: two objects, class 1 the larger
    class_map[0, 0, 24:32, 0:6] = 7
    target = layout_targets(class_map, (2, 2))
    assert target.tolist() == [[[[0, 5], [2, 0]]]]


@pytest.mark.parametrize("name", TOYS)
def test_avqa_layout_readout_learns_class_maps_and_reads_columns(name):
    """``head.avqa_layout_classes``: layout logits per patch, gradients from the layout loss reach the
    head's token projection; the read-out's answer path follows the map's columns (mirroring the map
    changes it, the row and segment order do not) and the audio, and a fresh read-out adds nothing."""
    model = _model(name, "avqa", **{"head.avqa_layout_classes": 5}).train()
    video, audio = random_inputs(model.config)
    feats = model.forward_features(video, audio)
    out = model.forward_head(feats, question=_question())
    rows, cols = feats["grid_v"]
    assert out["layout_logits"].shape == (2, model.config.preprocess.num_segments, 6, rows, cols)
    class_map = torch.randint(0, 6, (2, model.config.preprocess.num_segments, 32, 32), dtype=torch.uint8)
    layout_loss(out["layout_logits"], layout_targets(class_map, (rows, cols), classes=5)).backward()
    assert model.head.layout.classify.weight.grad.abs().sum() > 0
    assert model.head.visual_proj[1].weight.grad.abs().sum() > 0  # the tokens learn to carry the layout
    with pytest.raises(ValueError, match="avqa_layout_classes"):
        layout_targets(class_map + 6, (rows, cols), classes=5)

    layout = model.head.layout.eval()
    with torch.no_grad():
        layout.out.weight.normal_()  # as if trained: a fresh read-out's output is zero
        q, tokens, audio = torch.randn(2, 3, 32), torch.randn(2, 4, 6, 32), torch.randn(2, 4, 32)  # (B, Q, H), ...
        before, aux = layout(q, tokens, audio, (2, 3))
        logits = aux["layout_logits"]
        assert before.shape == (6, 32) and logits.shape == (2, 4, 6, 2, 3) and set(aux) == {"layout_logits"}
        torch.testing.assert_close(logits[:, :, :, 1, 2], layout.classify(tokens[:, :, 5]))  # patch 5: row 1, col 2
        order = torch.randperm(4)
        torch.testing.assert_close(layout(q, tokens[:, order], audio[:, order], (2, 3))[0], before)
        below = tokens.reshape(2, 4, 2, 3, 32).flip(2).reshape(2, 4, 6, 32)  # each patch moved to the other row
        torch.testing.assert_close(layout(q, below, audio, (2, 3))[0], before)
        aside = tokens.reshape(2, 4, 2, 3, 32).flip(3).reshape(2, 4, 6, 32)  # mirrored columns
        assert not torch.allclose(layout(q, aside, audio, (2, 3))[0], before)
        assert not torch.allclose(layout(q, tokens, torch.randn(2, 4, 32), (2, 3))[0], before)  # and what is heard
        assert type(layout)(32, 5)(q, tokens, audio, (2, 3))[0].abs().max() == 0
