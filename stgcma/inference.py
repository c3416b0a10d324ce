"""Inference API: analyse a clip once, then answer, explain and show attention without recomputing.

``Predictor.from_pretrained(SOURCE)`` loads one STG-CMA checkpoint per task (AVE, AVS, AVQA) from
the embedded default, a local folder or a Hugging Face Hub repo id. ``analyze(path)`` decodes the
video once and returns plain Python / numpy results; ``ask(question)`` answers AVQA questions about
the analysed clip. Work is cached by the file's content hash: a second question, another tab or
another viewer reuses the decoded media and the encoder features. Model calls are serialised with
a lock, so one Predictor can serve a multi-threaded UI.

Windows: a model trained on T segments runs over non-overlapping windows of T (the last padded by
repeating its final segment; see ``stgcma.media.segments``), so an N-second clip gets N answers.
AVQA looks at the whole clip at once: T segments sampled uniformly over it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stgcma.checkpoint import CONFIG_NAME, CheckpointError, file_sha256, load_model, resolve_source
from stgcma.heads import decode_ave
from stgcma.media import DecodedClip, MediaLimits, clip_inputs, decode_clip, windows
from stgcma.ood import STREAMS, capture, out_of_world_message, read_world_stats

TASKS = ("ave", "avs", "avqa")
EXPLANATIONS_PER_CLIP = 8


def available_devices() -> dict[str, Any]:
    """What this machine can run on: ``{"cuda": count, "names": [GPU names]}`` (count 0 without CUDA)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"cuda": count, "names": [torch.cuda.get_device_name(i) for i in range(count)]}


YES_NO = frozenset({"yes", "no"})
NUMBER_WORDS = frozenset({"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                          *(str(i) for i in range(11))})
PLACES = frozenset({"left", "middle", "right", "indoor", "outdoor"})
AUXILIARIES = frozenset({"is", "are", "was", "were", "does", "do", "did", "can", "could", "has", "have", "will"})


def answer_kind(question: str) -> str:
    """What a question admits: "yesno", "count", "place", "object", or "any" when its form says nothing.

    >>> [answer_kind(q) for q in ("Is the violin playing?", "How many drums?", "Where is the flute?",
    ...                           "Which object sounds first?", "Play it again")]
    ['yesno', 'count', 'place', 'object', 'any']
    """
    from stgcma.data.vocab import tokenize

    words = tokenize(question)
    if not words:
        return "any"
    if words[:2] == ["how", "many"]:
        return "count"
    if words[0] == "where":
        return "place"
    if words[0] in ("which", "what", "who"):
        return "object"
    if words[0] in AUXILIARIES:
        return "yesno"
    return "any"


def answer_mask(question: str, answers: list[str]) -> np.ndarray:
    """(A,) bool: the answers of the question's kind (``answer_kind``); every answer when none fits.

    Objects are the answers that are none of yes/no, numbers and places, so a counting question is
    never answered "left" and a "which" question never "yes". "Which <object> ..." (MUSIC-AVQA's
    "Which clarinet makes the sound first?") picks one of several objects of a class by its place.
    """
    from stgcma.data.vocab import tokenize

    kind = answer_kind(question)
    words = np.array([a.lower() for a in answers])
    yes_no, number, place = (np.isin(words, list(s)) for s in (YES_NO, NUMBER_WORDS, PLACES))
    objects = ~(yes_no | number | place)
    if kind == "object" and tokenize(question)[1:2] and tokenize(question)[1] in set(words[objects]):
        objects = objects | place
    mask = {"yesno": yes_no, "count": number, "place": place, "object": objects}.get(kind, np.ones(len(answers), bool))
    return mask if mask.any() else np.ones(len(answers), bool)


@dataclass
class ClipState:
    """Everything computed for one clip: decoded media, model inputs and encoder features per task."""

    key: str
    path: str
    clip: DecodedClip
    inputs: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    explanations: OrderedDict[tuple, Any] = field(default_factory=OrderedDict)


@dataclass
class Analysis:
    """What ``analyze`` returns; ``to_dict()`` is JSON-ready (arrays become lists).

    ``world``: how far the clip lies from the checkpoints' training world (``Predictor.world``);
    ``to_dict`` puts ``out_of_world`` (true, false, or null for checkpoints without statistics),
    ``ood_distance`` and ``ood_threshold`` at the top level and the details under ``ood``.
    """

    key: str
    facts: dict[str, Any]
    warnings: list[str]
    ave: dict[str, Any] | None
    avs: dict[str, Any] | None
    timings: dict[str, float]
    world: dict[str, Any] | None = None

    def to_dict(self, include_masks: bool = False) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return value.tolist()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items() if include_masks or k not in ("masks", "binary")}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, (np.floating, np.integer)):
                return value.item()
            return value

        world = self.world or {}
        return plain({"key": self.key, "facts": self.facts, "warnings": self.warnings,
                      "out_of_world": world.get("out_of_world"), "ood_distance": world.get("distance"),
                      "ood_threshold": world.get("threshold"), "ood": world, "ave": self.ave,
                      "avs": self.avs, "timings": self.timings})


