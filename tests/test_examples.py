"""The bundled example clips: chosen by what their scenes show, captioned and questioned truthfully."""

import json
from pathlib import Path

from stgcma.data.synthav.examples import MANIFEST, WANTED, describe, find_examples, suggested_questions
from stgcma.data.synthav.questions import TEMPLATES, Facts
from stgcma.data.synthav.scene import NUM_MUSIC_CLASSES, SynthConfig
from stgcma.data.synthav.styles import question_names

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
CONFIG = SynthConfig(num_segments=10, num_classes=NUM_MUSIC_CLASSES, world="music")


def test_committed_manifest_is_what_the_generator_writes():
    manifest = json.loads((EXAMPLES / MANIFEST).read_text())["examples"]
    clips = find_examples(CONFIG)
    assert [e["file"] for e in manifest] == [f"{w.stem}.mp4" for w in WANTED]
    for entry, want, clip in zip(manifest, WANTED, clips, strict=True):
        assert (EXAMPLES / entry["file"]).stat().st_size > 10_000
        assert want.test(clip.scene) and entry["source"]["index"] == clip.index
        assert entry["caption"] == describe(clip.scene)
        assert [q["question"] for q in entry["questions"]] == [q.text for q in suggested_questions(clip)]


def test_suggested_questions_are_true_and_about_objects_in_the_clip():
    names = question_names(NUM_MUSIC_CLASSES, "music")
    by_text = {t.text: t for t in TEMPLATES}
    for clip in find_examples(CONFIG):
        present = {names[o.cls] for o in clip.scene.objects}
        questions = suggested_questions(clip)
        assert len(questions) == 3 and len({q.qtype for q in questions}) == 3
        facts = Facts(clip.scene, names)
        for q in questions:
            assert {v for v in q.values if v in names} <= present
            assert (q.values, q.answer) in by_text[q.template].candidates(facts)


def test_caption_names_every_source_and_the_event():
    clip = find_examples(CONFIG, WANTED[3:4])[0]  # heard but not seen
    caption = describe(clip.scene)
    assert "off-screen" in caption and caption.count(";") == len(clip.scene.sources) - 1
    assert "Event:" in caption or "No audio-visual event" in caption
