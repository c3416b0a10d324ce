"""SynthAV questions: the nine MUSIC-AVQA question types as templates over a scene, with balanced answers.

Templates use MUSIC-AVQA's placeholders (``<Object>``, ``<LR>``, ``<LRer>``, ``<FL>``, ``<TH>``,
``<BA>``, ``<LL>``) and a closed answer vocabulary (yes/no, number words, left/middle/right, class
names). Each template lists, for a scene, every way to fill its placeholders with the true answer.

Balance: for each clip a type, a template and a TARGET answer (uniform over the template's answer
set) are drawn first; scenes are then drawn until one admits a filling with that answer. So within a
template answers are uniform, and a model that ignores the clip cannot beat ``1 / |answers|`` of its
template by much (:func:`blind_baseline` measures it). If no scene fits within ``MAX_TRIES`` the first
scene with any valid filling is used instead. In s4 mode (one sounding object, always visible) many
audio-visual answers are impossible, so only ``S4_TRIES`` scenes are tried and answers are not balanced.

Facts: "heard" means sounding (visible or not, distractors included); "sounding in the video" means
visible and sounding in the same second; "comes in" is a source's first sounding second.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from stgcma.data.annotations import fill_placeholders
from stgcma.data.synthav.scene import Scene, SynthConfig, sample_scene
from stgcma.data.vocab import Vocab, tokenize
from stgcma.metrics import AVQA_TYPES

NUMBERS = ("zero", "one", "two", "three", "four", "five")
YES_NO = ("yes", "no")
SIDES = ("left", "middle", "right")
MAX_TRIES = 150
S4_TRIES = 10
REDRAWS = 8  # scene_questions: draws per question before a repeat is accepted
QTYPES = AVQA_TYPES  # the nine MUSIC-AVQA question types, in the metrics' order
SLOT_VALUES = {
    "<LR>": SIDES,
    "<LRer>": ("leftest", "rightest"),
    "<FL>": ("first", "last"),
    "<TH>": ("first", "second", "third"),
    "<BA>": ("before", "after"),
    "<LL>": ("loudest", "quietest"),
}

Candidates = list[tuple[tuple[str, ...], str]]


@dataclass(frozen=True)
class Question:
    """One templated question about a clip."""

    qtype: str
    template: str
    values: tuple[str, ...]
    answer: str

    @property
    def text(self) -> str:
        """The question with its placeholders filled."""
        return fill_placeholders(self.template, self.values)


def answer_vocabulary(names: list[str]) -> list[str]:
    """The closed answer set: yes/no, number words, sides, then class names."""
    return [*YES_NO, *NUMBERS, *SIDES, *names]


class Facts:
    """Per-object and per-source facts of a scene that the templates ask about."""

    def __init__(self, scene: Scene, names: list[str]) -> None:
        objs = scene.objects
        self.names = names
        self.n = len(objs)
        self.cls = [o.cls for o in objs]
        self.side = [SIDES[j] for j in scene.sides()]
        self.vis = np.array([o.visible for o in objs], dtype=bool)  # (n, T)
        self.snd = np.array([o.sounding for o in objs], dtype=bool)  # (n, T)
        self.av = self.vis & self.snd  # (n, T)
        self.gain = [o.gain for o in objs]
        self.count = Counter(self.cls)
        sources = scene.sources
        self.heard: dict[int, list[int]] = defaultdict(list)  # class -> source indices that sound
        self.onsets: list[tuple[int, int]] = []  # (onset, source index), sorted
        for k, src in enumerate(sources):
            if any(src.sounding):
                self.heard[src.cls].append(k)
                self.onsets.append((src.sounding.index(True), k))
        self.onsets.sort()
        self.source_cls = [s.cls for s in sources]
        self.source_gain = [s.gain for s in sources]
        self.source_len = [sum(s.sounding) for s in sources]

    def name(self, cls: int) -> str:
        return self.names[cls]

    def unique_objects(self) -> list[int]:
        """Objects whose class appears once on screen (so a class name points at one object)."""
        return [i for i in range(self.n) if self.count[self.cls[i]] == 1]

    def on_screen_at_onset(self, k: int) -> bool:
        """Source ``k`` is an object visible when it comes in."""
        if k >= self.n:
            return False
        return bool(self.vis[k, int(self.snd[k].argmax())])

    def ranked_source(self, rank: int) -> int | None:
        """The source that comes in ``rank``-th (0 = first), if its onset is not shared."""
        if rank >= len(self.onsets):
            return None
        onset, k = self.onsets[rank]
        if sum(1 for o, _ in self.onsets if o == onset) != 1:
            return None
        return k

    def last_source(self) -> int | None:
        """The source that comes in last, if its onset is not shared and there are two or more."""
        if len(self.onsets) < 2:
            return None
        return self.ranked_source(len(self.onsets) - 1)


def _num(k: int) -> str:
    return NUMBERS[k] if k < len(NUMBERS) else str(k)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# Audio ------------------------------------------------------------------------------------------

def _a_count_types(f: Facts) -> Candidates:
    return [((), _num(len(f.heard)))]


def _a_is_there(f: Facts) -> Candidates:
    return [((f.name(c),), _yes(c in f.heard)) for c in range(len(f.names))]


def _a_are_there(f: Facts) -> Candidates:
    return [((f.name(a), f.name(b)), _yes(a in f.heard and b in f.heard))
            for a, b in itertools.permutations(range(len(f.names)), 2)]


def _single_heard(f: Facts) -> dict[int, int]:
    """Heard classes with exactly one source -> that source."""
    return {c: ks[0] for c, ks in f.heard.items() if len(ks) == 1}


def _a_louder(f: Facts) -> Candidates:
    single = _single_heard(f)
    return [((f.name(a), f.name(b)), _yes(f.source_gain[ka] > f.source_gain[kb]))
            for (a, ka), (b, kb) in itertools.permutations(single.items(), 2)
            if f.source_gain[ka] != f.source_gain[kb]]


def _a_longer(f: Facts) -> Candidates:
    single = _single_heard(f)
    return [((f.name(a), f.name(b)), _yes(f.source_len[ka] > f.source_len[kb]))
            for (a, ka), (b, kb) in itertools.permutations(single.items(), 2)
            if f.source_len[ka] != f.source_len[kb]]


# Visual -----------------------------------------------------------------------------------------

def _v_how_many(f: Facts) -> Candidates:
    return [((f.name(c),), _num(f.count[c])) for c in range(len(f.names))]


def _v_count_types(f: Facts) -> Candidates:
    return [((), _num(len(f.count)))]


def _v_is_there(f: Facts) -> Candidates:
    return [((f.name(c),), _yes(c in f.count)) for c in range(len(f.names))]


def _v_are_there(f: Facts) -> Candidates:
    return [((f.name(a), f.name(b)), _yes(a in f.count and b in f.count))
            for a, b in itertools.permutations(range(len(f.names)), 2)]


def _v_neighbour(f: Facts) -> Candidates:
    out: Candidates = []
    for i in f.unique_objects():
        if i > 0:
            out.append((("left", f.name(f.cls[i])), f.name(f.cls[i - 1])))
        if i < f.n - 1:
            out.append((("right", f.name(f.cls[i])), f.name(f.cls[i + 1])))
    return out


def _v_extreme(f: Facts) -> Candidates:
    if f.n < 2:
        return []
    return [(("leftest",), f.name(f.cls[0])), (("rightest",), f.name(f.cls[-1]))]


def _v_where(f: Facts) -> Candidates:
    if f.n < 2:
        return []
    return [((f.name(f.cls[i]),), f.side[i]) for i in f.unique_objects()]


# Audio-visual -----------------------------------------------------------------------------------

def _e_always(f: Facts) -> Candidates:
    return [((f.name(f.cls[i]),), _yes(bool(f.snd[i].all()))) for i in f.unique_objects()]


def _e_from_video(f: Facts) -> Candidates:
    if not f.heard:
        return []
    offscreen = any(k >= f.n or bool((f.snd[k] & ~f.vis[k]).any()) for _, k in f.onsets)
    return [((), _yes(not offscreen))]


def _e_making_sound(f: Facts) -> Candidates:
    return [((f.name(c),), _yes(any(f.av[i].any() for i in range(f.n) if f.cls[i] == c)))
            for c in f.count]


def _c_sounding_of(f: Facts) -> Candidates:
    return [((f.name(c),), _num(sum(bool(f.av[i].any()) for i in range(f.n) if f.cls[i] == c)))
            for c in f.count]


def _c_silent(f: Facts) -> Candidates:
    return [((), _num(sum(not f.snd[i].any() for i in range(f.n))))]


def _c_sounding_types(f: Facts) -> Candidates:
    return [((), _num(len({f.cls[i] for i in range(f.n) if f.av[i].any()})))]


def _c_sounding(f: Facts) -> Candidates:
    return [((), _num(int(f.av.any(axis=1).sum())))]


def _l_first_last_from(f: Facts) -> Candidates:
    if f.n < 2:
        return []
    out: Candidates = []
    for word, k in (("first", f.ranked_source(0)), ("last", f.last_source())):
        if k is not None and f.on_screen_at_onset(k):
            out += [((word, side), _yes(side == f.side[k])) for side in f.side]
    return out


def _l_loudness_where(f: Facts) -> Candidates:
    sounding = [i for i in range(f.n) if f.av[i].any()]
    if f.n < 2 or len(sounding) < 2:
        return []
    out: Candidates = []
    gains = [f.gain[i] for i in sounding]
    for word, best in (("loudest", max(gains)), ("quietest", min(gains))):
        if gains.count(best) == 1:
            out.append(((word,), f.side[sounding[gains.index(best)]]))
    return out


def _l_same_time(f: Facts) -> Candidates:
    out: Candidates = []
    for i in f.unique_objects():
        if not f.av[i].any():
            continue
        partners = [j for j in range(f.n) if j != i and (f.av[i] & f.av[j]).any()]
        if len(partners) == 1 and f.cls[partners[0]] != f.cls[i]:
            out.append(((f.name(f.cls[i]),), f.name(f.cls[partners[0]])))
    return out


def _av_pairs(f: Facts, key: Callable[[int], float]) -> list[tuple[int, int, str]]:
    sounding = [i for i in range(f.n) if f.av[i].any()]
    return [(i, j, _yes(key(i) > key(j))) for i, j in itertools.permutations(sounding, 2) if key(i) != key(j)]


def _p_louder_sides(f: Facts) -> Candidates:
    return [((f.side[i], f.side[j]), ans) for i, j, ans in _av_pairs(f, lambda i: f.gain[i])]


def _p_louder_named(f: Facts) -> Candidates:
    return [((f.name(f.cls[i]), f.side[i], f.name(f.cls[j]), f.side[j]), ans)
            for i, j, ans in _av_pairs(f, lambda i: f.gain[i])]


def _p_longer_sides(f: Facts) -> Candidates:
    return [((f.side[i], f.side[j]), ans) for i, j, ans in _av_pairs(f, lambda i: float(f.av[i].sum()))]


def _t_comes_in(f: Facts) -> Candidates:
    out: Candidates = []
    for rank, word in enumerate(SLOT_VALUES["<TH>"]):
        k = f.ranked_source(rank)
        if k is not None and f.on_screen_at_onset(k):
            out.append(((word,), f.name(f.source_cls[k])))
    return out


def _t_where_first_last(f: Facts) -> Candidates:
    if f.n < 2:
        return []
    return [((word,), f.side[k]) for word, k in (("first", f.ranked_source(0)), ("last", f.last_source()))
            if k is not None and f.on_screen_at_onset(k)]


def _t_before_after(f: Facts) -> Candidates:
    out: Candidates = []
    onset = {k: o for o, k in f.onsets}
    for i in f.unique_objects():
        if i not in onset:
            continue
        for word, others in (("before", [k for k, o in onset.items() if o < onset[i]]),
                             ("after", [k for k, o in onset.items() if o > onset[i]])):
            if len(others) == 1 and f.on_screen_at_onset(others[0]) and f.source_cls[others[0]] != f.cls[i]:
                out.append(((word, f.name(f.cls[i])), f.name(f.source_cls[others[0]])))
    return out


@dataclass(frozen=True)
class Template:
    """A question template: its type, text, answer set kind and how to fill it from scene facts."""

    qtype: str
    text: str
    answers: str  # "yesno", "classes", "sides" or comma-separated number words
    candidates: Callable[[Facts], Candidates]

    def answer_set(self, names: list[str]) -> tuple[str, ...]:
        if self.answers == "yesno":
            return YES_NO
        if self.answers == "classes":
            return tuple(names)
        if self.answers == "sides":
            return SIDES
        return tuple(self.answers.split(","))


TEMPLATES: tuple[Template, ...] = (
    Template("Audio/Counting", "How many types of sounds were heard throughout the video?",
             "one,two,three", _a_count_types),
    Template("Audio/Counting", "Is there a <Object> sound?", "yesno", _a_is_there),
    Template("Audio/Counting", "Are there <Object> and <Object> sound?", "yesno", _a_are_there),
    Template("Audio/Comparative", "Is the <Object> louder than the <Object>?", "yesno", _a_louder),
    Template("Audio/Comparative", "Is the <Object> playing longer than the <Object>?", "yesno", _a_longer),
    Template("Visual/Counting", "How many <Object> are in the entire video?", "zero,one,two", _v_how_many),
    Template("Visual/Counting", "How many types of objects appeared in the entire video?",
             "one,two,three", _v_count_types),
    Template("Visual/Counting", "Is there a <Object> in the entire video?", "yesno", _v_is_there),
    Template("Visual/Counting", "Are there <Object> and <Object> in the video?", "yesno", _v_are_there),
    Template("Visual/Location", "What is the object on the <LR> of <Object>?", "classes", _v_neighbour),
    Template("Visual/Location", "What kind of object is the <LRer> object?", "classes", _v_extreme),
    Template("Visual/Location", "Where is the <Object>?", "sides", _v_where),
    Template("Audio-Visual/Existential", "Is the <Object> in the video always playing?", "yesno", _e_always),
    Template("Audio-Visual/Existential", "Is this sound from the object in the video?", "yesno",
             _e_from_video),
    Template("Audio-Visual/Existential", "Is the <Object> in the video making a sound?", "yesno",
             _e_making_sound),
    Template("Audio-Visual/Counting", "How many sounding <Object> in the video?", "zero,one,two",
             _c_sounding_of),
    Template("Audio-Visual/Counting", "How many objects in the video did not sound from beginning to end?",
             "zero,one,two", _c_silent),
    Template("Audio-Visual/Counting", "How many types of objects sound in the video?", "one,two,three",
             _c_sounding_types),
    Template("Audio-Visual/Counting", "How many objects are sounding in the video?", "one,two,three",
             _c_sounding),
    Template("Audio-Visual/Location", "Is the <FL> sound coming from the <LR> object?", "yesno",
             _l_first_last_from),
    Template("Audio-Visual/Location", "Where is the <LL> object?", "sides", _l_loudness_where),
    Template("Audio-Visual/Location", "Which is the object that sounds at the same time as the <Object>?",
             "classes", _l_same_time),
    Template("Audio-Visual/Comparative", "Is the object on the <LR> louder than the object on the <LR>?",
             "yesno", _p_louder_sides),
    Template("Audio-Visual/Comparative", "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
             "yesno", _p_louder_named),
    Template("Audio-Visual/Comparative",
             "Is the object on the <LR> playing longer than the object on the <LR>?", "yesno", _p_longer_sides),
    Template("Audio-Visual/Temporal", "What is the <TH> object that comes in?", "classes", _t_comes_in),
    Template("Audio-Visual/Temporal", "Where is the <FL> sounding object?", "sides", _t_where_first_last),
    Template("Audio-Visual/Temporal", "Which object makes sounds <BA> the <Object>?", "classes",
             _t_before_after),
)
TEMPLATES_BY_TYPE: dict[str, tuple[Template, ...]] = {
    q: tuple(t for t in TEMPLATES if t.qtype == q) for q in QTYPES
}


def question_vocabulary(names: list[str]) -> Vocab:
    """Every word any SynthAV question can contain (independent of the generated set)."""
    words = [w for t in TEMPLATES for w in tokenize(t.text) if not w.startswith("<")]
    values = [v for vs in SLOT_VALUES.values() for v in vs]
    return Vocab([*words, *values, *(n.lower() for n in names)])


def _pick(rng: np.random.Generator, items: list) -> object:
    return items[int(rng.integers(len(items)))]


def sample_scene_and_question(rng: np.random.Generator, cfg: SynthConfig,
                              names: list[str]) -> tuple[Scene, Question]:
    """Draw a question (type, template, target answer) first, then a scene that answers it."""
    qtype = QTYPES[int(rng.integers(len(QTYPES)))]
    first = _pick(rng, list(TEMPLATES_BY_TYPE[qtype]))
    order = [first, *(t for t in TEMPLATES_BY_TYPE[qtype] if t is not first),
             *(t for t in TEMPLATES if t.qtype != qtype)]
    tries = S4_TRIES if cfg.mode == "s4" else MAX_TRIES
    for template in order:
        support = template.answer_set(names)
        target = _pick(rng, list(support))
        fallback: tuple[Scene, Candidates] | None = None
        for _ in range(tries):
            scene = sample_scene(rng, cfg)
            cands = [c for c in template.candidates(Facts(scene, names)) if c[1] in support]
            hits = [c for c in cands if c[1] == target]
            if hits:
                values, answer = _pick(rng, hits)
                return scene, Question(template.qtype, template.text, values, answer)
            if cands and fallback is None:
                fallback = (scene, cands)
        if fallback is not None:
            scene, cands = fallback
            values, answer = _pick(rng, cands)
            return scene, Question(template.qtype, template.text, values, answer)
    raise RuntimeError("no SynthAV template could be filled")  # V3 always has candidates


def scene_questions(rng: np.random.Generator, scene: Scene, names: list[str], k: int) -> list[Question]:
    """``k`` more questions about a scene already drawn (training supervision; MUSIC-AVQA has about
    five questions per video).

    Per question: a type (uniform), one of its templates that the scene can fill, then an answer
    uniform over the answers THIS scene admits for that template, then a filling with that answer.
    Answers are as balanced as the scene allows, not as balanced as the clip's own question (whose
    scene was drawn to fit a target answer). A question already asked about the scene is drawn again
    (up to ``REDRAWS`` times): drawn independently, 16 questions held about 13 distinct ones.
    """
    facts = Facts(scene, names)
    fillable: dict[str, list[tuple[Template, dict[str, Candidates]]]] = defaultdict(list)
    for template in TEMPLATES:
        support = set(template.answer_set(names))
        by_answer: dict[str, Candidates] = defaultdict(list)
        for values, answer in template.candidates(facts):
            if answer in support:
                by_answer[answer].append((values, answer))
        if by_answer:
            fillable[template.qtype].append((template, dict(by_answer)))
    qtypes = [q for q in QTYPES if fillable[q]]
    out: list[Question] = []
    asked: set[tuple[str, tuple[str, ...]]] = set()
    for _ in range(k):
        for _ in range(REDRAWS):  # a question already asked about this scene is drawn again
            template, by_answer = _pick(rng, fillable[_pick(rng, qtypes)])
            values, answer = _pick(rng, by_answer[_pick(rng, sorted(by_answer))])
            if (template.text, values) not in asked:
                break
        asked.add((template.text, values))
        out.append(Question(template.qtype, template.text, values, answer))
    return out


def blind_baseline(questions: Iterable[Question], fit: Iterable[Question] | None = None
                   ) -> dict[str, dict[str, float]]:
    """Accuracy of answering without the clip: the majority answer per type, per (type, template),
    and per exact question text.

    Args:
        questions: the questions to score.
        fit: where majorities are counted (default: ``questions`` itself, which flatters the
            per-question baseline; pass a set drawn with another seed for an honest number).

    Returns:
        ``{qtype: {"n", "type", "template", "question", "chance"}, ..., "overall": {...}}``;
        ``chance`` is the mean over questions of ``1 / (distinct answers of its template in fit)``.
    """
    questions = list(questions)
    fit = questions if fit is None else list(fit)
    keys: dict[str, Callable[[Question], tuple]] = {
        "type": lambda q: (q.qtype,),
        "template": lambda q: (q.qtype, q.template),
        "question": lambda q: (q.qtype, q.template, q.values),
    }
    majority = {}
    for name, key in keys.items():
        counts: dict[tuple, Counter] = defaultdict(Counter)
        for q in fit:
            counts[key(q)][q.answer] += 1
        majority[name] = {k: c.most_common(1)[0][0] for k, c in counts.items()}
    template_answers: dict[tuple, set] = defaultdict(set)
    for q in fit:
        template_answers[(q.qtype, q.template)].add(q.answer)
    rows: dict[str, dict[str, float]] = {}
    groups = [(t, [q for q in questions if q.qtype == t]) for t in QTYPES] + [("overall", questions)]
    for label, items in groups:
        if not items:
            continue
        row = {"n": float(len(items))}
        for name, key in keys.items():
            row[name] = float(np.mean([majority[name].get(key(q)) == q.answer for q in items]))
        row["chance"] = float(np.mean([1 / max(1, len(template_answers[(q.qtype, q.template)])) for q in items]))
        rows[label] = row
    return rows
