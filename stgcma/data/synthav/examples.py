"""The app's example clips: SynthAV Music scenes picked to show each task, with a caption and questions.

``python -m stgcma.data.synthav.examples --out assets/examples`` rebuilds them. Each example is the
first clip of the test split of ``SEED`` (a seed never used in training) that satisfies its
``Wanted`` predicate, so the set is deterministic. The caption is written from the scene itself
(who is where, who plays when, what is heard off-screen), and the suggested questions are templated
MUSIC-AVQA questions about objects that are in the clip, each with its true answer, so the app can
offer them and anyone can check the model against them.

``examples.json``::

    {"examples": [{"file": "music-01-duet.mp4", "title": ..., "caption": ..., "world": "music",
                   "source": {"seed": 900, "split": "test", "index": 12},
                   "questions": [{"question": ..., "answer": ..., "type": ...}, ...]}]}
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stgcma.data.synthav.audio import render_audio
from stgcma.data.synthav.clip import Clip, make_clip
from stgcma.data.synthav.music_bank import MUSIC_CLASSES
from stgcma.data.synthav.questions import Facts, Question, scene_questions
from stgcma.data.synthav.render import render_frames, video_times
from stgcma.data.synthav.scene import NUM_MUSIC_CLASSES, Scene, SynthConfig
from stgcma.data.synthav.styles import class_names, question_names
from stgcma.media.encode import write_video

SEED = 900
SPLIT = "test"
MANIFEST = "examples.json"
MASS_NOUNS = {"applause"}
PHRASE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}


def _spans(flags: tuple[bool, ...]) -> list[tuple[int, int]]:
    """Runs of True as (first second, end second): (T,) -> [(start, stop), ...]."""
    runs, start = [], None
    for t, on in enumerate([*flags, False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            runs.append((start, t))
            start = None
    return runs


def _when(flags: tuple[bool, ...]) -> str:
    spans = _spans(flags)
    if spans == [(0, len(flags))]:
        return "throughout"
    return " and ".join(f"{a}-{b} s" for a, b in spans)


def _noun(name: str) -> str:
    """"Violin, fiddle" -> "a violin"; "Accordion" -> "an accordion"; "Applause" -> "applause"."""
    word = name.split(",")[0].lower()
    if word in MASS_NOUNS:
        return word
    return ("an " if word[0] in "aeiou" else "a ") + word


def describe(scene: Scene) -> str:
    """Where each object is and when it plays, what is heard off-screen, and the AVE event's seconds."""
    names = class_names(scene.num_classes, scene.world)
    sides = Facts(scene, names).side  # the questions' left/middle/right, by slot
    parts = []
    for obj, side in zip(sorted(scene.objects, key=lambda o: o.slot), sides, strict=True):
        what = f"{_noun(names[obj.cls])} {PHRASE[side]}"
        seen = "" if all(obj.visible) else f" (in view {_when(obj.visible)})"
        plays = f"plays {_when(obj.sounding)}" if any(obj.sounding) else "stays silent"
        parts.append(f"{what}{seen} {plays}")
    for d in scene.distractors:
        parts.append(f"{_noun(names[d.cls])} is heard off-screen {_when(d.sounding)}")
    text = "; ".join(parts)
    event = tuple(label == scene.event_class for label in scene.ave_labels())
    tail = f" Event: {names[scene.event_class]}, {_when(event)}." if any(event) else " No audio-visual event."
    return text[0].upper() + text[1:] + "." + tail


@dataclass(frozen=True)
class Wanted:
    """One example: a file stem, a title and what its scene must show."""

    stem: str
    title: str
    test: Callable[[Scene], bool]


def _silent_visible(scene: Scene) -> bool:
    return any(not any(o.sounding) and all(o.visible) for o in scene.objects)


def _melodic(scene: Scene) -> bool:
    return all(MUSIC_CLASSES[o.cls].kind == "melodic" for o in scene.objects)


def _takes_turns(scene: Scene) -> bool:
    snd = [np.array(o.sounding) for o in scene.objects]
    return len(snd) == 2 and all(s.any() for s in snd) and not (snd[0] & snd[1]).any()


