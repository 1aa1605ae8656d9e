"""Dataset loaders: one standard on-disk format per task, read from ``--data_dir``.

Layouts (``<data_dir>`` is the root of all datasets, as the reference artifact lays them out):

==================  =============================================================================
format              where and what
==================  =============================================================================
``digits``          nothing on disk: scikit-learn's bundled 8x8 digits (1797 images), upscaled
                    bilinearly to the task's size, replicated to 3 channels; stratified
                    60/20/20 train/val/test split with seed 0 (the test split is held out).
``gtsrb``           torchvision's GTSRB layout: ``<data_dir>/gtsrb/GTSRB/Training/<class:05d>/*.ppm``
                    and ``<data_dir>/gtsrb/GTSRB/Final_Test/Images/*.ppm`` with
                    ``<data_dir>/gtsrb/GT-final_test.csv`` (``;``-separated, ``Filename``,
                    ``ClassId``). Labels come from the folder names; val = 10% of train (seed 0).
``fer2013``         ``<data_dir>/fer2013/fer2013.csv`` (columns ``emotion,pixels,Usage``; 48x48
                    grayscale pixels): Training -> train, PublicTest -> val, PrivateTest -> test.
``imagefolder``     ``<data_dir>/<dataset>/{train,val,test}/<class>/<image>`` (torchvision
                    ImageFolder); ``val/`` is optional (10% of train, seed 0).
``voc``             ``<data_dir>/<dataset>/Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
                    ``ImageSets/Main/{train,val,test}.txt`` (Pascal VOC XML; ``val.txt`` optional).
==================  =============================================================================

Images are resized to the task's input size and normalised to ``(x - 0.5) / 0.5``; a
single-channel task reads them as grayscale. Classification samples are
``(image, label)``; detection samples are ``(image, {"boxes": [N, 4] x1y1x2y2 pixels of
the resized image, "labels": [N] (1-based; 0 is the background)})``.

Bad input is a :class:`~pantheon.errors.DataError` with one line naming the path: a
missing or empty folder, an unreadable image or CSV row, a FER row that is not 48x48,
a VOC annotation whose ``<size>`` differs from its image, an unknown class name.
"""

from __future__ import annotations

import csv
import functools
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Sized, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from pantheon.errors import DataError
from pantheon.zoo.tasks import describe_layout

SPLITS = ("train", "val", "test")
FER_SIDE = 48
DIGITS_SPLIT_SEED = 0
VAL_FRACTION = 0.1

def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"dataset folder {path} does not exist ({what})")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist ({what})")
    return path


def _data_root(task: Any, data_dir: Optional[str]) -> Path:
    if not data_dir:
        raise DataError(f"task {task.name} reads its dataset from --data_dir ({describe_layout(task)})")
    return _require_dir(Path(data_dir).expanduser(), "the --data_dir root of all datasets")


