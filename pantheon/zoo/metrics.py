"""Task metrics and detection post-processing.

- :class:`Top1`: top-1 accuracy of classification logits.
- :class:`MeanAP50`: mAP at IoU 0.5 through torchmetrics' ``MeanAveragePrecision``.
- :func:`decode_detections`: raw ``(cls_logits, bbox_regression)`` + anchors -> boxes,
  scores and labels per image (softmax, score threshold, per-class NMS, top-k). It
  uses only torch (torchvision's NMS when importable), so the runtime's result
  handling on the board can reuse it.
- :func:`ssd_loss`: the SSD training loss (anchor matching at IoU 0.5, smooth-L1 on
  matched boxes, cross entropy with 3:1 hard negative mining).

Box codes use the SSD convention of torchvision (weights 10, 10, 5, 5).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BBOX_CLIP = math.log(1000.0 / 16)


class Top1:
    """Running top-1 accuracy. ``update(logits, labels)``, then ``compute()`` -> fraction."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, logits: Tensor, labels: Tensor) -> None:
        self.correct += int((logits.argmax(dim=1) == labels).sum())
        self.total += int(labels.numel())

    def compute(self) -> float:
        return self.correct / self.total if self.total else 0.0


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix ``[len(a), len(b)]`` of x1y1x2y2 boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def encode_boxes(gt: Tensor, anchors: Tensor) -> Tensor:
    """Regression targets of ``gt`` boxes relative to their ``anchors`` (both ``[M, 4]``)."""
    wx, wy, ww, wh = BOX_WEIGHTS
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack(
        [wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=1
    )


def decode_boxes(codes: Tensor, anchors: Tensor) -> Tensor:
    """Inverse of :func:`encode_boxes`: ``[..., A, 4]`` codes -> x1y1x2y2 boxes."""
    wx, wy, ww, wh = BOX_WEIGHTS
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    dx, dy = codes[..., 0] / wx, codes[..., 1] / wy
    dw = (codes[..., 2] / ww).clamp(max=BBOX_CLIP)
    dh = (codes[..., 3] / wh).clamp(max=BBOX_CLIP)
    cx, cy = dx * aw + ax, dy * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices kept by non-maximum suppression, best first (torchvision's when available)."""
    try:
        from torchvision.ops import nms as tv_nms

        return tv_nms(boxes, scores, iou_threshold)
    except ImportError:  # the board image has no torchvision
        order = scores.argsort(descending=True)
        keep: List[int] = []
        while order.numel():
            i = int(order[0])
            keep.append(i)
            if order.numel() == 1:
                break
            iou = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
            order = order[1:][iou <= iou_threshold]
        return torch.tensor(keep, dtype=torch.long)


def decode_detections(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    anchors: Tensor,
    image_size: Tuple[int, int],
    score_thresh: float = 0.01,
    nms_thresh: float = 0.45,
    topk: int = 100,
) -> List[Dict[str, Tensor]]:
    """Raw head outputs -> per image ``{"boxes" [K,4], "scores" [K], "labels" [K]}``.

    Args:
        cls_logits: ``[N, A, classes]`` (class 0 = background).
        bbox_regression: ``[N, A, 4]`` box codes relative to ``anchors``.
        anchors: ``[A, 4]`` x1y1x2y2 in input pixels.
        image_size: ``(height, width)`` of the model input, to clip boxes.

    Example::

        >>> dets = decode_detections(cls, box, anchors, (300, 300))
        >>> dets[0]["boxes"].shape[1]
        4
    """
    h, w = image_size
    out: List[Dict[str, Tensor]] = []
    scores_all = F.softmax(cls_logits.float(), dim=-1)
    boxes_all = decode_boxes(bbox_regression.float(), anchors.to(bbox_regression.device))
    boxes_all[..., 0::2] = boxes_all[..., 0::2].clamp(0, w)
    boxes_all[..., 1::2] = boxes_all[..., 1::2].clamp(0, h)
    for scores, boxes in zip(scores_all, boxes_all):
        kept_boxes, kept_scores, kept_labels = [], [], []
        for label in range(1, scores.shape[1]):
            s = scores[:, label]
            mask = s > score_thresh
            if not bool(mask.any()):
                continue
            b, s = boxes[mask], s[mask]
            top = s.topk(min(topk, s.numel())).indices
            b, s = b[top], s[top]
            keep = nms(b, s, nms_thresh)
            kept_boxes.append(b[keep])
            kept_scores.append(s[keep])
            kept_labels.append(torch.full((len(keep),), label, dtype=torch.long))
        if kept_boxes:
            b, s, lab = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            order = s.argsort(descending=True)[:topk]
            out.append({"boxes": b[order], "scores": s[order], "labels": lab[order]})
        else:
            out.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)})
    return out