def _late_entry(scene: Scene) -> bool:
    labels = scene.ave_labels()
    return labels[0] == scene.num_classes and labels[-1] != scene.num_classes and sum(
        lab != scene.num_classes for lab in labels) >= 4


WANTED = (
    Wanted("music-01-duet", "Duet, taking turns",
           lambda s: _takes_turns(s) and _melodic(s) and all(all(o.visible) for o in s.objects) and not s.distractors),
    Wanted("music-02-solo", "One plays, one listens",
           lambda s: len(s.objects) == 2 and _silent_visible(s) and not s.distractors),
    Wanted("music-03-trio", "Trio",
           lambda s: len(s.objects) == 3 and _melodic(s) and sum(any(o.sounding) for o in s.objects) >= 2),
    Wanted("music-04-offscreen", "Heard but not seen",
           lambda s: len(s.distractors) >= 1 and any(any(o.sounding) for o in s.objects)),
    Wanted("music-05-late-entry", "Late entry", _late_entry),
    Wanted("music-06-same-kind", "Two of a kind",
           lambda s: len(s.objects) >= 2 and len({o.cls for o in s.objects}) < len(s.objects)),
    Wanted("music-07-walk-on", "Walk-on", lambda s: any(not all(o.visible) and any(o.sounding) for o in s.objects)),
    Wanted("music-08-sound-effects", "Not only music",
           lambda s: any(MUSIC_CLASSES[o.cls].kind == "effect" and any(o.sounding) for o in s.objects)),
)


def suggested_questions(clip: Clip, k: int = 3) -> list[Question]:
    """``k`` questions of different types whose named objects are all in the clip."""
    names = question_names(clip.scene.num_classes, clip.scene.world)
    present = {names[o.cls] for o in clip.scene.objects}
    rng = np.random.default_rng([SEED, clip.index])
    picked: list[Question] = []
    for q in [clip.question, *scene_questions(rng, clip.scene, names, 60)]:
        named = {v for v in q.values if v in names}
        if named <= present and q.qtype not in {p.qtype for p in picked}:
            picked.append(q)
        if len(picked) == k:
            break
    return picked


def find_examples(config: SynthConfig, wanted: tuple[Wanted, ...] = WANTED, limit: int = 2000) -> list[Clip]:
    """The first test clip of ``SEED`` satisfying each predicate, each clip used once."""
    found: list[Clip] = []
    used: set[int] = set()
    for want in wanted:
        for index in range(limit):
            if index in used:
                continue
            clip = make_clip(SEED, index, config, SPLIT)
            if want.test(clip.scene):
                found.append(clip)
                used.add(index)
                break
        else:
            raise RuntimeError(f"no clip among {limit} fits example {want.stem!r}")
    return found


def write_examples(out: str | Path, size: int = 224, fps: int = 12) -> Path:
    """Render the examples as mp4 (H.264 + AAC) with ``examples.json`` beside them; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = SynthConfig(num_segments=10, num_classes=NUM_MUSIC_CLASSES, world="music")
    entries = []
    for want, clip in zip(WANTED, find_examples(config), strict=True):
        scene = clip.scene
        frames = render_frames(scene, video_times(scene.num_segments, fps), size)
        write_video(out / f"{want.stem}.mp4", frames, fps, render_audio(scene, config.sample_rate),
                    config.sample_rate)
        entries.append({
            "file": f"{want.stem}.mp4", "title": want.title, "caption": describe(scene), "world": "music",
            "source": {"seed": SEED, "split": SPLIT, "index": clip.index},
            "questions": [{"question": q.text, "answer": q.answer, "type": q.qtype}
                          for q in suggested_questions(clip)],
        })
    manifest = out / MANIFEST
    manifest.write_text(json.dumps({"examples": entries}, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stgcma.data.synthav.examples", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="assets/examples", help="folder for the clips and examples.json")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--fps", type=int, default=12, help="video frame rate")
    args = parser.parse_args(argv)
    print(write_examples(args.out, args.size, args.fps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