def _split_indices(n: int, fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """A deterministic (rest, carved) split of ``range(n)``."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    k = max(1, int(round(n * fraction))) if n > 1 else 0
    return sorted(perm[k:]), sorted(perm[:k])


# ---------------------------------------------------------------------------------------------
# digits (the demo): in memory, no download
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _digits_tensors(channels: int, size: int) -> Tuple[Tensor, Tensor, Dict[str, List[int]]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = ((x - 0.5) / 0.5).repeat(1, channels, 1, 1).contiguous()
    y = torch.tensor(data.target, dtype=torch.long)
    idx = list(range(len(y)))
    rest, test = train_test_split(idx, test_size=0.2, stratify=data.target, random_state=DIGITS_SPLIT_SEED)
    train, val = train_test_split(
        rest, test_size=0.25, stratify=data.target[rest], random_state=DIGITS_SPLIT_SEED
    )
    return x, y, {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def digits_split(task: Any, split: str) -> TensorDataset:
    """The digits ``split`` as an in-memory ``TensorDataset`` of (image, label)."""
    _check_split(split)
    c, h, w = task.input_shape
    if h != w:
        raise DataError(f"task {task.name}: digits are square, input shape {list(task.input_shape)} is not")
    x, y, splits = _digits_tensors(c, h)
    idx = torch.tensor(splits[split])
    return TensorDataset(x[idx], y[idx])


# ---------------------------------------------------------------------------------------------
# image files
# ---------------------------------------------------------------------------------------------


def image_transform(task: Any) -> Callable[[Any], Tensor]:
    """PIL image -> normalised tensor of the task's input shape."""
    from torchvision import transforms as T

    c, h, w = task.input_shape
    steps: List[Any] = [T.Resize((h, w))]
    if c == 1:
        steps.append(T.Grayscale(1))
    steps += [T.ToTensor(), T.Normalize([0.5] * c, [0.5] * c)]
    return T.Compose(steps)


def _open_image(path: str, channels: int) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from exc


class ImageList(Dataset):
    """(path, label) samples read as images of the task's input shape."""

    def __init__(self, samples: Sequence[Tuple[str, int]], task: Any) -> None:
        self.samples = list(samples)
        self.channels = task.input_shape[0]
        self.transform = image_transform(task)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        path, label = self.samples[i]
        return self.transform(_open_image(path, self.channels)), label


def _carve(samples: List[Any], split: str) -> List[Any]:
    rest, carved = _split_indices(len(samples), VAL_FRACTION, DIGITS_SPLIT_SEED)
    return [samples[i] for i in (carved if split == "val" else rest)]


def _gtsrb_samples(task: Any, root: Path, split: str) -> List[Tuple[str, int]]:
    from torchvision.datasets.folder import make_dataset

    base = _require_dir(root / "gtsrb", "torchvision's GTSRB layout: <data_dir>/gtsrb/GTSRB/...")
    if split in ("train", "val"):
        folder = _require_dir(base / "GTSRB" / "Training", "GTSRB training images, one folder per class")
        # labels from the folder names (00000..00042), so a partial copy keeps the true class ids
        class_to_idx = {f"{i:05d}": i for i in range(task.num_classes)}
        present = {p.name for p in folder.iterdir() if p.is_dir()}
        unknown = sorted(present - set(class_to_idx))
        if unknown:
            raise DataError(f"{folder}: unexpected class folder {unknown[0]!r} (expected 00000..{task.num_classes - 1:05d})")
        try:
            samples = make_dataset(
                str(folder), {k: v for k, v in class_to_idx.items() if k in present}, extensions=(".ppm",)
            )
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"{folder}: {exc}") from exc
        return _carve(sorted(samples), split)
    images = _require_dir(base / "GTSRB" / "Final_Test" / "Images", "GTSRB test images")
    table = _require_file(base / "GT-final_test.csv", "GTSRB test labels")
    try:
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        return [(str(images / r["Filename"]), int(r["ClassId"])) for r in rows]
    except (KeyError, ValueError, TypeError, csv.Error) as exc:
        raise DataError(f"{table} is not a GTSRB label table (Filename;...;ClassId): {exc}") from exc


def _imagefolder_samples(task: Any, root: Path, split: str) -> List[Tuple[str, int]]:
    from torchvision.datasets import ImageFolder

    base = _require_dir(root / task.dataset, f"ImageFolder layout {describe_layout(task)}")
    sub = split
    if split == "val" and not (base / "val").is_dir():
        sub = "train"  # no val/: carve 10% of train
    folder = _require_dir(base / sub, f"one folder per class under {base}/{sub}")
    try:
        ds = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"{folder}: {exc}") from exc
    if len(ds.classes) != task.num_classes:
        raise DataError(
            f"{folder} has {len(ds.classes)} class folders, task {task.name} has {task.num_classes} classes"
        )
    samples = [(p, int(c)) for p, c in ds.samples]
    if sub != split or (split == "train" and not (base / "val").is_dir()):
        samples = _carve(samples, split)
    return samples


