"""SynthAV music world (stgcma.data.synthav.music): the shared scene logic drawn with OpenMoji glyphs
and SoundFont notes from the committed bank; decidable labels; the same tensor and mp4 paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stgcma.config import PreprocessConfig
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.audio import render_audio
from stgcma.data.synthav.backdrops import SCENE_KINDS, scene_backdrop
from stgcma.data.synthav.bounds import ave_oracle, measure_ave_ceiling, measure_avs_ceiling
from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.music import object_patch
from stgcma.data.synthav.music_bank import load_bank
from stgcma.data.synthav.questions import QTYPES
from stgcma.data.synthav.render import background_image, render_frames, render_masks, segment_times
from stgcma.data.synthav.scene import SynthConfig, audio_visual_seconds
from stgcma.data.synthav.styles import class_names, question_names

MUSIC = SynthConfig(world="music", num_classes=14)


@pytest.fixture(scope="module")
def clips() -> list:
    return [make_clip(0, i, MUSIC) for i in range(200)]


def test_names_come_from_ave_and_music_avqa() -> None:
    names, words = class_names(14, "music"), question_names(14, "music")
    assert "Violin, fiddle" in names and "Acoustic guitar" in names and len(set(names)) == 14
    assert all(" " not in w and w == w.lower() for w in words) and len(set(words)) == 14


def test_music_clip_is_deterministic_and_renders_the_same_twice() -> None:
    a, b = make_clip(4, 2, MUSIC), make_clip(4, 2, MUSIC)
    assert a == b and a.scene.world == "music"
    times = segment_times(10)
    assert np.array_equal(render_frames(a.scene, times, 64), render_frames(b.scene, times, 64))
    assert np.array_equal(render_audio(a.scene), render_audio(b.scene))


def test_mask_is_the_drawn_glyphs_alpha(clips: list) -> None:
    """Where the mask is on, the frame shows the glyph (alpha >= 0.5), composited over the background."""
    size, checked = 96, 0
    for clip in clips[:40]:
        scene = clip.scene
        t = 3.5
        frame = render_frames(scene, np.array([t]), size)[0].astype(np.float32)
        background = background_image(scene.background, size)
        for i in scene.sounding_objects(3):
            obj = scene.objects[i]
            rows, cols, alpha, colour = object_patch(obj, t, size, load_bank())
            mask = render_masks(scene, np.array([t]), size)[0]
            assert mask[rows, cols][alpha >= 0.5].all()
            if len(scene.sounding_objects(3)) == 1 and sum(o.visible[3] for o in scene.objects) == 1:
                expected = background[rows, cols] + (colour - background[rows, cols]) * alpha[..., None]
                assert np.abs(frame[rows, cols] - expected).max() <= 1.0
                assert mask.sum() == int((alpha >= 0.5).sum())
                checked += 1
    assert checked >= 3


def test_every_ave_label_is_decidable(clips: list) -> None:
    for clip in clips:
        scene = clip.scene
        assert ave_oracle(scene, MUSIC) == scene.ave_labels()
        event = [o for o in scene.objects if o.cls == scene.event_class]
        others = [o for o in scene.objects if o.cls != scene.event_class]
        if others:
            assert max(map(audio_visual_seconds, event)) > max(map(audio_visual_seconds, others))


def test_ceilings_of_the_music_world() -> None:
    assert measure_ave_ceiling(300, 300, MUSIC) >= 0.97
    assert measure_avs_ceiling(60, 300, world="music", classes=14)["miou"] >= 0.95


def test_audio_follows_sounding() -> None:
    clip = next(c for c in (make_clip(1, i, MUSIC) for i in range(100))
                if not all(c.scene.sounding_classes()) and any(c.scene.sounding_classes()))
    wave = render_audio(clip.scene).reshape(10, -1)
    rms = np.sqrt((wave**2).mean(axis=1))
    heard = [bool(s) for s in clip.scene.sounding_classes()]
    assert min(r for r, h in zip(rms, heard, strict=True) if h) > 3 * max(r for r, h in zip(rms, heard, strict=True)
                                                                            if not h)


def test_spec_builds_music_tensors_for_every_task() -> None:
    pre = PreprocessConfig(image_size=48)
    for task in ("ave", "avs", "avqa"):
        ds = build_dataset("synthav:seed=0,n=3,world=music,classes=14", task, "train", pre)
        item = ds[0]
        assert item["video"].shape[:2] == (10, 3) and item["audio"].shape[0] == 10
    ave = build_dataset("synthav:seed=0,n=3,world=music,classes=14", "ave", "train", pre)
    assert ave.class_names[-1] == "background" and "Violin, fiddle" in ave.class_names


def test_cli_bounds_json_per_world(capsys: pytest.CaptureFixture) -> None:
    from stgcma.cli import main as cli_main

    for world, classes in (("music", 14), ("shapes", 8)):
        assert cli_main(["bounds", "--world", world, "--classes", str(classes), "--n", "60", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert set(out["avqa"]["types"]) == set(QTYPES)
        assert out["avqa"]["ceiling"] == 1.0 > out["avqa"]["floor"]  # every answer follows from the scene
        assert list(out["avs"]["grid"]) == ["7", "14", "28"] and 0 < out["avs"]["area"]["p50"] < 1
        if world == "music":
            assert out["ave"]["ceiling"] >= 0.97 and out["avs"]["ceiling"] >= 0.95
        else:
            assert out["ave"]["ceiling"] < 0.97  # the shapes world keeps its designed ambiguity
    assert cli_main(["bounds", "--world", "music", "--classes", "20"]) == 2


def test_cli_synth_music_writes_mp4_labels_and_a_contact_sheet(tmp_path) -> None:
    from PIL import Image

    from stgcma.cli import main as cli_main
    from stgcma.data.synthav.folder import SynthAVFolder

    out = tmp_path / "music"
    assert cli_main(["synth", "--out", str(out), "--n", "2", "--world", "music", "--classes", "14", "--size", "64",
                     "--quiet", "--sheet"]) == 0
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape == (2 * (128 + 6), 5 * 128, 3) and sheet.std() > 10
    ds = SynthAVFolder(out, "ave", PreprocessConfig(image_size=48))
    assert "Violin, fiddle" in ds.class_names and ds[0]["video"].shape[:2] == (10, 3)
    qa = SynthAVFolder(out, "avqa", PreprocessConfig(image_size=48))
    assert "acoustic_guitar" in qa.answer_vocab


def test_music_answers_are_balanced_per_template_and_in_music_avqa_words() -> None:
    from collections import Counter, defaultdict

    from stgcma.data.synthav.questions import TEMPLATES, blind_baseline, question_vocabulary

    questions = [make_clip(10, i, MUSIC).question for i in range(800)]
    held_out = [make_clip(11, i, MUSIC).question for i in range(800)]
    words = question_names(14, "music")
    vocab = question_vocabulary(words)
    assert all(not vocab.unknown_words(q.text) for q in questions)
    assert {"violin", "acoustic_guitar", "piano", "flute"} <= set(words)
    per_template: dict[str, Counter] = defaultdict(Counter)
    for q in questions:
        per_template[q.template][q.answer] += 1
    for template, counts in per_template.items():
        support = len(next(t for t in TEMPLATES if t.text == template).answer_set(words))
        if sum(counts.values()) >= 40 and support <= 3:
            assert max(counts.values()) / sum(counts.values()) < 1 / support + 0.2, (template, counts)
    rows = blind_baseline(questions, fit=held_out)
    assert rows["overall"]["template"] < rows["overall"]["chance"] + 0.08


def test_scene_like_backdrops_appear_in_music_only_and_are_not_flat(clips: list) -> None:
    kinds = {c.scene.background.kind for c in clips}
    assert {"stage", "room", "outdoors"} <= kinds and {"gradient", "noise"} & kinds
    scenic = sum(c.scene.background.kind in SCENE_KINDS for c in clips) / len(clips)
    assert 0.35 <= scenic <= 0.65  # scenery_prob 0.5
    shapes = SynthConfig(world="shapes")
    assert all(make_clip(0, i, shapes).scene.background.kind not in SCENE_KINDS for i in range(100))
    for kind in SCENE_KINDS:
        image = scene_backdrop(kind, 7, 96, (120.0, 90.0, 80.0), (150.0, 120.0, 90.0))
        assert image.shape == (96, 96, 3) and np.isfinite(image).all()
        assert image.min() >= 0 and image.max() <= 255
        top, bottom = image[:20].mean((0, 1)), image[-15:].mean((0, 1))  # wall or sky vs floor or ground
        assert np.abs(top - bottom).max() > 5 and image.std((0, 1)).max() > 5
    with pytest.raises(ValueError, match="unknown scene backdrop"):
        scene_backdrop("beach", 0, 8, (0, 0, 0), (0, 0, 0))


def test_some_objects_stand_partly_outside_the_frame_without_breaking_labels(clips: list) -> None:
    """Edge placement cuts part of a glyph off; the mask is what is left in frame, the slots keep their
    left-to-right order, a lone object only leaves through the top or the bottom."""
    size, cut = 96, 0
    bank = load_bank()
    for clip in clips:
        objects = clip.scene.objects
        assert [o.x for o in objects] == sorted(o.x for o in objects)
        for obj in objects:
            x, y = obj.centre(0.5)
            edge = min(x, y, 1 - x, 1 - y) < obj.radius * 0.65
            if len(objects) == 1:
                assert obj.radius * 0.6 < x < 1 - obj.radius * 0.6
            if not edge:
                continue
            _, _, alpha, _ = object_patch(obj, 0.5, size, bank)
            full = round(2.0 * obj.radius * size)
            index = objects.index(obj)
            mask = render_masks(clip.scene, np.array([0.5]), size, objects=lambda s, t, i=index: [i])[0]
            assert mask.any() and mask.sum() == int((alpha >= 0.5).sum())
            assert min(alpha.shape) < full  # the sprite was cropped by the frame
            cut += 1
    assert 0.05 * len(clips) <= cut <= 0.5 * len(clips)
    assert measure_ave_ceiling(300, 0, MUSIC) == 1.0
    assert measure_avs_ceiling(40, 0, size=64, world="music", classes=14)["miou"] == 1.0


def test_music_is_the_default_world_and_shapes_stays_selectable() -> None:
    assert SynthConfig().world == "music" and SynthConfig().num_classes == 14
    assert SynthConfig(world="shapes").num_classes == 8 and SynthConfig(world="shapes").scenery_prob == 0.0
    data = build_dataset("synthav:seed=0,n=2", "ave", "train", PreprocessConfig(image_size=32))
    assert data.class_names == [*class_names(14, "music"), "background"]
    shapes = build_dataset("synthav:seed=0,n=2,world=shapes", "ave", "train", PreprocessConfig(image_size=32))
    assert len(shapes.class_names) == 9 and "Violin, fiddle" not in shapes.class_names
    with pytest.raises(ValueError, match="scenery_prob"):
        SynthConfig(scenery_prob=1.5)


def test_avs_masks_through_a_patch_grid_lose_the_small_objects() -> None:
    """The true masks seen through g x g cells: exact at the pixel grid, worse as the cells grow."""
    seen = measure_avs_ceiling(12, size=112, grids=(7, 28, 112))
    miou = seen["grid"]
    assert miou[112] == pytest.approx(1.0) and miou[7] < miou[28] < miou[112]
    assert 0 < seen["area"]["p10"] <= seen["area"]["p50"] <= seen["area"]["p90"] < 0.5
