"""SynthAV (stgcma.data.synthav): determinism, labels derived from the scene, no visual cue of
sounding, balanced answers, tensors, and the mp4 writer/reader round trip."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from stgcma.cli import main as cli_main
from stgcma.config import PreprocessConfig
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.audio import class_template, render_audio
from stgcma.data.synthav.bounds import (
    ave_oracle,
    avs_oracle_masks,
    event_posterior,
    measure_ave_ceiling,
    measure_avs_ceiling,
)
from stgcma.data.synthav.clip import make_clip
from stgcma.data.synthav.dataset import SynthAV
from stgcma.data.synthav.folder import SynthAVFolder, write_synthav
from stgcma.data.synthav.questions import (
    QTYPES,
    TEMPLATES,
    Facts,
    blind_baseline,
    question_vocabulary,
    scene_questions,
)
from stgcma.data.synthav.render import (
    object_mask,
    render_class_maps,
    render_frames,
    render_masks,
    segment_times,
)
from stgcma.data.synthav.scene import GAINS, SynthConfig
from stgcma.data.synthav.styles import class_names, class_styles
from stgcma.data.vocab import Vocab

CFG = SynthConfig(world="shapes")
PRE = PreprocessConfig(image_size=48)


@pytest.fixture(scope="module")
def clips() -> list:
    return [make_clip(0, i, CFG) for i in range(300)]


def test_class_table_is_fixed_and_distinct() -> None:
    styles = class_styles(8)
    assert len({s.name for s in styles}) == 8
    assert len({(s.shape, s.colour) for s in class_styles(32)}) == 32
    assert len({(s.timbre, s.envelope) for s in styles}) == 8
    assert class_names(16)[:8] == class_names(8)  # class k means the same in every world


def test_clip_depends_only_on_seed_split_index() -> None:
    assert make_clip(3, 7, CFG) == make_clip(3, 7, CFG)
    assert make_clip(3, 7, CFG) != make_clip(4, 7, CFG)
    assert make_clip(3, 7, CFG, "train").scene != make_clip(3, 7, CFG, "val").scene
    small, large = SynthAV(3, 8, "ave", PRE, world="shapes"), SynthAV(3, 500, "ave", PRE, world="shapes")
    a, b = small[5], large[5]
    assert a["id"] == b["id"]
    for key in ("video", "audio", "label"):
        assert torch.equal(a[key], b[key])


def test_scene_shape_rules(clips: list) -> None:
    for clip in clips:
        s = clip.scene
        assert 1 <= len(s.objects) <= 3
        assert [o.slot for o in s.objects] == list(range(len(s.objects)))
        xs = [o.x for o in s.objects]
        assert xs == sorted(xs)
        assert s.event_class in {o.cls for o in s.objects}
        assert all(d.cls not in {o.cls for o in s.objects} for d in s.distractors)  # off-screen class
        assert all(any(o.visible) for o in s.objects)


def test_ave_label_is_event_exactly_when_visible_and_sounding(clips: list) -> None:
    backgrounds = 0
    for clip in clips:
        s = clip.scene
        for t, label in enumerate(s.ave_labels()):
            seen_and_heard = any(o.cls == s.event_class and o.visible[t] and o.sounding[t] for o in s.objects)
            assert label == (s.event_class if seen_and_heard else s.num_classes)
            backgrounds += label == s.num_classes
        assert s.sounding_classes() == [sorted({x.cls for x in s.sources if x.sounding[t]})
                                        for t in range(s.num_segments)]
    assert backgrounds > 0  # background seconds occur (silent, or heard while off screen)


def test_reversed_scene_plays_the_segments_backwards_and_keeps_the_rest(clips: list) -> None:
    for clip in clips[:50]:
        s, r = clip.scene, clip.scene.reversed()
        assert r.ave_labels() == s.ave_labels()[::-1]
        assert r.sounding_classes() == s.sounding_classes()[::-1]
        assert np.array_equal(r.sound_levels(), s.sound_levels()[::-1])
        assert np.array_equal(r.side_classes(), s.side_classes())
        assert r.reversed() == s
    names = class_names(CFG.num_classes)
    assert any(Facts(c.scene, names).onsets != Facts(c.scene.reversed(), names).onsets for c in clips)


def test_masks_cover_exactly_the_sounding_visible_objects(clips: list) -> None:
    times = segment_times(CFG.num_segments)
    for clip in clips[:20]:
        s = clip.scene
        masks = render_masks(s, times, 64)
        for t in range(s.num_segments):
            expected = np.zeros((64, 64), dtype=bool)
            for o in s.objects:
                m = object_mask(s, o, times[t], 64)
                if o.visible[t] and o.sounding[t]:
                    assert m.any()
                    expected |= m
            assert np.array_equal(masks[t], expected)
            assert masks[t].any() == bool(s.sounding_objects(t))


def test_class_maps_paint_every_visible_object_with_its_class_in_drawing_order(clips: list) -> None:
    times = segment_times(CFG.num_segments)
    for clip in clips[:20]:
        s = clip.scene
        maps = render_class_maps(s, times, 64)
        assert maps.shape == (s.num_segments, 64, 64) and maps.dtype == np.uint8
        for t in range(s.num_segments):
            expected = np.zeros((64, 64), dtype=np.uint8)
            for o in s.objects:  # later objects cover earlier ones, as in the frames
                if o.visible[t]:
                    expected[object_mask(s, o, times[t], 64)] = o.cls + 1
            assert np.array_equal(maps[t], expected)
            sounding = render_masks(s, times[t:t + 1], 64)[0]
            assert (maps[t][sounding] > 0).all()  # every sounding pixel shows an object


def test_s4_mode_has_exactly_one_sounding_object() -> None:
    cfg = SynthConfig(world="shapes", num_segments=5, mode="s4")
    for i in range(60):
        s = make_clip(1, i, cfg).scene
        assert not s.distractors
        assert all(len(s.sounding_objects(t)) == 1 for t in range(5))
        assert len({tuple(s.sounding_objects(t)) for t in range(5)}) == 1
        assert all(all(o.visible) for o in s.objects)


def test_picture_does_not_reveal_sounding(clips: list) -> None:
    times = np.linspace(0, CFG.num_segments, 23, endpoint=False)
    for clip in clips[:10]:
        s = clip.scene
        flipped = dataclasses.replace(
            s,
            objects=tuple(dataclasses.replace(o, sounding=tuple(not x for x in o.sounding), gain=1.0 - o.gain / 2)
                          for o in s.objects),
            distractors=(),
        )
        assert np.array_equal(render_frames(s, times, 48), render_frames(flipped, times, 48))


def test_audio_follows_sounding() -> None:
    scenes = (make_clip(2, i, CFG).scene for i in range(200))
    s = next(s for s in scenes if any(s.sounding_classes()) and not all(s.sounding_classes()))
    wave = render_audio(s, 16000)
    assert wave.dtype == np.float32 and wave.shape == (160000,) and np.abs(wave).max() < 1
    rms = np.sqrt((wave.reshape(10, 16000)[:, 400:-400] ** 2).mean(1))  # (T,), ramps left out
    heard = np.array([bool(c) for c in s.sounding_classes()])
    assert rms[heard].min() > 2 * rms[~heard].max()


def test_each_class_sounds_different() -> None:
    spectra = []
    for style in class_styles(8):
        x = class_template(style, 1.0, 16000, np.random.default_rng(0))
        assert x.shape == (16000,) and abs(np.sqrt((x**2).mean()) - 1) < 1e-3
        spectra.append(np.abs(np.fft.rfft(x))[:8000] / np.abs(np.fft.rfft(x))[:8000].sum())
    overlap = np.array([[np.minimum(a, b).sum() for b in spectra] for a in spectra])
    assert (overlap[~np.eye(8, dtype=bool)] < 0.5).all()


def test_answers_are_balanced_and_in_vocabulary() -> None:
    questions = [make_clip(10, i, CFG).question for i in range(1500)]
    held_out = [make_clip(11, i, CFG).question for i in range(1500)]
    names = class_names(CFG.num_classes)
    vocab = question_vocabulary(names)
    answers = {"yes", "no", "zero", "one", "two", "three", "four", "five", "left", "middle", "right", *names}
    assert set(Counter(q.qtype for q in questions)) == set(QTYPES)
    assert all(q.answer in answers and not vocab.unknown_words(q.text) for q in questions)
    by_set: dict[str, Counter] = defaultdict(Counter)
    for q in questions:
        kind = next(t.answers for t in TEMPLATES if t.text == q.template)
        by_set[kind][q.answer] += 1
    yes = by_set["yesno"]["yes"] / sum(by_set["yesno"].values())
    assert 0.45 < yes < 0.55
    sides = by_set["sides"]
    assert max(sides.values()) / sum(sides.values()) < 0.42
    rows = blind_baseline(questions, fit=held_out)
    assert rows["overall"]["template"] < rows["overall"]["chance"] + 0.06
    assert rows["overall"]["question"] < rows["overall"]["chance"] + 0.06
    for qtype in QTYPES:
        assert rows[qtype]["template"] < 0.62


def test_dataset_items_for_each_task() -> None:
    ave = SynthAV(0, 4, "ave", PRE, world="shapes")
    item = ave[1]
    assert item["video"].shape == (10, 3, 48, 48) and item["audio"].shape == (10, 1, 102, 128)
    assert item["label"].dtype == torch.long and item["label"].tolist() == ave.clip(1).scene.ave_labels()
    assert ave.num_classes == 9 and ave.class_names[-1] == "background"

    avs = SynthAV(0, 4, "avs", PRE, world="shapes", mode="s4", segments=5)
    item = avs[2]
    assert item["mask"].shape == (5, 48, 48) and item["mask_valid"].all()
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0} and (item["mask"].sum((1, 2)) > 0).all()

    avqa = SynthAV(0, 4, "avqa", PRE, world="shapes")
    item = avqa[3]
    q = avqa.clip(3).question
    assert item["qtype"] == q.qtype and avqa.answer_vocab[int(item["answer"])] == q.answer
    assert item["question"].shape == (14,) and item["question"][0] > 1
    assert avqa.num_classes == len(avqa.answer_vocab)
    assert item["class_map"].shape == (10, 48, 48) and item["class_map"].dtype == torch.uint8
    scene = avqa.clip(3).scene
    assert set(item["class_map"].unique().tolist()) <= {0, *(o.cls + 1 for o in scene.objects)}
    level = item["sound_level"]  # (T, K): 0 silent, 1 + the loudest sounding source's gain index
    assert level.shape == (10, avqa.config.num_classes) and level.dtype == torch.uint8
    assert [sorted(torch.nonzero(row).flatten().tolist()) for row in level] == scene.sounding_classes()
    for t in range(10):
        for c in scene.sounding_classes()[t]:
            loudest = max(s.gain for s in scene.sources if s.cls == c and s.sounding[t])
            assert GAINS[int(level[t, c]) - 1] == loudest
    for i in range(4):  # the classes at the left, middle and right, in the order their objects stand
        scene, sides = avqa.clip(i).scene, avqa[i]["side_class"].tolist()
        named = {1: [1], 2: [0, 2], 3: [0, 1, 2]}[len(scene.objects)]  # one: middle; two: left, right...
        assert [j for j, c in enumerate(sides) if c >= 0] == named
        assert [sides[j] for j in named] == [o.cls for o in sorted(scene.objects, key=lambda o: o.x)]
    batch = torch.utils.data.default_collate([avqa[0], avqa[1]])
    assert batch["video"].shape == (2, 10, 3, 48, 48) and len(batch["qtype"]) == 2
    assert batch["side_class"].shape == (2, 3)


def test_scene_questions_are_true_of_the_scene_and_spread_over_answers(clips: list) -> None:
    names = list(class_names(CFG.num_classes))
    by_text = {t.text: t for t in TEMPLATES}
    answers: dict[str, Counter] = defaultdict(Counter)
    for i, clip in enumerate(clips[:150]):
        qs = scene_questions(np.random.default_rng(i), clip.scene, names, 6)
        assert len(qs) == 6
        facts = Facts(clip.scene, names)
        for q in qs:
            template = by_text[q.template]
            assert (q.values, q.answer) in template.candidates(facts) and q.qtype == template.qtype
            answers[template.answers][q.answer] += 1
    assert len({q.qtype for clip in clips[:20] for q in scene_questions(np.random.default_rng(0), clip.scene,
                                                                         names, 9)}) >= 7
    yes = answers["yesno"]["yes"] / sum(answers["yesno"].values())
    assert 0.35 < yes < 0.65
    many = [scene_questions(np.random.default_rng(i), clip.scene, names, 16) for i, clip in enumerate(clips[:50])]
    distinct = np.mean([len({(q.template, q.values) for q in qs}) for qs in many])
    assert distinct > 15.0  # drawn independently, 16 questions held about 13 distinct ones


def test_several_questions_per_clip_start_with_the_clips_own() -> None:
    avqa = SynthAV(0, 4, "avqa", PRE, world="shapes", questions=5)
    item, own = avqa[2], avqa.clip(2).question
    assert item["question"].shape == (5, 14) and item["answer"].shape == (5,) and len(item["qtype"]) == 5
    assert torch.equal(item["question"][0], avqa.question_vocab.encode(own.text))
    assert avqa.answer_vocab[int(item["answer"][0])] == own.answer and item["qtype"][0] == own.qtype
    assert torch.equal(avqa[2]["question"], item["question"])  # deterministic
    spec = build_dataset("synthav:seed=0,n=4,questions=5,world=shapes", "avqa", "train", PRE)
    assert torch.equal(spec[2]["answer"], item["answer"])
    with pytest.raises(ValueError, match="AVQA option"):
        SynthAV(0, 4, "ave", PRE, world="shapes", questions=3)
    with pytest.raises(ValueError, match="questions must be >= 1"):
        SynthAV(0, 4, "avqa", PRE, world="shapes", questions=0)


def test_ave_oracle_is_right_when_the_event_is_unambiguous(clips: list) -> None:
    for clip in clips:
        scene = clip.scene
        post = event_posterior(scene, CFG)
        assert post.shape == (len(scene.objects),) and abs(post.sum() - 1) < 1e-9
        others_sound = any(any(o.sounding) for o in scene.objects if o.cls != scene.event_class)
        if not others_sound:
            assert ave_oracle(scene, CFG) == scene.ave_labels()
    ceiling = measure_ave_ceiling(300, seed=0, cfg=CFG, split="train")
    assert 0.7 < ceiling < 0.95  # ambiguity is real but bounded
    assert measure_ave_ceiling(50, seed=0, cfg=SynthConfig(world="shapes", mode="s4")) == 1.0


def test_avs_oracle_is_exact_unless_two_objects_share_the_sounding_class() -> None:
    cfg = SynthConfig(world="shapes", num_segments=5, mode="s4")
    times = segment_times(5)
    exact = shared = 0
    for i in range(60):
        scene = make_clip(0, i, cfg).scene
        oracle, truth = avs_oracle_masks(scene, times, 48), render_masks(scene, times, 48)
        if [o.cls for o in scene.objects].count(scene.event_class) == 1:
            assert np.array_equal(oracle, truth)
            exact += 1
        else:
            assert (oracle >= truth).all() and oracle.sum() > truth.sum()
            shared += 1
    assert exact and shared
    ceiling = measure_avs_ceiling(60, seed=0, size=48, split="train", world="shapes")
    assert 0.8 < ceiling["miou"] < 1.0


def test_cli_bounds_prints_ceiling_and_baselines(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["bounds", "--seed", "5", "--n", "40"]) == 0
    out = capsys.readouterr().out
    assert "synthav:seed=5,n=40" in out and "ceiling" in out and "overall" in out
    assert cli_main(["bounds", "--n", "0"]) == 2


def test_write_and_read_back_folder(tmp_path: Path) -> None:
    cfg = SynthConfig(world="shapes", num_segments=3)
    write_synthav(tmp_path, 2, seed=5, config=cfg, size=48, fps=4, progress=False)
    meta = json.loads((tmp_path / "synthav.json").read_text())
    assert meta["n"] == 2 and meta["config"]["num_segments"] == 3
    memory = SynthAV(5, 2, "ave", PRE, world="shapes", segments=3)
    for task in ("ave", "avs", "avqa"):
        folder = SynthAVFolder(tmp_path, task, PRE)
        assert len(folder) == 2
        item = folder[1]
        assert item["id"] == memory.clip(1).id
        assert item["video"].shape == (3, 3, 48, 48) and item["audio"].shape == (3, 1, 102, 128)
    ref = memory[1]
    item = SynthAVFolder(tmp_path, "ave", PRE)[1]
    assert torch.equal(item["label"], ref["label"])
    assert (item["video"] - ref["video"]).abs().mean() < 0.15  # H.264 round trip
    assert (item["audio"] - ref["audio"]).abs().mean() < 0.1  # AAC round trip
    masks = SynthAVFolder(tmp_path, "avs", PRE)[1]["mask"]
    assert torch.equal(masks, SynthAV(5, 2, "avs", PRE, world="shapes", segments=3)[1]["mask"])
    vocab = Vocab(["is", "the"])
    assert build_dataset(tmp_path, "avqa", "train", PRE, question_vocab=vocab).question_vocab is vocab
    (tmp_path / "avs.json").unlink()
    with pytest.raises(FileNotFoundError, match="avs.json"):
        SynthAVFolder(tmp_path, "avs", PRE)


def test_cli_synth_writes_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--n", "1", "--seed", "2", "--segments", "2", "--size", "32",
            "--fps", "2", "--task", "avs", "--quiet"]
    assert cli_main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["avs.json", "masks", "synthav.json", "videos"]
    assert cli_main(args) == 2
    assert "already holds" in capsys.readouterr().err
    assert cli_main([*args[:-1], "--force", "--classes", "2"]) == 2


def test_gate_is_the_moving_average_of_the_step_function() -> None:
    from stgcma.data.synthav.audio import RAMP_S, gate

    sr, width = 1000, max(1, int(RAMP_S * 1000))
    rng = np.random.default_rng(0)
    for _ in range(50):
        flags = tuple(bool(x) for x in rng.random(6) < 0.5)
        step = np.repeat(np.asarray(flags, dtype=np.float64), sr)
        padded = np.concatenate([np.full(width, step[0]), step, np.full(width, step[-1])])
        expected = np.convolve(padded, np.ones(2 * width) / (2 * width), mode="valid")[: step.size]
        assert np.abs(gate(flags, sr) - expected).max() < 1e-6
