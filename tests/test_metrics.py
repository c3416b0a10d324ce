"""Task metrics (stgcma.metrics) against hand-worked cases and the AVSBench reference loops."""

from __future__ import annotations

import pytest
import torch

from stgcma.metrics import (
    AVQAAccuracy,
    AVSMetrics,
    ave_accuracy,
    avqa_accuracy,
    avs_fscore,
    avs_miou,
    mask_iou_per_frame,
    precision_recall_curves,
)


def reference_fscore(pred: torch.Tensor, gt: torch.Tensor, pr_num: int = 255) -> float:
    """AVSBench ``Eval_Fmeasure`` (probabilities in, the reference's loop over thresholds)."""
    beta2, avg_f, img_num = 0.3, 0.0, 0
    score = torch.zeros(pr_num)
    for i in range(pred.shape[0]):
        if torch.mean(gt[i]) == 0.0:
            continue
        thlist = torch.linspace(0, 1 - 1e-10, pr_num)
        prec, recall = torch.zeros(pr_num), torch.zeros(pr_num)
        for j in range(pr_num):
            y_temp = (pred[i] >= thlist[j]).float()
            tp = (y_temp * gt[i]).sum()
            prec[j], recall[j] = tp / (y_temp.sum() + 1e-20), tp / (gt[i].sum() + 1e-20)
        f = (1 + beta2) * prec * recall / (beta2 * prec + recall)
        f[f != f] = 0
        avg_f += f
        img_num += 1
        score = avg_f / img_num
    return score.max().item()


def test_ave_accuracy_hand_case() -> None:
    pred = torch.tensor([[0, 1, 2], [2, 2, 2]])
    target = torch.tensor([[0, 1, 1], [2, 0, 2]])
    assert ave_accuracy(pred, target) == pytest.approx(4 / 6)
    logits = torch.nn.functional.one_hot(pred, 3).float()  # (N, T, C)
    assert ave_accuracy(logits, target) == pytest.approx(4 / 6)


def test_iou_hand_case_with_empty_ground_truth() -> None:
    pred = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]]]).float()
    gt = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]]).float()
    # frame 1: |P&G| = 1, |P|G| = 2; frame 2 (empty G): 3 of 4 pixels are 0 in both.
    assert mask_iou_per_frame(pred, gt).tolist() == pytest.approx([0.5, 0.75], abs=1e-6)
    assert avs_miou(pred, gt, from_logits=False) == pytest.approx(0.625, abs=1e-6)
    assert avs_miou(torch.zeros(1, 2, 2) - 5, torch.zeros(1, 2, 2)) == pytest.approx(1.0, abs=1e-6)


def test_fscore_hand_case() -> None:
    prob = torch.tensor([[[0.9, 0.3], [0.6, 0.1]]])
    gt = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # th in (0.6, 0.9]: P = 1, R = 0.5 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125 (the best threshold)
    assert avs_fscore(prob, gt, from_logits=False) == pytest.approx(0.8125, abs=1e-6)
    assert reference_fscore(prob, gt) == pytest.approx(0.8125, abs=1e-6)


def test_fscore_all_empty_batch_is_zero_like_reference() -> None:
    assert avs_fscore(torch.rand(2, 4, 4), torch.zeros(2, 4, 4), from_logits=False) == 0.0


def test_histogram_curves_equal_reference_loop() -> None:
    torch.manual_seed(0)
    prob = torch.rand(3, 16, 16)
    prob[0, 0, 0] = 1.0  # exactly on the last threshold
    gt = (torch.rand(3, 16, 16) > 0.6).float()
    gt[2] = 0.0
    precision, recall = precision_recall_curves(prob, gt)
    assert precision.shape == (3, 255)
    assert avs_fscore(prob, gt, from_logits=False) == pytest.approx(reference_fscore(prob, gt), abs=1e-5)