def ssd_loss(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    anchors: Tensor,
    targets: Sequence[Dict[str, Tensor]],
    iou_threshold: float = 0.5,
    neg_to_pos: int = 3,
) -> Tensor:
    """SSD loss of one head: (smooth-L1 on matched anchors + hard-mined CE) / #matched."""
    anchors = anchors.to(cls_logits.device)
    num_classes = cls_logits.shape[-1]
    cls_targets, box_losses, num_pos = [], [], 0
    for codes_i, tgt in zip(bbox_regression, targets):
        gt_boxes, gt_labels = tgt["boxes"].to(anchors), tgt["labels"].to(cls_logits.device)
        labels_i = torch.zeros(anchors.shape[0], dtype=torch.long, device=cls_logits.device)
        if gt_boxes.numel():
            iou = box_iou(gt_boxes, anchors)  # [G, A]
            best_iou, best_gt = iou.max(dim=0)
            best_gt[iou.argmax(dim=1)] = torch.arange(gt_boxes.shape[0], device=anchors.device)  # every gt matched
            best_iou[iou.argmax(dim=1)] = 1.0
            pos = best_iou >= iou_threshold
            labels_i[pos] = gt_labels[best_gt[pos]]
            if bool(pos.any()):
                target_codes = encode_boxes(gt_boxes[best_gt[pos]], anchors[pos])
                box_losses.append(F.smooth_l1_loss(codes_i[pos], target_codes, reduction="sum"))
            num_pos += int(pos.sum())
        cls_targets.append(labels_i)
    labels = torch.stack(cls_targets)
    ce = F.cross_entropy(cls_logits.reshape(-1, num_classes), labels.reshape(-1), reduction="none").view_as(labels)
    fg = labels > 0
    n_neg = (neg_to_pos * fg.sum(dim=1, keepdim=True)).clamp(min=neg_to_pos)
    neg_loss = ce.clone()
    neg_loss[fg] = -float("inf")
    rank = neg_loss.sort(dim=1, descending=True)[1].sort(dim=1)[1]
    hard = rank < n_neg
    box_loss = torch.stack(box_losses).sum() if box_losses else cls_logits.sum() * 0
    return (box_loss + ce[fg].sum() + ce[hard].sum()) / max(1, num_pos)


class MeanAP50:
    """mAP at IoU 0.5 (torchmetrics ``MeanAveragePrecision``) of decoded detections."""

    def __init__(self, anchors: Tensor, image_size: Tuple[int, int]) -> None:
        from pantheon.errors import UsageError

        try:
            from torchmetrics.detection import MeanAveragePrecision

            self.metric = MeanAveragePrecision(iou_thresholds=[0.5])
        except (ImportError, ModuleNotFoundError) as exc:
            raise UsageError(f"mAP needs torchmetrics with pycocotools (pip install pantheon[offline]): {exc}") from exc
        self.anchors = anchors
        self.image_size = image_size

    def update(self, output: Tuple[Tensor, Tensor], targets: Sequence[Dict[str, Tensor]]) -> None:
        preds = decode_detections(output[0].cpu(), output[1].cpu(), self.anchors.cpu(), self.image_size)
        self.metric.update(preds, [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu()} for t in targets])

    def compute(self) -> float:
        value = float(self.metric.compute()["map_50"])
        return max(value, 0.0)  # torchmetrics reports -1 when there is no ground truth at all


def make_metric(task: Any, anchors: Any = None) -> Any:
    """The task's metric accumulator (``update``/``compute``); detection needs the exit's anchors."""
    if task.is_detection:
        return MeanAP50(anchors, (task.input_shape[1], task.input_shape[2]))
    return Top1()