class FER2013Csv(Dataset):
    """FER2013's ``fer2013.csv``: ``emotion,pixels,Usage`` rows of 48x48 grayscale pixels."""

    USAGE = {"train": ("Training",), "val": ("PublicTest",), "test": ("PrivateTest",)}

    def __init__(self, path: Path, split: str, task: Any) -> None:
        self.task = task
        self.images: List[Tensor] = []
        self.labels: List[int] = []
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
                if missing:
                    raise DataError(f"{path} is not a FER2013 csv: no column {sorted(missing)[0]!r}")
                for line, row in enumerate(reader, start=2):
                    if row["Usage"] in self.USAGE[split]:
                        self.images.append(self._pixels(path, line, row["pixels"]))
                        self.labels.append(int(row["emotion"]))
        except (ValueError, csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: unreadable FER2013 csv ({exc.__class__.__name__}: {exc})") from exc
        self.transform = image_transform(task)

    @staticmethod
    def _pixels(path: Path, line: int, text: str) -> Tensor:
        values = [int(v) for v in text.split()]
        if len(values) != FER_SIDE * FER_SIDE:
            raise DataError(
                f"{path} line {line}: wrong image size, {len(values)} pixels instead of {FER_SIDE}x{FER_SIDE}"
            )
        return torch.tensor(values, dtype=torch.uint8).reshape(FER_SIDE, FER_SIDE)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i].numpy(), mode="L")
        if self.task.input_shape[0] == 3:
            img = img.convert("RGB")
        return self.transform(img), self.labels[i]


def _xml_text(elem: ET.Element, path: str) -> str:
    """Text of the element at ``path`` below ``elem``; a missing one is a ValueError naming it."""
    text = elem.findtext(path)
    if text is None:
        raise ValueError(f"no <{path}> in <{elem.tag}>")
    return text


