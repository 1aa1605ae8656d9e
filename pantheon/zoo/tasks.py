"""The task registry: the paper's nine tasks, the digits demo tasks and a best-effort AlexNet.

A :class:`Task` is a typed record (name, backbone, input shape, classes, Table 3
training defaults, dataset format) plus the functions that build its pieces, each
imported lazily so that ``pantheon zoo`` stays fast:

- :meth:`Task.build_model` -> the traceable ``nn.Module`` (one tensor in; logits out,
  or ``(cls_logits, bbox_regression)`` for detection),
- :meth:`Task.build_exit` -> an exit head for a feature shape,
- :meth:`Task.load_split` -> a dataset split read from ``--data_dir``,
- :meth:`Task.metric_name` / :mod:`pantheon.zoo.metrics` -> top-1 or mAP@0.5.

Example::

    >>> from pantheon.zoo import get_task
    >>> t = get_task("digits_resnet18")
    >>> t.input_shape, t.num_classes
    ((3, 32, 32), 10)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pantheon.errors import UnknownTaskError

CLASSIFICATION = "classification"
DETECTION = "detection"


@dataclass(frozen=True)
class TrainDefaults:
    """Exit-training defaults of a task (the reference artifact's training settings)."""

    learning_rate: float
    batch_size: int
    weight_decay: float
    max_epochs: int


@dataclass(frozen=True)
class PretrainDefaults:
    """How ``pantheon pretrain`` trains the full backbone (digits: a few fast epochs)."""

    learning_rate: float
    batch_size: int
    weight_decay: float
    epochs: int


@dataclass(frozen=True)
class Task:
    """One DNN task of the zoo. See the module docstring."""

    name: str
    title: str
    arch: str
    kind: str
    input_shape: Tuple[int, int, int]
    num_classes: int
    defaults: TrainDefaults
    pretrain_defaults: PretrainDefaults
    data_format: str  # digits | gtsrb | fer2013 | imagefolder | voc
    dataset: str  # folder under --data_dir (unused for digits)
    class_names: Tuple[str, ...] = ()
    group: str = "paper"  # paper | demo | best-effort
    notes: str = ""
    exit_channels: int = 128
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_detection(self) -> bool:
        return self.kind == DETECTION

    @property
    def needs_data_dir(self) -> bool:
        return self.data_format != "digits"

    @property
    def metric_name(self) -> str:
        return "mAP@0.5" if self.is_detection else "top-1"

    def build_model(self) -> Any:
        """A freshly initialised, fx-traceable ``nn.Module`` for this task (no downloads)."""
        from pantheon.zoo import models

        return models.build(self)

    def build_exit(self, feature_shape: Sequence[int]) -> Any:
        """An exit head taking a feature of ``feature_shape`` (without batch dim)."""
        from pantheon.zoo import heads

        return heads.build_exit(self, feature_shape)

    def load_split(self, split: str, data_dir: Optional[str] = None) -> Any:
        """The ``train``/``val``/``test`` split as a ``torch.utils.data.Dataset``."""
        from pantheon.zoo import datasets

        return datasets.load_split(self, split, data_dir)

    def data_layout(self) -> str:
        """One line describing where and in which format the dataset is read."""
        return describe_layout(self)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["class_names"] = list(self.class_names)
        d["metric"] = self.metric_name
        d["data_layout"] = self.data_layout()
        return d


_LAYOUTS = {
    "digits": "bundled with scikit-learn (no download): 1797 8x8 digits, 60/20/20 split, seed 0",
    "gtsrb": "<data_dir>/gtsrb/GTSRB/Training/<class>/*.ppm, .../Final_Test/Images + gtsrb/GT-final_test.csv",
    "fer2013": "<data_dir>/fer2013/fer2013.csv (emotion,pixels,Usage)",
    "imagefolder": "<data_dir>/DATASET/{train,val,test}/<class>/*.jpg (ImageFolder; val optional)",
    "voc": "<data_dir>/DATASET/{Annotations,JPEGImages,ImageSets/Main} (Pascal VOC XML)",
}


def describe_layout(task: Task) -> str:
    """The on-disk layout a task reads, one line."""
    return _LAYOUTS[task.data_format].replace("DATASET", task.dataset)


def _cls(
    name: str,
    title: str,
    arch: str,
    shape: Tuple[int, int, int],
    classes: int,
    table3: Tuple[float, int, float, int],
    fmt: str,
    dataset: str,
    **kw: Any,
) -> Task:
    lr, bs, wd, ep = table3
    pre = kw.pop("pretrain", PretrainDefaults(lr, bs, wd, ep))
    return Task(
        name=name,
        title=title,
        arch=arch,
        kind=CLASSIFICATION,
        input_shape=shape,
        num_classes=classes,
        defaults=TrainDefaults(lr, bs, wd, ep),
        pretrain_defaults=pre,
        data_format=fmt,
        dataset=dataset,
        **kw,
    )


#: Input of the detection tasks: SSD's classic 300x300 (the reference deploys its SSDLite detectors at
#: 3x300x300). torchvision's SSDLite320 backbone and head are size-agnostic; the anchors follow the
#: feature-map sizes of the input actually used (pantheon.zoo.models.ssd_anchors).
SSD_INPUT: Tuple[int, int, int] = (3, 300, 300)


def _det(name: str, title: str, classes: Tuple[str, ...], table3: Tuple[float, int, float, int], dataset: str) -> Task:
    lr, bs, wd, ep = table3
    return Task(
        name=name,
        title=title,
        arch="ssdlite320_mobilenet_v3_large",
        kind=DETECTION,
        input_shape=SSD_INPUT,
        num_classes=len(classes) + 1,  # torchvision convention: class 0 is the background
        defaults=TrainDefaults(lr, bs, wd, ep),
        pretrain_defaults=PretrainDefaults(lr, bs, wd, ep),
        data_format="voc",
        dataset=dataset,
        class_names=("__background__",) + classes,
        notes="torchvision's SSDLite320 layers run at 300x300 (the reference's SSD input); chunks end at the "
              "raw head outputs; decode + NMS run outside (pantheon.zoo.metrics)",
    )


# Demo tasks: small inputs, fast pretraining (seconds per epoch on 2 CPU cores); 64-channel exit
# adapters keep the 31 exits of MobileNetV2 cheap to train on a CPU. GoogLeNet reads 48x48 so the
# three models differ in latency (batch 1, one CPU thread: ~6, ~9, ~14 ms) as well as in depth.
def _digits(arch: str, title: str, shape: Tuple[int, int, int], pretrain_lr: float = 0.05) -> Task:
    """A demo task on scikit-learn's digits; 64-channel exit adapters."""
    return _cls(
        f"digits_{arch}", f"Digits (demo) on {title}", arch, shape, 10, (0.05, 64, 5e-4, 4), "digits", "digits",
        group="demo", exit_channels=64,
        pretrain=PretrainDefaults(learning_rate=pretrain_lr, batch_size=64, weight_decay=5e-4, epochs=4),
        notes="scikit-learn's bundled 8x8 digits upscaled, 60/20/20 stratified split (seed 0), no download",
    )


_TASKS: List[Task] = [
    _det("object_detection", "Traffic light detection", ("red", "green"), (1e-3, 24, 5e-4, 50), "traffic_lights"),
    _cls(
        "sign_recognition", "Traffic sign classification", "mobilenet_v2", (3, 32, 32), 43,
        (1e-2, 256, 1e-3, 100), "gtsrb", "gtsrb",
    ),
    _det("face_detection", "Face detection", ("face",), (1e-3, 24, 5e-4, 100), "fddb"),
    _cls(
        "age_classification", "Age classification", "resnet34", (3, 64, 64), 8,
        (1e-3, 128, 1e-4, 200), "imagefolder", "adience_age",
    ),
    _cls(
        "gender_classification", "Gender classification", "vgg16", (3, 32, 32), 2,
        (1e-3, 128, 1e-4, 50), "imagefolder", "adience_gender",
    ),
    _cls(
        "emotion_classification", "Emotion recognition", "resnet50", (1, 48, 48), 7,
        (1e-2, 64, 5e-4, 100), "fer2013", "fer2013",
    ),
    _det("wildfire_detection", "Wildfire detection", ("fire",), (1e-3, 24, 5e-4, 100), "wildfire"),
    _cls(
        "wildlife_recognition", "Wildlife identification", "googlenet", (3, 64, 64), 20,
        (1e-2, 64, 5e-3, 100), "imagefolder", "oregon_wildlife",
    ),
    _cls(
        "scene_recognition", "Scene recognition", "resnet18", (1, 128, 128), 15,
        (1e-2, 256, 1e-2, 100), "imagefolder", "scene15",
    ),
    _digits("resnet18", "ResNet18", (3, 32, 32)),
    _digits("mobilenet_v2", "MobileNetV2", (3, 32, 32)),
    _digits("googlenet", "GoogLeNet", (3, 48, 48), pretrain_lr=0.02),  # 0.05 diverges early
    _cls(
        "alexnet", "Best-effort ImageNet classifier", "alexnet", (3, 224, 224), 1000,
        (1e-2, 128, 5e-4, 90), "imagefolder", "imagenet", group="best-effort",
        notes="best-effort load only (runs whole on the low-priority stream); no exits needed",
    ),
]

_REGISTRY: Dict[str, Task] = {t.name: t for t in _TASKS}

PAPER_TASKS = tuple(t.name for t in _TASKS if t.group == "paper")
DEMO_TASKS = tuple(t.name for t in _TASKS if t.group == "demo")


def list_tasks(group: Optional[str] = None) -> List[Task]:
    """Every task of the zoo in a stable order (paper, demo, best-effort), optionally one group."""
    return [t for t in _TASKS if group is None or t.group == group]


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`UnknownTaskError` lists the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(_REGISTRY)}") from None


def zoo_rows() -> List[Dict[str, Any]]:
    """One JSON-able record per task (``pantheon zoo --json``)."""
    return [t.to_dict() for t in _TASKS]
