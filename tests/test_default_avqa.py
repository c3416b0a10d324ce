"""The shipped AVQA default answers from the clip, not from the question alone.

On fresh SynthAV Music test clips: giving each clip another clip's frames changes many answers to
visual questions, giving it another clip's soundtrack changes many answers to audio questions, and
playing the clip backwards (both streams, segment order reversed) changes the answers to temporal
questions whose true answer changes, and not those whose truth stays. Mirroring the frames left to
right turns many "left" answers into "right" and back (since the layout map of 2026-12-06). A head
that read only the question, pooled the segments without knowing their order, or pooled the frame
without knowing where things stand would change none, or could not be right both ways."""

import pytest
import torch

from stgcma.checkpoint import DEFAULT_DIR, load_model
from stgcma.data.spec import build_dataset
from stgcma.data.synthav.bounds import avqa_oracle
from stgcma.data.synthav.questions import TEMPLATES_BY_TYPE, Facts, Question
from stgcma.train.loop import _collate

pytestmark = pytest.mark.skipif(not (DEFAULT_DIR / "avqa").is_dir(), reason="no embedded AVQA default")
N = 96


@pytest.fixture(scope="module")
def model_and_batch():
    torch.set_num_threads(2)
    model, meta = load_model(DEFAULT_DIR / "avqa")
    model.eval()
    from stgcma.data.vocab import Vocab

    vocab = Vocab(meta["question_vocab"][2:], meta["question_max_len"])  # stored with <pad>, <unk> first
    data = build_dataset(f"synthav:seed=301,n={N},world=music,classes=14,questions=8", "avqa", "test",
                         model.config.preprocess, question_vocab=vocab)
    assert list(data.answer_vocab) == list(meta["answer_vocab"])
    batch = _collate("avqa")([data[i] for i in range(N)])
    batch["answer_vocab"] = list(data.answer_vocab)
    batch["scenes"] = [data.clip(i).scene for i in range(N)]
    batch["vocab"], batch["names"] = vocab, data.object_names
    return model, batch


def _answers(model, video, audio, question):
    out = []
    with torch.no_grad():
        for start in range(0, len(video), 16):
            part = slice(start, start + 16)
            out.append(model(video[part], audio[part], question=question[part])["logits"].argmax(-1))
    return torch.cat(out)  # (N, Q)


def _share_changed(before, after, qtypes, prefix):
    mask = torch.tensor([[q.startswith(prefix) for q in row] for row in qtypes])
    assert mask.sum() >= 40, "too few questions of this kind to measure"
    return float((before != after)[mask].float().mean())


def test_other_clips_video_changes_answers_to_visual_questions(model_and_batch):
    model, batch = model_and_batch
    own = _answers(model, batch["video"], batch["audio"], batch["question"])
    swapped = _answers(model, batch["video"].roll(1, dims=0), batch["audio"], batch["question"])
    assert _share_changed(own, swapped, batch["qtype"], "Visual/") > 0.2


def test_other_clips_audio_changes_answers_to_audio_questions(model_and_batch):
    model, batch = model_and_batch
    own = _answers(model, batch["video"], batch["audio"], batch["question"])
    swapped = _answers(model, batch["video"], batch["audio"].roll(1, dims=0), batch["question"])
    assert _share_changed(own, swapped, batch["qtype"], "Audio/") > 0.2


def _temporal_questions(scene, names):
    """Every temporal question of ``scene`` that has one answer backwards too (``avqa_oracle`` of the
    reversed scene): (text, answer, answer of the reversed scene)."""
    facts, backwards = Facts(scene, names), scene.reversed()
    out = []
    for template in TEMPLATES_BY_TYPE["Audio-Visual/Temporal"]:
        for values, answer in template.candidates(facts):
            question = Question(template.qtype, template.text, values, answer)
            answer_backwards = avqa_oracle(question, backwards, names)
            if answer_backwards is not None:
                out.append((question.text, answer, answer_backwards))
    return out


def test_reversed_segment_order_changes_the_temporal_answers_whose_truth_changes(model_and_batch):
    """Every temporal question each fixture scene can ask, asked of the clip and of the clip played
    backwards, scored against the scene's answers and the reversed scene's (``Scene.reversed``).

    Only some temporal answers change backwards (about a fifth of the sampled ones; many have no
    answer backwards, e.g. when two sounds then start together), so the share of answers that change
    says little by itself. Calibrated instead: on questions whose true answer changes, a head blind to
    the segment order gives one answer both ways, so it is right at most once (forwards + backwards
    <= 1); and the answers it changes must be those whose truth changes, not noise over all of them."""
    model, batch = model_and_batch
    asked = [_temporal_questions(scene, batch["names"]) for scene in batch["scenes"]]
    width = max(len(rows) for rows in asked)
    question = batch["question"][:, :1].repeat(1, width, 1)  # (N, width, L), spare rows ignored
    for i, rows in enumerate(asked):
        for j, (text, _, _) in enumerate(rows):
            question[i, j] = batch["vocab"].encode(text)
    own = _answers(model, batch["video"], batch["audio"], question)
    backwards = _answers(model, batch["video"].flip(1), batch["audio"].flip(1), question)
    vocab = batch["answer_vocab"]
    tally = {True: [], False: []}  # truth changes -> [(changed, right forwards, right backwards)]
    for i, rows in enumerate(asked):
        for j, (_, forwards_truth, backwards_truth) in enumerate(rows):
            tally[forwards_truth != backwards_truth].append(
                (int(own[i, j] != backwards[i, j]), int(vocab[own[i, j]] == forwards_truth),
                 int(vocab[backwards[i, j]] == backwards_truth)))
    assert len(tally[True]) >= 40 and len(tally[False]) >= 40, "too few temporal questions to measure"
    changing, staying = (torch.tensor(tally[k], dtype=torch.float).mean(0) for k in (True, False))
    assert changing[1] + changing[2] > 1.0  # an order-blind head: at most 1
    assert changing[0] > staying[0] + 0.15


def test_mirrored_frames_mirror_the_answers_to_where_questions(model_and_batch):
    """Where the model answers "left" or "right", the mirrored clip (the soundtrack is mono, so it still
    fits) gets the other side in many answers; a head blind to the layout gives the same side."""
    model, batch = model_and_batch
    left, right = (batch["answer_vocab"].index(side) for side in ("left", "right"))
    own = _answers(model, batch["video"], batch["audio"], batch["question"])
    sided = (own == left) | (own == right)
    assert sided.sum() >= 40, "too few answers that are a side to measure"
    mirrored = _answers(model, batch["video"].flip(-1), batch["audio"], batch["question"])
    other_side = torch.where(own == left, right, left)
    assert float((mirrored == other_side)[sided].float().mean()) > 0.3