class Predictor:
    """Checkpoints in, numpy/dict answers out, with a per-clip cache."""

    def __init__(self, models: dict[str, tuple[torch.nn.Module, dict[str, Any]]], device: str = "cpu",
                 limits: MediaLimits | None = None, cache_size: int = 4, max_windows_per_batch: int = 4) -> None:
        if not models:
            raise ValueError("a Predictor needs at least one task model")
        self.models = {task: model.to(device).eval() for task, (model, _) in models.items()}
        self.meta = {task: meta for task, (_, meta) in models.items()}
        self.device = torch.device(device)
        self.limits = limits or MediaLimits()
        self.cache_size = cache_size
        self.max_windows = max_windows_per_batch
        self._cache: OrderedDict[str, ClipState] = OrderedDict()
        self._lock = threading.RLock()
        self.last_key: str | None = None
        self.sample_rate = next(iter(self.models.values())).config.preprocess.sample_rate
        # per task: (statistics of its training world from its checkpoint folder, or None and why not)
        self.world_stats = {task: read_world_stats(meta.get("source")) for task, meta in self.meta.items()}

    @classmethod
    def from_pretrained(cls, source: str | Path = "default", tasks: tuple[str, ...] | None = None,
                        device: str = "cpu", **kwargs: Any) -> Predictor:
        """Load every available task checkpoint of ``source``.

        ``source``: ``"default"``, a folder holding ``ave/``, ``avs/``, ``avqa/`` checkpoint folders,
        a single checkpoint folder, or a Hub repo id laid out either way.
        """
        models: dict[str, tuple[torch.nn.Module, dict[str, Any]]] = {}
        try:
            single = resolve_source(source)
        except CheckpointError:
            single = None
        if single is not None and (single / CONFIG_NAME).exists():
            model, meta = load_model(single, device=device)
            models[model.config.head.task] = (model, meta)
            return cls(models, device=device, **kwargs)
        problems = []
        for task in tasks or TASKS:
            try:
                models[task] = load_model(source, task=task, device=device)
            except CheckpointError as err:
                if tasks is not None:
                    raise
                problems.append(str(err))
        if not models:
            raise CheckpointError(f"no task checkpoint found in {str(source)!r}: {problems[0]}")
        return cls(models, device=device, **kwargs)

    def with_checkpoint(self, source: str | Path) -> Predictor:
        """A new Predictor in which the single checkpoint at ``source`` replaces (or adds) its task.

        The other tasks keep their models; e.g. the app's "load into demo" after fine-tuning AVE.
        """
        model, meta = load_model(source, device=self.device)
        models = {task: (self.models[task], self.meta[task]) for task in self.tasks}
        models[model.config.head.task] = (model, meta)
        return Predictor(models, device=str(self.device), limits=self.limits, cache_size=self.cache_size,
                         max_windows_per_batch=self.max_windows)

    def with_tasks_of(self, other: Predictor) -> Predictor:
        """A new Predictor in which every task of ``other`` replaces (or adds) this one's; the rest are kept.

        E.g. the app's model picker: a one-task checkpoint goes over the app's model, a three-task one
        replaces it. No model is reloaded.
        """
        models = {task: (self.models[task], self.meta[task]) for task in self.tasks}
        models.update({task: (other.models[task], other.meta[task]) for task in other.tasks})
        return Predictor(models, device=str(self.device), limits=self.limits, cache_size=self.cache_size,
                         max_windows_per_batch=self.max_windows)

    def describe(self, task: str) -> dict[str, Any]:
        """The model card facts of ``task``'s model (plain data, see :func:`stgcma.hub.checkpoint_facts`), with
        the trainable and total parameters of the loaded model."""
        from stgcma.hub import checkpoint_facts

        source = self.meta[task].get("source")
        if not source:
            raise ValueError(f"the {task} model was not loaded from a checkpoint folder: nothing to describe")
        counts = self.models[task].parameter_counts()
        return checkpoint_facts(source, trainable_params=counts["trainable"], total_params=counts["total"])

    @property
    def tasks(self) -> list[str]:
        return list(self.models)

    # ------------------------------------------------------------------------------------------
    # Clip cache

    def load(self, path: str | Path, progress: Any = None) -> ClipState:
        """Decode ``path`` (or reuse the cached decode of identical content)."""
        path = str(path)
        key = file_sha256(Path(path)) if Path(path).is_file() else path
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.last_key = key
                return self._cache[key]
        start = time.perf_counter()
        clip = decode_clip(path, sample_rate=self.sample_rate, limits=self.limits, progress=progress)
        state = ClipState(key, path, clip)
        state.timings["decode"] = time.perf_counter() - start
        with self._lock:
            self._cache[key] = state
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            self.last_key = key
        return state

    def _inputs(self, state: ClipState, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.models[task].config.preprocess
        pkey = repr(pre)
        if pkey not in state.inputs:
            state.inputs[pkey] = clip_inputs(state.clip, pre)
        inputs = state.inputs[pkey]
        return inputs.video, inputs.audio

    def _state(self, key: str | None) -> ClipState:
        key = key or self.last_key
        if key is None or key not in self._cache:
            raise ValueError("no clip analysed yet: call analyze(path) first")
        return self._cache[key]

    # ------------------------------------------------------------------------------------------
    # Tasks

    def _run_windows(self, task: str, state: ClipState) -> torch.Tensor:
        """Per-segment outputs of a windowed task: (N, ...) logits."""
        model = self.models[task]
        video, audio = self._inputs(state, task)
        plan = windows(video.shape[0], model.config.num_frames)
        wv, wa = plan.gather(video), plan.gather(audio)  # (W, T, ...)
        outs = []
        with torch.no_grad(), self._world_capture(task) as records:
            for i in range(0, plan.num_windows, self.max_windows):
                v = wv[i:i + self.max_windows].to(self.device)
                a = wa[i:i + self.max_windows].to(self.device)
                outs.append(model(v, a)["logits"].float().cpu())
        if records is not None:  # segment vectors of the real segments: (N, 2D) per stream
            state.features[f"world:{task}"] = {s: plan.scatter(torch.cat([r[s] for r in records]).reshape(
                *plan.index.shape, -1)).numpy() for s in STREAMS}
        return plan.scatter(torch.cat(outs))  # (N, ...)

    def _world_capture(self, task: str):
        stats = self.world_stats[task][0]
        return capture(self.models[task], stats.block) if stats is not None else nullcontext()

    def world(self, key: str | None = None) -> dict[str, Any]:
        """How far the analysed clip lies from the training world of each checkpoint that ran on it.

        Returns ``{"out_of_world": bool | None, "distance", "threshold", "world", "task", "stream",
        "message", "tasks": {task: per-task verdict}}``; the top-level distance and threshold are
        those of the task and stream furthest beyond (or nearest to) its threshold (see
        ``stgcma.ood``). ``out_of_world`` is None, with a ``note``, when no checkpoint carries statistics.
        """
        state = self._state(key)
        verdicts = {task: stats.verdict(state.features[f"world:{task}"])
                    for task, (stats, _) in self.world_stats.items()
                    if stats is not None and f"world:{task}" in state.features}
        if not verdicts:
            notes = [note for task, (_, note) in self.world_stats.items() if note]
            return {"out_of_world": None, "distance": None, "threshold": None, "note": notes[0] if notes else None,
                    "tasks": {}}
        task = max(verdicts, key=lambda t: verdicts[t]["distance"] / verdicts[t]["threshold"])
        top = verdicts[task]
        out = any(v["out_of_world"] for v in verdicts.values())
        return {"out_of_world": out, "distance": top["distance"], "threshold": top["threshold"],
                "world": top["world"], "task": task, "stream": top["stream"],
                "message": out_of_world_message(top["world"]) if out else None, "tasks": verdicts}

    def _warnings(self, state: ClipState, world: dict[str, Any] | None = None) -> list[str]:
        """The clip's media warnings, led by the out-of-world message when it applies."""
        world = world if world is not None else self.world(state.key)
        return ([world["message"]] if world.get("out_of_world") else []) + list(state.clip.warnings)

    def _ave(self, state: ClipState) -> dict[str, Any]:
        logits = self._run_windows("ave", state)  # (N, C)
        config = self.models["ave"].config
        # decoded per clip of the model's length (10 s at one segment per second), as the model was trained
        ids = torch.cat([decode_ave(chunk, config.head.ave_decode)
                         for chunk in logits.split(config.num_frames)]).numpy()  # (N,)
        probs = torch.softmax(logits, -1).numpy()
        names = list(self.meta["ave"].get("class_names", [str(i) for i in range(probs.shape[1])]))
        return {"class_names": names, "probs": probs, "label_ids": ids, "labels": [names[i] for i in ids],
                "confidence": probs[np.arange(len(ids)), ids], "background_index": len(names) - 1,
                "decode": config.head.ave_decode}

    def _avs(self, state: ClipState) -> dict[str, Any]:
        logits = self._run_windows("avs", state)  # (N, 1, S, S)
        probs = torch.sigmoid(logits[:, 0]).numpy()  # (N, S, S)
        binary = probs > 0.5
        area = binary.mean(axis=(1, 2))
        pixels = binary.sum(axis=(1, 2))
        score = np.where(pixels > 0, (probs * binary).sum(axis=(1, 2)) / np.maximum(pixels, 1), 0.0)
        return {"masks": probs, "binary": binary, "area": area, "score": score}

    def analyze(self, path: str | Path, tasks: tuple[str, ...] | None = None, progress: Any = None) -> Analysis:
        """Decode once and run the windowed tasks (AVE, AVS); AVQA features are prepared for ``ask``."""
        state = self.load(path, progress)
        wanted = [t for t in (tasks or self.tasks) if t in self.models]
        with self._lock:
            for task in wanted:
                if task in state.results or task == "avqa":
                    continue
                start = time.perf_counter()
                state.results[task] = self._ave(state) if task == "ave" else self._avs(state)
                state.timings[task] = time.perf_counter() - start
            if "avqa" in wanted:
                self._avqa_features(state)
            world = self.world(state.key)
        facts = state.clip.facts() if hasattr(state.clip, "facts") else {}
        return Analysis(state.key, facts, self._warnings(state, world), state.results.get("ave"),
                        state.results.get("avs"), dict(state.timings), world)

    def avqa_segments(self, num_segments: int) -> np.ndarray:
        """The T segment indices AVQA looks at: uniform over the clip (repeats when it is shorter)."""
        T = self.models["avqa"].config.num_frames
        return np.linspace(0, num_segments - 1, T).round().astype(int)

    def _avqa_features(self, state: ClipState) -> dict[str, Any]:
        if "avqa" not in state.features:
            start = time.perf_counter()
            model = self.models["avqa"]
            video, audio = self._inputs(state, "avqa")
            idx = torch.as_tensor(self.avqa_segments(video.shape[0]))
            with torch.no_grad(), self._world_capture("avqa") as records:
                state.features["avqa"] = model.forward_features(video[idx][None].to(self.device),
                                                                audio[idx][None].to(self.device))
            if records is not None:
                state.features["world:avqa"] = {s: records[0][s].numpy() for s in STREAMS}  # (T, 2D)
            state.timings["avqa_features"] = time.perf_counter() - start
        return state.features["avqa"]

    def question_vocab(self):
        from stgcma.data.vocab import Vocab

        meta = self.meta["avqa"]
        return Vocab(meta["question_vocab"][2:], meta.get("question_max_len", 14))

    def ask(self, question: str, key: str | None = None, top_k: int = 3) -> dict[str, Any]:
        """Answer an AVQA question about the analysed clip (the last one, or ``key``).

        Only answers of the kind the question admits are considered (``answer_mask``: yes/no for
        "Is ...?", numbers for "How many ...?", places for "Where ...?", objects for "Which/What ...?"),
        their probabilities renormalised among themselves. Returns ``{"answer", "probability",
        "alternatives": [(answer, p), ...], "kind", "unknown_words", "warnings"}``; the encoder features
        of the clip are computed once and reused.
        """
        if "avqa" not in self.models:
            raise ValueError("this predictor has no AVQA model")
        question = question.strip()
        if not question:
            raise ValueError("ask a question, e.g. 'Is the red circle making a sound?'")
        with self._lock:
            state = self._state(key)
            feats = self._avqa_features(state)
            vocab = self.question_vocab()
            model = self.models["avqa"]
            q = vocab.encode(question)[None].to(self.device)
            with torch.no_grad():
                logits = model.forward_head(feats, question=q)["logits"][0].float().cpu()
        answers = self.meta["avqa"]["answer_vocab"]
        allowed = torch.as_tensor(answer_mask(question, answers))
        probs = torch.softmax(logits.masked_fill(~allowed, -torch.inf), -1)  # only answers of the question's kind
        top = torch.topk(probs, min(top_k + 1, int(allowed.sum())))
        ranked = [(answers[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        unknown = vocab.unknown_words(question)
        warnings = self._warnings(state)
        if unknown:
            warnings.append(f"words the model never saw in training: {', '.join(unknown)}; the answer may be a guess")
        return {"question": question, "answer": ranked[0][0], "probability": ranked[0][1],
                "alternatives": ranked[1:], "kind": answer_kind(question), "unknown_words": unknown,
                "warnings": warnings}

    # ------------------------------------------------------------------------------------------
    # Inputs for viewers

    def window_inputs(self, task: str, second: int, key: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The (1, T, ...) model inputs of the window holding ``second``, and its position in that window."""
        state = self._state(key)
        if task == "avqa":
            video, audio = self._inputs(state, task)
            idx = torch.as_tensor(self.avqa_segments(video.shape[0]))
            pos = int(np.abs(idx.numpy() - second).argmin())
            return video[idx][None], audio[idx][None], pos
        video, audio = self._inputs(state, task)
        T = self.models[task].config.num_frames
        if not 0 <= second < video.shape[0]:
            raise ValueError(f"second {second} is outside the clip (0..{video.shape[0] - 1})")
        plan = windows(video.shape[0], T)
        w = second // T
        return plan.gather(video)[w:w + 1], plan.gather(audio)[w:w + 1], second - w * T

    # ------------------------------------------------------------------------------------------
    # Explanations for the viewers: numpy in the shape of the clip's frame and spectrogram

    def _explain_setup(self, task: str, second: int, key: str | None,
                       question: str | None) -> tuple[ClipState, torch.Tensor, torch.Tensor, int, int, dict[str, Any]]:
        """Window inputs of ``second`` for ``task``: (state, video, audio, position, shown second, task inputs)."""
        if task not in self.models:
            raise ValueError(f"no {task.upper()} model is loaded (loaded: {', '.join(self.tasks)})")
        state = self._state(key)
        count = state.clip.num_segments
        if not 0 <= second < count:
            raise ValueError(f"second {second} is outside the clip (0..{count - 1})")
        video, audio, pos = self.window_inputs(task, second, state.key)
        shown = int(self.avqa_segments(count)[pos]) if task == "avqa" else second
        task_inputs: dict[str, Any] = {}
        if task == "avqa":
            if not (question or "").strip():
                raise ValueError("AVQA explanations need a question, e.g. 'How many objects are sounding?'")
            task_inputs["question"] = self.question_vocab().encode(question.strip())  # (L,)
        return state, video, audio, pos, shown, task_inputs

    def _segment_view(self, state: ClipState, task: str, second: int) -> dict[str, Any]:
        """The upright frame (h, w, 3) uint8 and the model's normalised fbank (F, M) of one second."""
        _, audio = self._inputs(state, task)
        return {"second": second, "frame": state.clip.frames[second], "spectrogram": audio[second, 0].numpy()}

    def _remember(self, state: ClipState, key: tuple, compute: Any) -> Any:
        if key not in state.explanations:
            state.explanations[key] = compute()
            while len(state.explanations) > EXPLANATIONS_PER_CLIP:
                state.explanations.popitem(last=False)
        state.explanations.move_to_end(key)
        return state.explanations[key]

    def attention(self, second: int, task: str = "ave", block: int | str = "aggregate", stage: str = "spatial",
                  key: str | None = None, question: str | None = None, weighting: str = "gate") -> dict[str, Any]:
        """Cross-modal attention at ``second`` of the analysed clip (both directions of one block and stage).

        Returns ``{"second", "frame" (h, w, 3) uint8, "spectrogram" (F, M), "frame_heat" (S, S) in [0, 1]
        (audio queries -> frame, "a<-v"), "spectrogram_heat" (F, M) in [0, 1] (video queries -> fbank,
        "v<-a"), "weights" and "cls_mass" per direction, "blocks", "stages"}``. The maps of a window are
        computed once and reused for every block, stage and second inside it.
        """
        from stgcma.explain import DIRECTIONS, attention_maps

        with self._lock:
            state, video, audio, pos, shown, task_inputs = self._explain_setup(task, second, key, question)
            window = 0 if task == "avqa" else second // self.models[task].config.num_frames
            maps = self._remember(state, ("attention", task, window, question, weighting),
                                  lambda: attention_maps(self.models[task], video, audio, weighting, **task_inputs))
            picked = {}
            for direction in DIRECTIONS:
                try:
                    picked[direction] = maps.select(block, stage, direction)
                except KeyError as err:
                    raise ValueError(err.args[0]) from None
        view = self._segment_view(state, task, shown)
        return {**view, "frame_heat": picked["a<-v"].heatmap[pos], "spectrogram_heat": picked["v<-a"].heatmap[pos],
                "weights": {d: m.weight for d, m in picked.items()},
                "cls_mass": {d: float(m.cls_mass[pos]) for d, m in picked.items()},
                "blocks": list(maps.blocks), "stages": sorted({s for _, s, _ in maps.maps})}

    def attribute(self, second: int, task: str = "ave", method: str = "ig", target: int | None = None,
                  question: str | None = None, key: str | None = None, n_steps: int = 16,
                  occlusion_scale: int = 1) -> dict[str, Any]:
        """Captum attribution of one prediction at ``second`` to the frames and the spectrogram.

        ``target``: the AVE class or AVQA answer index to explain (default: the predicted one); AVS
        explains the mask of the frame at ``second``. ``n_steps``: IG integration steps;
        ``occlusion_scale``: Occlusion windows of that many final tokens per side (2: 4x faster, coarser).
        Returns ``{"second", "frame", "spectrogram",
        "frame_heat" (S, S) and "spectrogram_heat" (F, M) (|attribution| scaled to [0, 1] per map),
        "audio_share", "visual_share" (whole window), "segment_audio_share" (this second),
        "target_label", "description", "output", "baseline_output", "delta", "method"}``.
        """
        from stgcma.explain import Target, attribute, normalize_per_segment
        from stgcma.explain.common import block_layouts

        with self._lock:
            state, video, audio, pos, shown, task_inputs = self._explain_setup(task, second, key, question)
            if task == "ave":
                names = self.meta["ave"].get("class_names", [])
                if target is None:
                    result = state.results.get("ave") or self._ave(state)
                    target = int(result["label_ids"][second])
                goal, label = Target.ave(pos, target), names[target] if target < len(names) else str(target)
            elif task == "avs":
                goal, label = Target.avs(pos), f"sounding-object mask at second {shown}"
            else:
                answers = self.meta["avqa"]["answer_vocab"]
                if target is None:
                    target = answers.index(self.ask(question or "", state.key)["answer"])
                goal, label = Target.avqa(target), answers[target]
            model = self.models[task]
            window = 0 if task == "avqa" else second // model.config.num_frames
            side = block_layouts(model.encoder)[-1].stride * max(1, occlusion_scale)
            attr = self._remember(
                state, ("attribution", task, window, goal, method, question, n_steps, side),
                lambda: attribute(model, video, audio, goal, method, n_steps=n_steps, window=side,
                                  audio_window=(side, side), **task_inputs))
        view = self._segment_view(state, task, shown)
        return {**view, "frame_heat": normalize_per_segment(attr.video)[pos],
                "spectrogram_heat": normalize_per_segment(attr.audio)[pos],
                "audio_share": attr.audio_share, "visual_share": attr.visual_share,
                "segment_audio_share": float(attr.audio_share_per_segment[pos]), "target_label": label,
                "description": attr.description, "output": attr.output, "baseline_output": attr.baseline_output,
                "delta": attr.delta, "method": method}
