"""SynthAV as a torch Dataset: clips generated on the fly, served as tensors, never touching disk.

Frames are rendered at the centre of every one-second segment (where :mod:`stgcma.media.decode`
picks them from a video) directly at ``preprocess.image_size``, and go through the same
:func:`~stgcma.media.features.frames_to_tensor` / :func:`~stgcma.media.features.segment_fbanks` as
real data, so a model sees the same thing here and on the written mp4 files.
"""

from __future__ import annotations

import numpy as np
import torch

from stgcma.config import PreprocessConfig
from stgcma.data.base import AVS_CLASS_NAMES, AVDataset, check_task
from stgcma.data.synthav.audio import render_audio
from stgcma.data.synthav.clip import Clip, answers, clip_rng, make_clip, split_id
from stgcma.data.synthav.questions import QTYPES, Question, question_vocabulary, scene_questions
from stgcma.data.synthav.render import render_class_maps, render_frames, render_masks, segment_times
from stgcma.data.synthav.scene import GAINS, Mode, SynthConfig
from stgcma.data.synthav.styles import class_names, class_styles, question_names
from stgcma.data.vocab import Vocab
from stgcma.media.features import frames_to_tensor, segment_fbanks


class SynthAV(AVDataset):
    """``n`` SynthAV clips of one (seed, split) world for one task.

    Args:
        seed: world seed; clip ``i`` depends only on (seed, split, i) and the world settings.
        n: number of clips.
        task: ``"ave"``, ``"avs"`` or ``"avqa"``.
        preprocess: tensor preprocessing (image size, fbank settings, ``num_segments``).
        mode: ``"ms3"`` (multi-source world) or ``"s4"`` (exactly one sounding object).
        split: ``"train"``, ``"val"`` or ``"test"`` (independent clips for the same seed).
        segments: T; defaults to ``preprocess.num_segments``.
        classes: number of object classes K (AVE has K + 1 labels with background); default: the
            world's (14 music, 8 shapes).
        size: render side in pixels before preprocessing; defaults to ``preprocess.image_size``.
        fresh: training on endless data: clip ``i`` of epoch ``e`` (1-based) is clip ``(e - 1) * n + i``
            of the world, so no clip is seen twice (:meth:`epoch_offset`, used by the trainer's sampler).
        question_vocab: vocabulary to encode questions with (e.g. a checkpoint's); default: every
            word SynthAV questions can contain.
        questions: AVQA questions per clip. 1 (default): the clip's own answer-balanced question,
            item ``question`` (L,), ``answer`` scalar, ``qtype`` str. Q > 1: that question then Q - 1
            more about the same scene (:func:`scene_questions`), stacked: ``question`` (Q, L),
            ``answer`` (Q,), ``qtype`` list of Q str; one encoder pass then serves Q questions. AVQA
            items also carry ``class_map``, uint8 (T, S, S): what class each pixel of each segment's
            frame shows (0 backdrop, 1 + k class k), the supervision of the head's layout map
            (``head.avqa_layout_classes``), and ``sound_level``, uint8 (T, K): how loud each class
            sounds in each segment (0 silent, 1 + its gain's index in ``GAINS``), the supervision of
            its heard loudness (``head.avqa_sound_levels``), and ``side_class``, int64 (3,): the class
            at the left, middle and right (-1 empty), the supervision of its side slots
            (``head.avqa_side_slots``).
        **world: further :class:`SynthConfig` fields (``distractor_prob``, ``max_objects``...).
    """

    def __init__(self, seed: int = 0, n: int = 1000, task: str = "ave",
                 preprocess: PreprocessConfig | None = None, mode: Mode = "ms3", split: str = "train",
                 segments: int | None = None, classes: int | None = None, size: int | None = None,
                 fresh: bool = False, question_vocab: Vocab | None = None, questions: int = 1,
                 **world: float | int) -> None:
        self.task = check_task(task)
        split_id(split)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if questions < 1:
            raise ValueError(f"questions must be >= 1, got {questions}")
        if questions > 1 and self.task != "avqa":
            raise ValueError(f"questions={questions} is an AVQA option; task is {self.task!r}")
        self.questions_per_clip = int(questions)
        self.seed, self.n, self.split = int(seed), int(n), split
        self.preprocess = preprocess or PreprocessConfig()
        self.num_segments = int(segments or self.preprocess.num_segments)
        self.config = SynthConfig(num_segments=self.num_segments, num_classes=classes, mode=mode,
                                  sample_rate=self.preprocess.sample_rate, **world)
        if self.preprocess.segment_seconds != 1.0:
            raise ValueError("SynthAV segments are one second long; set preprocess.segment_seconds=1.0")
        self.size = int(size or self.preprocess.image_size)
        self.fresh = bool(fresh)
        classes = self.config.num_classes  # the world's default when None was given
        self.styles = class_styles(classes)
        self.object_names = question_names(classes, self.config.world)
        self.answer_vocab = answers(self.config)
        self.question_vocab = question_vocab or question_vocabulary(self.object_names)
        self.question_types = list(QTYPES)
        self.sound_levels = len(GAINS)  # AVQA items' ``sound_level`` runs 0 (silent) .. this
        if self.task == "ave":
            self.class_names = [*class_names(classes, self.config.world), "background"]
        elif self.task == "avs":
            self.class_names = list(AVS_CLASS_NAMES)
        else:
            self.class_names = list(self.answer_vocab)

    def __len__(self) -> int:
        return self.n

    def clip(self, index: int) -> Clip:
        """The scene and question of clip ``index`` (no rendering)."""
        if index < 0 or (index >= self.n and not self.fresh):
            raise IndexError(f"clip index {index} out of range [0, {self.n})")
        return make_clip(self.seed, index, self.config, self.split)

    def frames(self, clip: Clip) -> np.ndarray:
        """uint8 (T, size, size, 3): one frame at the centre of each segment."""
        return render_frames(clip.scene, segment_times(self.num_segments), self.size, self.styles)

    def questions(self, clip: Clip) -> list[Question]:
        """The clip's own question, then ``questions_per_clip - 1`` more about its scene."""
        extra = self.questions_per_clip - 1
        if not extra:
            return [clip.question]
        rng = clip_rng(self.seed, self.split, clip.index, stream=2)
        return [clip.question, *scene_questions(rng, clip.scene, self.object_names, extra)]

    def epoch_offset(self, epoch: int) -> int:
        """First clip index of 1-based ``epoch``: ``(epoch - 1) * n`` when ``fresh``, else 0."""
        return max(epoch - 1, 0) * self.n if self.fresh else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        clip = self.clip(index)
        cfg = self.preprocess
        video = frames_to_tensor(self.frames(clip), cfg)  # (T, 3, S, S)
        wave = render_audio(clip.scene, cfg.sample_rate, self.styles)
        audio = segment_fbanks(wave, self.num_segments, cfg)  # (T, 1, F, M)
        item: dict[str, torch.Tensor | str] = {"video": video, "audio": audio, "id": clip.id}
        if self.task == "ave":
            item["label"] = torch.tensor(clip.scene.ave_labels(), dtype=torch.long)
        elif self.task == "avs":
            masks = render_masks(clip.scene, segment_times(self.num_segments), cfg.image_size, self.styles)
            item["mask"] = torch.from_numpy(masks.astype(np.float32))  # (T, S, S)
            item["mask_valid"] = torch.ones(self.num_segments, dtype=torch.bool)
        else:
            times = segment_times(self.num_segments)
            item["class_map"] = torch.from_numpy(render_class_maps(clip.scene, times, cfg.image_size, self.styles))
            item["sound_level"] = torch.from_numpy(clip.scene.sound_levels())  # (T, K) uint8
            item["side_class"] = torch.from_numpy(clip.scene.side_classes())  # (3,) int64, -1 empty
            qs = self.questions(clip)
            question = torch.stack([self.question_vocab.encode(q.text) for q in qs])  # (Q, L)
            answer = torch.tensor([self.answer_vocab.index(q.answer) for q in qs], dtype=torch.long)  # (Q,)
            if len(qs) == 1:
                item.update(question=question[0], answer=answer[0], qtype=qs[0].qtype)
            else:
                item.update(question=question, answer=answer, qtype=[q.qtype for q in qs])
        return item

