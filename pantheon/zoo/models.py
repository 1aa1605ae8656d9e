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

This is the one place models are built by name: :func:`build` for a zoo task,
:func:`build_arch` for ``pantheon slice --arch``; both go through
:func:`torchvision_model` and :func:`ssdlite_detector`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from pantheon.errors import ModelError, UsageError


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


def _pair(size: Tuple[int, ...]) -> Tuple[int, int]:
    """A 2-d convolution's (height, width) setting (torch stores it as a tuple of any length)."""
    h, w = size
    return h, w


def _one_channel_stem(conv: nn.Conv2d) -> nn.Conv2d:
    """The same convolution reading one input channel (grayscale datasets)."""
    return nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=_pair(conv.kernel_size),
        stride=_pair(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
        bias=conv.bias is not None,
    )


# torchvision builders whose defaults get in the way of slicing and training: an auxiliary-logits
# head (a second output in training mode) and an input transform (ops before the stem).
_NO_AUX = ("googlenet", "inception_v3")

# Zoo backbones: arch -> (torchvision builder, the stem conv a 1-channel task replaces).
_BACKBONES: Dict[str, Tuple[str, str]] = {
    "resnet18": ("resnet18", "conv1"),
    "resnet34": ("resnet34", "conv1"),
    "resnet50": ("resnet50", "conv1"),
    "mobilenet_v2": ("mobilenet_v2", "features.0.0"),
    "vgg16": ("vgg16_bn", "features.0"),
    "googlenet": ("googlenet", "conv1.conv"),
    "alexnet": ("alexnet", "features.0"),
}
SSDLITE = "ssdlite320_mobilenet_v3_large"  # the zoo's detection arch: backbone + head, raw outputs


def classification_archs() -> List[str]:
    """torchvision classification model names (``torchvision.models.list_models``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str, num_classes: Optional[int] = None, init_weights: bool = False) -> nn.Module:
    """A torchvision classification model by builder name, randomly initialised (``weights=None``).

    googlenet and inception_v3 come without auxiliary heads and input transform;
    ``init_weights`` picks torchvision's own initialisation for them (a slow truncated
    normal) over PyTorch's default. ``num_classes`` None keeps the builder's (1000).
    """
    from torchvision import models

    kwargs: Dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if name in _NO_AUX:
        kwargs.update(aux_logits=False, transform_input=False, init_weights=init_weights)
    return models.get_model(name, **kwargs)


def ssdlite_detector(num_classes: int = 91) -> nn.Module:
    """torchvision's SSDLite320-MobileNetV3-Large, randomly initialised (no downloads)."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)


def build_arch(arch: str) -> nn.Module:
    """A model by name, randomly initialised: what ``pantheon slice --arch`` accepts.

    Args:
        arch: a torchvision classification builder name (``resnet18``, built by
            :func:`torchvision_model` with PyTorch's default initialisation), ``ssdlite``
            (the backbone of SSDLite320-MobileNetV3-Large, returning a dict of feature
            maps), or ``package.module:factory`` (a callable returning a module).

    Raises:
        UsageError: unknown name (listing close matches), or a factory that cannot be imported.
    """
    if ":" in arch:
        return _from_factory(arch)
    if arch == "ssdlite":
        return ssdlite_detector().get_submodule("backbone")
    names = classification_archs()
    if arch not in names:
        close = difflib.get_close_matches(arch, names + ["ssdlite"], n=5) or [
            "resnet18",
            "vgg16",
            "googlenet",
        ]
        raise UsageError(
            f"unknown arch {arch!r}: try {', '.join(close)} (any torchvision classification model,"
            " 'ssdlite', or package.module:factory)"
        )
    return torchvision_model(arch)


def _from_factory(spec: str) -> nn.Module:
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load model factory {spec!r}: {exc}") from exc
    model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build(task: Any) -> nn.Module:
    """The task's model, freshly initialised (seed the global RNG first for reproducibility).

    A backbone of the zoo (:data:`_BACKBONES`) is the torchvision model with the task's
    classes and torchvision's initialisation; a 1-channel task gets a 1-channel stem;
    VGG16 below 224 px pools to 1x1 before a 512-512-classes classifier. ``SSDLITE`` is
    :class:`SSDRaw` over torchvision's detector.

    Example::

        >>> from pantheon.zoo import get_task
        >>> m = build(get_task("digits_googlenet"))
        >>> m(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    in_ch, size = task.input_shape[0], task.input_shape[1]
    arch, k = task.arch, task.num_classes
    if arch == SSDLITE:
        ssd = ssdlite_detector(k)
        return SSDRaw(ssd.get_submodule("backbone"), ssd.get_submodule("head"))
    if arch not in _BACKBONES:
        raise ModelError(f"task {task.name}: no builder for architecture {arch!r}")
    name, stem = _BACKBONES[arch]
    model = torchvision_model(name, k, init_weights=True)
    if in_ch == 1:
        parent, _, leaf = stem.rpartition(".")
        holder = model.get_submodule(parent)
        setattr(holder, leaf, _one_channel_stem(getattr(holder, leaf)))
    if name == "vgg16_bn" and size < 224:  # 25088x4096 classifier for a 1x1 map would be 90% of the weights for nothing
        model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        model.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, k)
        )
    return model


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