def test_accumulator_dataset_vs_per_batch() -> None:
    prob_a = torch.tensor([[[0.9, 0.3], [0.6, 0.1]]])
    gt_a = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    prob_b = torch.tensor([[[0.9, 0.1], [0.1, 0.1]]])
    gt_b = torch.zeros(1, 2, 2)
    whole = AVSMetrics(from_logits=False)
    batched = AVSMetrics(from_logits=False, per_batch=True)
    for m in (whole, batched):
        m.update(prob_a, gt_a)
        m.update(prob_b, gt_b)
    # IoU: frame a = 1/3 (P = {0.9, 0.6}, G = {0.9, 0.3}); frame b (empty G) = 3/4.
    assert whole.compute()["miou"] == pytest.approx((1 / 3 + 0.75) / 2, abs=1e-6)
    assert whole.compute()["fscore"] == pytest.approx(0.8125, abs=1e-6)  # empty-G frame skipped
    assert batched.compute()["fscore"] == pytest.approx(0.8125 / 2, abs=1e-6)  # reference quirk
    assert batched.compute()["frames"] == 2


def test_accumulator_valid_mask_and_batch_weighting() -> None:
    gt = torch.zeros(1, 3, 2, 2)
    gt[0, 0, 0, 0] = 1
    logits = torch.full((1, 3, 2, 2), -10.0)
    logits[0, 0, 0, 0] = 10
    valid = torch.tensor([[True, False, False]])
    m = AVSMetrics()
    m.update(logits, gt, valid)
    assert m.compute() == {"miou": pytest.approx(1.0, abs=1e-6), "fscore": pytest.approx(1.0, abs=1e-6),
                           "frames": 1.0}
    # dataset mean weights frames, per-batch mean weights batches
    a = AVSMetrics(from_logits=False)
    b = AVSMetrics(from_logits=False, per_batch=True)
    ones, zeros = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    for m in (a, b):
        m.update(ones, ones)  # IoU 1
        m.update(torch.cat([zeros, zeros, zeros]), torch.cat([ones, ones, ones]))  # IoU 0 x 3
    assert a.compute()["miou"] == pytest.approx(0.25, abs=1e-6)
    assert b.compute()["miou"] == pytest.approx(0.5, abs=1e-6)


def test_precision_recall_curve_option() -> None:
    m = AVSMetrics(from_logits=False, curve="precision_recall")
    m.update(torch.tensor([[[0.9, 0.3], [0.6, 0.1]]]), torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    assert m.compute()["fscore"] == pytest.approx(0.8125, abs=1e-6)  # one frame: both conventions agree
    with pytest.raises(ValueError, match="curve"):
        AVSMetrics(curve="mean")


def test_avqa_accuracy_per_type_group_overall() -> None:
    qtypes = ["Audio/Counting", "Audio/Comparative", "Audio/Counting", "Visual/Location", "Audio-Visual/Temporal"]
    pred = [1, 2, 3, 4, 5]
    target = [1, 0, 3, 0, 5]
    acc = avqa_accuracy(pred, target, qtypes)
    assert acc["Audio/Counting"] == 1.0
    assert acc["Audio/Comparative"] == 0.0
    assert acc["Audio"] == pytest.approx(2 / 3)  # pooled over the group's questions
    assert acc["Visual"] == 0.0
    assert acc["Audio-Visual"] == 1.0
    assert acc["overall"] == pytest.approx(3 / 5)
    assert list(acc)[-1] == "overall" and "Visual/Counting" not in acc
    accum = AVQAAccuracy()
    accum.update(torch.tensor(pred[:2]), torch.tensor(target[:2]), qtypes[:2])
    accum.update(torch.nn.functional.one_hot(torch.tensor(pred[2:]), 6).float(), target[2:], qtypes[2:])
    assert accum.compute() == acc


def test_ave_breakdown_separates_when_from_what() -> None:
    from stgcma.metrics import ave_breakdown

    bg = 3
    target = torch.tensor([[bg, 1, 1, bg], [2, 2, bg, bg], [bg, bg, bg, bg]])
    pred = torch.tensor([[bg, 0, 0, 1], [bg, bg, bg, bg], [bg, 2, bg, bg]])  # clip 0: right timing, wrong class
    counts = ave_breakdown(pred, target, bg)
    assert counts["segments"] == 12 and counts["detect_right"] == 3 + 2 + 3 and counts["right"] == 1 + 2 + 3
    assert counts["event_clips"] == 2 and counts["class_right"] == 0  # clip 1 called background throughout
    assert ave_breakdown(target, target, bg) == {"right": 12, "detect_right": 12, "segments": 12, "class_right": 2,
                                                 "event_clips": 2}
