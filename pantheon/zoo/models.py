"""Backbones of the zoo, built from torchvision with no downloads.

Every model takes one normalised image tensor ``[N, C, H, W]`` and is torch.fx
traceable. Classification models return logits ``[N, classes]``. Detection
models (:class:`SSDRaw`) wrap torchvision's SSDLite backbone and head and return
the raw ``(cls_logits [N, A, classes], bbox_regression [N, A, 4])`` so that every
chunk is plain tensors in and out; anchors (:func:`ssd_anchors`), box decoding and
NMS live outside the model (:mod:`pantheon.zoo.metrics`).

Adaptations for small inputs (documented per task in ``pantheon zoo``):
single-channel tasks get a 1-channel stem; VGG16 (with batch norm) below 224 px
pools to 1x1 and uses a 512-512-classes classifier; GoogLeNet has no auxiliary
heads and no input transform.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from pantheon.errors import ModelError


class SSDRaw(nn.Module):
    """SSDLite backbone + head returning raw ``(cls_logits, bbox_regression)`` tensors."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        features = list(self.backbone(x).values())
        out = self.head(features)
        return out["cls_logits"], out["bbox_regression"]


def _one_channel_stem(conv: nn.Conv2d) -> nn.Conv2d:
    """The same convolution reading one input channel (grayscale datasets)."""
    return nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )


def _resnet(arch: str, num_classes: int, in_ch: int) -> nn.Module:
    from torchvision import models

    model = getattr(models, arch)(weights=None, num_classes=num_classes)
    if in_ch == 1:
        model.conv1 = _one_channel_stem(model.conv1)
    return model


def _mobilenet_v2(num_classes: int, in_ch: int) -> nn.Module:
    from torchvision import models

    model = models.mobilenet_v2(weights=None, num_classes=num_classes)
    if in_ch == 1:
        model.features[0][0] = _one_channel_stem(model.features[0][0])
    return model


def _vgg16(num_classes: int, in_ch: int, size: int) -> nn.Module:
    from torchvision import models

    model = models.vgg16_bn(weights=None, num_classes=num_classes)
    if in_ch == 1:
        model.features[0] = _one_channel_stem(model.features[0])
    if size < 224:  # 25088x4096 classifier for a 1x1 map would be 90% of the weights for nothing
        model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        model.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_classes)
        )
    return model


def _googlenet(num_classes: int, in_ch: int) -> nn.Module:
    from torchvision import models

    model = models.googlenet(
        weights=None, num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
    )
    if in_ch == 1:
        model.conv1.conv = _one_channel_stem(model.conv1.conv)
    return model


def _alexnet(num_classes: int) -> nn.Module:
    from torchvision import models

    return models.alexnet(weights=None, num_classes=num_classes)


def _ssdlite(num_classes: int) -> nn.Module:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    ssd = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    return SSDRaw(ssd.backbone, ssd.head)


def build(task: Any) -> nn.Module:
    """The task's model, freshly initialised (seed the global RNG first for reproducibility).

    Example::

        >>> from pantheon.zoo import get_task
        >>> m = build(get_task("digits_googlenet"))
        >>> m(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    in_ch, size = task.input_shape[0], task.input_shape[1]
    arch, k = task.arch, task.num_classes
    if arch in ("resnet18", "resnet34", "resnet50"):
        return _resnet(arch, k, in_ch)
    if arch == "mobilenet_v2":
        return _mobilenet_v2(k, in_ch)
    if arch == "vgg16":
        return _vgg16(k, in_ch, size)
    if arch == "googlenet":
        return _googlenet(k, in_ch)
    if arch == "alexnet":
        return _alexnet(k)
    if arch == "ssdlite320_mobilenet_v3_large":
        return _ssdlite(k)
    raise ModelError(f"task {task.name}: no builder for architecture {arch!r}")


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Anchors of the original SSDLite head (the exits' own anchors are in pantheon.zoo.heads)
# ---------------------------------------------------------------------------------------------


def _ssdlite_anchor_generator() -> nn.Module:
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    # the same default boxes torchvision's ssdlite320 builder uses
    return DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)


def ssd_feature_sizes(model: SSDRaw, input_shape: Tuple[int, int, int]) -> List[Tuple[int, int]]:
    """Spatial sizes of the SSD feature maps for one input shape."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = list(model.backbone(torch.zeros(1, *input_shape)).values())
    model.train(was_training)
    return [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]


def ssd_anchors(model: SSDRaw, input_shape: Tuple[int, int, int]) -> Tensor:
    """Anchors ``[A, 4]`` (x1, y1, x2, y2 in input pixels) of the original SSDLite head."""
    from torchvision.models.detection.image_list import ImageList

    h, w = input_shape[1], input_shape[2]
    fmaps = [torch.zeros(1, 1, fh, fw) for fh, fw in ssd_feature_sizes(model, input_shape)]
    images = ImageList(torch.zeros(1, input_shape[0], h, w), [(h, w)])
    return _ssdlite_anchor_generator()(images, fmaps)[0]


def describe(task: Any) -> Dict[str, Any]:
    """Parameter count of the task's model (built on the CPU, not kept)."""
    return {"params": param_count(build(task))}
