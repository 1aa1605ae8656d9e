"""Exit heads: small heads shaped like the original one, adapting the feature map first.

- Classification (:class:`ClassifierExit`): one 3x3 conv + BN + ReLU (stride 2 on
  maps of 8 px or more) to adapt the features, then what the torchvision heads do:
  global average pool, dropout, linear. A flat feature (after the backbone's pooling)
  gets dropout + linear only.
- Detection (:class:`DetectionExit`): SSD-style. Stride-2 3x3 convs (64 channels until the
  last) bring the map to at most 20 x 20 cells, then a 3x3 conv predicts ``A * classes`` logits and another
  ``A * 4`` box regressions per cell, for a single-scale anchor set on that map
  (:func:`exit_anchors`, pure torch, so the board can decode without torchvision).
  Outputs are ``(cls_logits [N, HWA, classes], bbox_regression [N, HWA, 4])``, the same
  layout as torchvision's SSD head.

Every head is TorchScript-scriptable and deterministic given the global seed.
"""

from __future__ import annotations

import math
from typing import Any, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from pantheon.errors import ModelError

# aspect ratios of the exits' anchors: a square at two scales, then 2:1 and 1:2
EXIT_ASPECT_RATIOS = (1.0, 2.0, 0.5)
EXIT_ANCHORS_PER_CELL = len(EXIT_ASPECT_RATIOS) + 1
MAX_EXIT_CELLS = 20


def _conv_bn_relu(cin: int, cout: int, stride: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class ClassifierExit(nn.Module):
    """Adapter conv (for maps) + global average pool + dropout + linear."""

    def __init__(self, feature_shape: Sequence[int], num_classes: int, channels: int = 128) -> None:
        super().__init__()
        if len(feature_shape) == 1:
            self.features: nn.Module = nn.Flatten(1)
            width = int(feature_shape[0])
        elif len(feature_shape) == 3:
            c, h = int(feature_shape[0]), int(feature_shape[1])
            layers = _conv_bn_relu(c, channels, 2 if h >= 8 else 1)
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            width = channels
        else:
            raise ModelError(f"cannot attach a classification exit to a feature of shape {list(feature_shape)}")
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, num_classes))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _exit_strides(h: int) -> List[int]:
    """Stride-2 convs until the map has at most MAX_EXIT_CELLS rows (at least one conv)."""
    strides: List[int] = []
    while h > MAX_EXIT_CELLS:
        strides.append(2)
        h = (h + 1) // 2
    return strides or [1]


def _out_size(n: int, strides: Sequence[int]) -> int:
    for s in strides:
        n = (n - 1) // s + 1  # 3x3 conv, padding 1
    return n


class DetectionExit(nn.Module):
    """SSD-style exit: adapter convs, then per-cell logits and box regressions."""

    num_classes: int
    out_h: int
    out_w: int

    def __init__(self, feature_shape: Sequence[int], num_classes: int, channels: int = 128) -> None:
        super().__init__()
        if len(feature_shape) != 3:
            raise ModelError(f"cannot attach a detection exit to a feature of shape {list(feature_shape)}")
        c, h, w = (int(v) for v in feature_shape)
        strides = _exit_strides(max(h, w))
        layers: List[nn.Module] = []
        cin = c
        for i, s in enumerate(strides):
            cout = channels if i == len(strides) - 1 else min(channels, 64)  # big early maps: keep them cheap
            layers += _conv_bn_relu(cin, cout, s)
            cin = cout
        self.adapt = nn.Sequential(*layers)
        self.cls = nn.Conv2d(channels, EXIT_ANCHORS_PER_CELL * num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, EXIT_ANCHORS_PER_CELL * 4, 3, padding=1)
        self.num_classes = num_classes
        self.out_h, self.out_w = _out_size(h, strides), _out_size(w, strides)
        _init(self)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        f = self.adapt(x)
        n = f.shape[0]
        cls = self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
        box = self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return cls, box


def exit_anchors(out_hw: Tuple[int, int], image_hw: Tuple[int, int]) -> Tensor:
    """Single-scale default boxes ``[H*W*A, 4]`` (x1, y1, x2, y2 pixels) for an exit's map.

    Box side = 2 cells (clamped to 10-90% of the image), squares at that side and at the
    geometric mean with twice it, then 2:1 and 1:2; order is row, column, anchor, the
    same as :class:`DetectionExit`'s outputs.
    """
    fh, fw = out_hw
    ih, iw = image_hw
    s = min(max(2.0 / max(fh, fw), 0.1), 0.9)
    s_big = math.sqrt(s * min(2.0 * s, 1.0))
    wh = [(s, s), (s_big, s_big)] + [(s * math.sqrt(a), s / math.sqrt(a)) for a in EXIT_ASPECT_RATIOS[1:]]
    ys = (torch.arange(fh, dtype=torch.float32) + 0.5) / fh
    xs = (torch.arange(fw, dtype=torch.float32) + 0.5) / fw
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centers = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)  # [HW, 2]
    sizes = torch.tensor(wh, dtype=torch.float32)  # [A, 2]
    c = centers[:, None, :].expand(-1, sizes.shape[0], -1)
    half = sizes[None, :, :].expand(centers.shape[0], -1, -1) / 2
    boxes = torch.cat([c - half, c + half], dim=-1).clamp(0, 1).reshape(-1, 4)
    return boxes * torch.tensor([iw, ih, iw, ih], dtype=torch.float32)


def build_exit(task: Any, feature_shape: Sequence[int]) -> nn.Module:
    """The exit head of ``task`` for a feature of ``feature_shape`` (no batch dimension)."""
    if task.is_detection:
        return DetectionExit(feature_shape, task.num_classes, task.exit_channels)
    return ClassifierExit(feature_shape, task.num_classes, task.exit_channels)
