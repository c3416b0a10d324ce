"""Task metrics for STG-CMA (Wang, Tian, Hatzinakos, CVPR-W 2024, arXiv 2403.01862; METHOD.md "Task heads").

- AVE: segment accuracy, the fraction of one-second segments whose class is right.
- AVS: mIoU and F-score with the semantics of the AVSBench reference code (Zhou et al., ECCV 2022):
  * prediction masks come from ``sigmoid(logit) > 0.5``;
  * IoU of a frame is ``|P & G| / |P | G|``; a frame whose ground truth is empty scores the fraction
    of pixels where prediction and ground truth are both 0 (so an empty prediction scores 1);
  * F-score uses ``beta^2 = 0.3`` over 255 thresholds ``torch.linspace(0, 1 - 1e-10, 255)`` applied
    with ``>=`` to the sigmoid probabilities; frames with an all-zero ground truth are skipped;
    per frame, precision ``tp / (|P| + 1e-20)`` and recall ``tp / (|G| + 1e-20)`` give an F curve
    (NaN -> 0); the curves are averaged over frames and the maximum over thresholds is reported.
  The reference averages per batch and then averages the batch values (a batch whose frames all have
  empty ground truth contributes an F of 0). :class:`AVSMetrics` computes over the whole dataset by
  default (every frame weighs the same) and reproduces the reference with ``per_batch=True``.
  ``curve="precision_recall"`` instead takes the F of the dataset-mean precision and recall at each
  threshold (the salient-object-detection convention), for comparison.
- AVQA: accuracy per question type (``"Audio/Counting"``, ...), per modality group (``"Audio"``,
  ``"Visual"``, ``"Audio-Visual"``, pooled over the questions of the group as MUSIC-AVQA reports)
  and overall.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import torch

BETA2 = 0.3
NUM_THRESHOLDS = 255
AVQA_TYPES = (
    "Audio/Counting",
    "Audio/Comparative",
    "Visual/Counting",
    "Visual/Location",
    "Audio-Visual/Existential",
    "Audio-Visual/Counting",
    "Audio-Visual/Location",
    "Audio-Visual/Comparative",
    "Audio-Visual/Temporal",
)
AVQA_GROUPS = ("Audio", "Visual", "Audio-Visual")


def ave_accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """AVE segment accuracy.

    Args:
        pred: class indices (N, T) or logits (N, T, C).
        target: class indices (N, T).

    Returns:
        Fraction of segments predicted right (0 when there are none).
    """
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if target.numel() == 0:
        return 0.0
    return (pred == target).float().mean().item()


def ave_breakdown(pred: torch.Tensor, target: torch.Tensor, background: int) -> dict[str, int]:
    """Counts of AVE's segment accuracy and of its split into WHEN and WHAT.

    - right: segments whose label is right (the segment accuracy's numerator);
    - detection: segments whose event-vs-background call is right (whatever the class);
    - class: clips with an event whose most predicted non-background class is the event's class (a
      clip whose every segment is called background counts as wrong).

    Args:
        pred: class indices (N, T); target: class indices (N, T); background: the background index.

    Returns:
        ``{"right", "detect_right", "segments", "class_right", "event_clips"}``.
    """
    detected = (pred != background) == (target != background)  # (N, T)
    class_right = event_clips = 0
    for p, y in zip(pred.tolist(), target.tolist(), strict=True):
        events = [c for c in y if c != background]
        if not events:
            continue
        event_clips += 1
        called = [c for c in p if c != background]
        class_right += bool(called) and max(set(called), key=called.count) == events[0]
    return {"right": int((pred == target).sum()), "detect_right": int(detected.sum()), "segments": detected.numel(),
            "class_right": class_right, "event_clips": event_clips}


def mask_iou_per_frame(pred_bin: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of each frame, AVSBench semantics for empty ground truth.

    Args:
        pred_bin: binary predictions (N, H, W).
        target: binary ground truth (N, H, W).
        eps: added to the union, as in the reference.

    Returns:
        float (N,) IoU per frame.
    """
    pred_bin = pred_bin.float().flatten(1)  # (N, H*W)
    target = target.float().flatten(1)  # (N, H*W)
    inter = (pred_bin * target).sum(1)
    union = torch.maximum(pred_bin, target).sum(1)
    empty = target.sum(1) == 0
    both_zero = ((1 - pred_bin) * (1 - target)).sum(1)
    inter = torch.where(empty, both_zero, inter)
    union = torch.where(empty, torch.full_like(union, float(target.shape[1])), union)
    return inter / (union + eps)


def f_thresholds(num: int = NUM_THRESHOLDS) -> torch.Tensor:
    """The reference thresholds ``linspace(0, 1 - 1e-10, num)`` (float32, so the last one is 1.0)."""
    return torch.linspace(0, 1 - 1e-10, num)