class VOCDetection(Dataset):
    """Pascal VOC XML annotations: images resized to the task's size, boxes scaled with them."""

    def __init__(self, base: Path, ids: Sequence[str], task: Any) -> None:
        self.base = base
        self.task = task
        self.class_to_idx = {n: i for i, n in enumerate(task.class_names) if i > 0}
        self.items = [self._annotation(i) for i in ids]
        self.transform = image_transform(task)

    def _annotation(self, image_id: str) -> Dict[str, Any]:
        path = _require_file(self.base / "Annotations" / f"{image_id}.xml", "Pascal VOC annotation")
        try:
            root = ET.parse(path).getroot()
            size = root.find("size")
            wh = (int(_xml_text(size, "width")), int(_xml_text(size, "height"))) if size is not None else None
            fname = root.findtext("filename") or f"{image_id}.jpg"
            boxes, labels = [], []
            for obj in root.iter("object"):
                name = (obj.findtext("name") or "").strip()
                if name not in self.class_to_idx:
                    raise DataError(
                        f"{path}: unknown class {name!r}; task {self.task.name} has {', '.join(self.class_to_idx)}"
                    )
                boxes.append([float(_xml_text(obj, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")])
                labels.append(self.class_to_idx[name])
        except DataError:
            raise
        except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not a Pascal VOC annotation ({exc.__class__.__name__}: {exc})") from exc
        image = self.base / "JPEGImages" / fname
        return {"xml": path, "image": _require_file(image, f"image of {path.name}"), "size": wh,
                "boxes": boxes, "labels": labels}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        item = self.items[i]
        img = _open_image(str(item["image"]), self.task.input_shape[0])
        if item["size"] is not None and tuple(item["size"]) != tuple(img.size):
            w, h = item["size"]
            raise DataError(
                f"{item['image']}: wrong image size {img.size[0]}x{img.size[1]}, {item['xml'].name} says {w}x{h}"
            )
        _, th, tw = self.task.input_shape
        sx, sy = tw / img.size[0], th / img.size[1]
        boxes = torch.tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4) * torch.tensor([sx, sy, sx, sy])
        target = {"boxes": boxes, "labels": torch.tensor(item["labels"], dtype=torch.long)}
        return self.transform(img), target


def _voc_ids(base: Path, split: str) -> List[str]:
    sets = base / "ImageSets" / "Main"
    name = split
    if split == "val" and not (sets / "val.txt").is_file():
        name = "train"
    path = _require_file(sets / f"{name}.txt", "Pascal VOC image set, one image id per line")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path} lists no image")
    if name != split or (split == "train" and not (sets / "val.txt").is_file()):
        ids = _carve(ids, split)
    return ids


def load_split(task: Any, split: str, data_dir: Optional[str] = None) -> Dataset:
    """The ``split`` of ``task``'s dataset; see the module docstring for the layouts.

    Example::

        >>> ds = load_split(get_task("digits_resnet18"), "test")
        >>> len(ds), ds[0][0].shape
        (360, torch.Size([3, 32, 32]))
    """
    _check_split(split)
    fmt = task.data_format
    if fmt == "digits":
        return digits_split(task, split)
    root = _data_root(task, data_dir)
    if fmt == "gtsrb":
        ds: Dataset = ImageList(_gtsrb_samples(task, root, split), task)
    elif fmt == "imagefolder":
        ds = ImageList(_imagefolder_samples(task, root, split), task)
    elif fmt == "fer2013":
        path = _require_file(root / "fer2013" / "fer2013.csv", "FER2013 csv: emotion,pixels,Usage")
        ds = FER2013Csv(path, split, task)
    elif fmt == "voc":
        base = _require_dir(root / task.dataset, f"Pascal VOC layout {describe_layout(task)}")
        ds = VOCDetection(base, _voc_ids(base, split), task)
    else:  # pragma: no cover - the registry only uses the formats above
        raise DataError(f"task {task.name}: unknown dataset format {fmt!r}")
    if dataset_len(ds) == 0:
        raise DataError(f"the {split} split of {task.name} under {root} is empty")
    return ds


def check_sample(task: Any, ds: Dataset) -> None:
    """Read the first sample and check it has the task's input shape (a 'wrong image size')."""
    image = ds[0][0]
    if tuple(image.shape) != tuple(task.input_shape):
        raise DataError(
            f"wrong image size: the {task.name} dataset yields {list(image.shape)}, "
            f"the model expects {list(task.input_shape)}"
        )


def collate(task: Any) -> Optional[Callable[[List[Any]], Any]]:
    """DataLoader collate function: default for classification, lists of targets for detection."""
    return detection_collate if task.is_detection else None


def detection_collate(batch: List[Tuple[Tensor, Dict[str, Tensor]]]) -> Tuple[Tensor, List[Dict[str, Tensor]]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def fingerprint_inputs(task: Any, data_dir: Optional[str]) -> Dict[str, Any]:
    """What identifies the dataset cheaply: digits' size, or the files' names, sizes and mtimes."""
    if task.data_format == "digits":
        import sklearn

        return {"dataset": "sklearn-digits", "sklearn": sklearn.__version__, "shape": list(task.input_shape)}
    root = _data_root(task, data_dir)
    base = root / ("gtsrb" if task.data_format == "gtsrb" else "fer2013" if task.data_format == "fer2013"
                   else task.dataset)
    count, total, latest = 0, 0, 0.0
    for dirpath, _, files in os.walk(base):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            count, total, latest = count + 1, total + st.st_size, max(latest, st.st_mtime)
    return {"dataset": str(base.resolve()), "files": count, "bytes": total, "mtime": latest}


def load_splits(task: Any, data_dir: Optional[str], limit: Optional[int], batch_size: int,
                num_workers: int) -> Tuple[Dict[str, Dataset], Dict[str, Any]]:
    """The task's train/val/test splits (each cut to ``limit`` samples; the first sample checked
    against the task's input shape) and the ``DataLoader`` options that suit them."""
    splits = {s: subset(task.load_split(s, data_dir), limit) for s in ("train", "val", "test")}
    check_sample(task, splits["train"])
    workers = 0 if task.data_format == "digits" else num_workers  # in memory: workers only add overhead
    return splits, {"batch_size": batch_size, "num_workers": workers, "collate_fn": collate(task)}


def dataset_len(ds: Dataset) -> int:
    """``len(ds)``. torch's ``Dataset`` type declares no ``__len__``, but every dataset here has one.

    Raises:
        TypeError: ``ds`` has no length (an iterable-style dataset).
    """
    if not isinstance(ds, Sized):
        raise TypeError(f"{type(ds).__name__} has no length")
    return len(ds)


def subset(ds: Dataset, n: Optional[int]) -> Dataset:
    """The first ``n`` samples (all when ``n`` is None): quick runs and tests."""
    if n is None or n >= dataset_len(ds):
        return ds
    return Subset(ds, list(range(n)))