def precision_recall_curves(prob: torch.Tensor, target: torch.Tensor,
                            num: int = NUM_THRESHOLDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame precision and recall at each threshold (prediction = ``prob >= threshold``).

    Counts come from one histogram per frame instead of ``num`` comparisons; the result equals the
    reference loop exactly.

    Args:
        prob: probabilities (N, H, W).
        target: binary ground truth (N, H, W).
        num: number of thresholds.

    Returns:
        precision and recall, each float (N, num).
    """
    th = f_thresholds(num).to(prob.device)
    n = prob.shape[0]
    prob = prob.float().flatten(1)  # (N, P)
    target = target.float().flatten(1)  # (N, P)
    # bin j holds pixels with th[j-1] <= p < th[j]; such a pixel is positive for thresholds i < j.
    bins = torch.bucketize(prob, th, right=True)  # (N, P) in [0, num]
    offsets = (torch.arange(n, device=prob.device) * (num + 1)).unsqueeze(1)  # (N, 1)
    flat = (bins + offsets).flatten()
    hist_all = torch.bincount(flat, minlength=n * (num + 1)).view(n, num + 1).double()  # (N, num+1)
    hist_tp = torch.bincount(flat, weights=target.flatten().double(),
                             minlength=n * (num + 1)).view(n, num + 1)  # (N, num+1)
    positive = hist_all.flip(1).cumsum(1).flip(1)[:, 1:]  # (N, num): pixels with bin > i
    tp = hist_tp.flip(1).cumsum(1).flip(1)[:, 1:]  # (N, num)
    gt = target.double().sum(1, keepdim=True)  # (N, 1)
    precision = tp / (positive + 1e-20)
    recall = tp / (gt + 1e-20)
    return precision.float(), recall.float()


def f_measure(precision: torch.Tensor, recall: torch.Tensor, beta2: float = BETA2) -> torch.Tensor:
    """F-beta from precision and recall (same shape), NaN -> 0 as in the reference."""
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return torch.nan_to_num(f, nan=0.0)


def _as_prob(pred: torch.Tensor, from_logits: bool) -> torch.Tensor:
    return torch.sigmoid(pred.float()) if from_logits else pred.float()


def avs_miou(pred: torch.Tensor, target: torch.Tensor, from_logits: bool = True) -> float:
    """Mean IoU over the frames of one batch (the reference ``mask_iou``).

    Args:
        pred: logits (or probabilities when ``from_logits=False``) (N, H, W).
        target: binary ground truth (N, H, W).
        from_logits: apply a sigmoid first.
    """
    prob = _as_prob(pred, from_logits)
    return mask_iou_per_frame((prob > 0.5).float(), target).mean().item()


def avs_fscore(pred: torch.Tensor, target: torch.Tensor, from_logits: bool = True,
               num: int = NUM_THRESHOLDS, beta2: float = BETA2) -> float:
    """F-score of one batch (the reference ``Eval_Fmeasure``): max over thresholds of the mean F curve.

    Frames with an all-zero ground truth are skipped; if all are, the result is 0.0 as in the reference.
    """
    prob = _as_prob(pred, from_logits)
    keep = target.flatten(1).sum(1) > 0
    if not bool(keep.any()):
        return 0.0
    precision, recall = precision_recall_curves(prob[keep], target[keep], num)
    return f_measure(precision, recall, beta2).mean(0).max().item()


class AVSMetrics:
    """Accumulates AVS mIoU and F-score over a dataset: ``update`` per batch, ``compute`` at the end.

    Args:
        from_logits: predictions are logits (a sigmoid is applied) rather than probabilities.
        per_batch: reproduce the reference, which averages per-batch values with equal weight.
        curve: ``"image_f"`` (reference: mean of per-frame F curves) or ``"precision_recall"``
            (F of the mean precision and recall curves).
        num_thresholds: number of F-score thresholds.
        beta2: F-score beta squared.
    """

    def __init__(self, from_logits: bool = True, per_batch: bool = False,
                 curve: Literal["image_f", "precision_recall"] = "image_f",
                 num_thresholds: int = NUM_THRESHOLDS, beta2: float = BETA2) -> None:
        if curve not in ("image_f", "precision_recall"):
            raise ValueError(f"curve must be 'image_f' or 'precision_recall', got {curve!r}")
        self.from_logits = from_logits
        self.per_batch = per_batch
        self.curve = curve
        self.num_thresholds = num_thresholds
        self.beta2 = beta2
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.iou_sum = 0.0
        self.frames = 0
        self.f_sum = torch.zeros(self.num_thresholds, dtype=torch.float64)
        self.p_sum = torch.zeros(self.num_thresholds, dtype=torch.float64)
        self.r_sum = torch.zeros(self.num_thresholds, dtype=torch.float64)
        self.f_frames = 0
        self.batch_miou: list[float] = []
        self.batch_f: list[float] = []

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Add one batch.

        Args:
            pred: logits or probabilities (..., H, W), e.g. (B, T, H, W).
            target: binary ground truth of the same shape.
            valid: optional bool over the leading dims, e.g. (B, T); False frames are ignored
                (frames without a ground-truth mask).
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        h, w = pred.shape[-2:]
        prob = _as_prob(pred, self.from_logits).reshape(-1, h, w)  # (N, H, W)
        target = target.float().reshape(-1, h, w)  # (N, H, W)
        if valid is not None:
            keep = valid.reshape(-1).to(torch.bool).to(prob.device)
            prob, target = prob[keep], target[keep]
        if prob.shape[0] == 0:
            return
        iou = mask_iou_per_frame((prob > 0.5).float(), target)  # (N,)
        nonempty = target.flatten(1).sum(1) > 0
        if bool(nonempty.any()):
            precision, recall = precision_recall_curves(prob[nonempty], target[nonempty], self.num_thresholds)
            f = f_measure(precision, recall, self.beta2)  # (n, num)
            self.f_sum += f.double().sum(0).cpu()
            self.p_sum += precision.double().sum(0).cpu()
            self.r_sum += recall.double().sum(0).cpu()
            self.f_frames += int(nonempty.sum())
            batch_f = f.mean(0).max().item()
        else:
            batch_f = 0.0
        self.iou_sum += iou.double().sum().item()
        self.frames += int(iou.shape[0])
        self.batch_miou.append(iou.mean().item())
        self.batch_f.append(batch_f)

    def compute(self) -> dict[str, float]:
        """Return ``{"miou": ..., "fscore": ..., "frames": ...}`` (0.0 when nothing was added)."""
        if self.per_batch:
            count = len(self.batch_miou)
            miou = sum(self.batch_miou) / count if count else 0.0
            fscore = sum(self.batch_f) / count if count else 0.0
            return {"miou": miou, "fscore": fscore, "frames": float(self.frames)}
        miou = self.iou_sum / self.frames if self.frames else 0.0
        if self.f_frames == 0:
            fscore = 0.0
        elif self.curve == "image_f":
            fscore = (self.f_sum / self.f_frames).max().item()
        else:
            fscore = f_measure(self.p_sum / self.f_frames, self.r_sum / self.f_frames, self.beta2).max().item()
        return {"miou": miou, "fscore": fscore, "frames": float(self.frames)}


def qtype_group(qtype: str) -> str:
    """Modality group of a question type: ``"Audio-Visual/Counting"`` -> ``"Audio-Visual"``."""
    return qtype.split("/", 1)[0]


def avqa_accuracy(pred: Sequence[int] | torch.Tensor, target: Sequence[int] | torch.Tensor,
                  qtypes: Sequence[str]) -> dict[str, float]:
    """AVQA accuracy per question type, per modality group (pooled) and overall.

    Args:
        pred: predicted answer indices (N,) (or logits (N, A)).
        target: true answer indices (N,).
        qtypes: question type of each question, e.g. ``"Audio-Visual/Temporal"``.

    Returns:
        ``{"Audio/Counting": acc, ..., "Audio": acc, ..., "overall": acc}`` with only the keys
        that have at least one question.
    """
    acc = AVQAAccuracy()
    acc.update(pred, target, qtypes)
    return acc.compute()


class AVQAAccuracy:
    """Accumulates AVQA correctness by question type; ``compute`` gives :func:`avqa_accuracy`'s dict."""

    def __init__(self) -> None:
        self.correct: dict[str, int] = defaultdict(int)
        self.total: dict[str, int] = defaultdict(int)

    def update(self, pred: Sequence[int] | torch.Tensor, target: Sequence[int] | torch.Tensor,
               qtypes: Sequence[str]) -> None:
        """Add a batch of predictions (indices (N,) or logits (N, A)), targets (N,) and types."""
        pred_t = torch.as_tensor(pred)
        if pred_t.dim() == 2:
            pred_t = pred_t.argmax(-1)
        target_t = torch.as_tensor(target).reshape(-1)
        pred_t = pred_t.reshape(-1)
        if not (len(pred_t) == len(target_t) == len(qtypes)):
            raise ValueError(f"lengths differ: pred {len(pred_t)}, target {len(target_t)}, qtypes {len(qtypes)}")
        hits = (pred_t.cpu() == target_t.cpu()).tolist()
        for hit, qtype in zip(hits, qtypes, strict=True):
            for key in (qtype, qtype_group(qtype), "overall"):
                self.correct[key] += int(hit)
                self.total[key] += 1

    def compute(self) -> dict[str, float]:
        """Accuracy per type, then per group, then ``"overall"`` (keys with no questions omitted)."""
        known = [*AVQA_TYPES, *AVQA_GROUPS]
        keys = [k for k in known if k in self.total]
        keys += sorted(k for k in self.total if k not in known and k != "overall")
        keys += ["overall"] if "overall" in self.total else []
        return {k: self.correct[k] / self.total[k] for k in keys}
