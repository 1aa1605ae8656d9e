"""The task zoo: registry, models, exit heads, dataset loaders on tiny real files, metrics."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import DataError, UnknownTaskError
from pantheon.zoo import DEMO_TASKS, PAPER_TASKS, get_task, heads, list_tasks, metrics
from pantheon.zoo import datasets as zd

PAPER = [
    "object_detection", "sign_recognition", "face_detection", "age_classification", "gender_classification",
    "emotion_classification", "wildfire_detection", "wildlife_recognition", "scene_recognition",
]


def _png(path, size=(40, 30), color=(200, 10, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)


# ---------------------------------------------------------------------------------------------
# registry and CLI
# ---------------------------------------------------------------------------------------------


def test_registry_has_the_paper_tasks_the_demo_and_alexnet():
    assert list(PAPER_TASKS) == PAPER
    assert set(DEMO_TASKS) == {"digits_resnet18", "digits_mobilenet_v2", "digits_googlenet"}
    assert get_task("alexnet").group == "best-effort"
    backbones = {t.name: t.arch for t in list_tasks()}
    assert backbones["sign_recognition"] == "mobilenet_v2"
    assert backbones["gender_classification"] == "vgg16"
    assert backbones["emotion_classification"] == "resnet50"
    assert backbones["wildlife_recognition"] == "googlenet"
    # as the reference builds them: age on ResNet34, scene on ResNet18
    assert backbones["age_classification"] == "resnet34" and backbones["scene_recognition"] == "resnet18"
    assert {backbones[t] for t in ("object_detection", "face_detection", "wildfire_detection")} == {
        "ssdlite320_mobilenet_v3_large"
    }
    sign = get_task("sign_recognition")
    assert sign.input_shape == (3, 32, 32) and sign.num_classes == 43
    # Table 3 of the appendix
    d = sign.defaults
    assert (d.learning_rate, d.batch_size, d.weight_decay, d.max_epochs) == (1e-2, 256, 1e-3, 100)
    d = get_task("age_classification").defaults
    assert (d.learning_rate, d.batch_size, d.weight_decay, d.max_epochs) == (1e-3, 128, 1e-4, 200)


def test_unknown_task_lists_the_known_names():
    with pytest.raises(UnknownTaskError) as err:
        get_task("traffic_sign")
    assert "sign_recognition" in str(err.value) and "digits_resnet18" in str(err.value)


def test_cli_zoo_json_and_table():
    res = CliRunner().invoke(app, ["zoo", "--json"])
    assert res.exit_code == 0, res.output
    tasks = {t["name"]: t for t in json.loads(res.stdout)["tasks"]}
    assert set(PAPER) <= set(tasks)
    assert tasks["emotion_classification"]["input_shape"] == [1, 48, 48]
    assert tasks["object_detection"]["metric"] == "mAP@0.5"
    assert tasks["scene_recognition"]["defaults"]["weight_decay"] == 1e-2
    table = CliRunner().invoke(app, ["zoo"])
    assert table.exit_code == 0 and "wildlife_recognition" in table.stdout and "fer2013" in table.stdout


def test_cli_unknown_task_is_one_line_exit_2():
    res = CliRunner().invoke(app, ["construct", "--task", "nope"])
    assert res.exit_code == 2
    assert "unknown task 'nope'" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------------------------------------
# models and exit heads: every paper task slices and takes an exit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER)
def test_paper_task_model_slices_and_takes_an_exit(name):
    from pantheon.offline.exits import block_out_shapes
    from pantheon.offline.slice import slice_model

    task = get_task(name)
    torch.manual_seed(0)
    model = task.build_model().eval()
    res = slice_model(model, torch.zeros(1, *task.input_shape))
    assert res.equivalent and len(res.chunks) >= 6
    shapes = block_out_shapes(res.chunks[:-1], task.input_shape)
    j = len(shapes) // 2
    head = task.build_exit(shapes[j]).eval()
    x = torch.randn(2, *task.input_shape)
    with torch.no_grad():
        h = x
        for c in res.chunks[: j + 1]:
            h = c(h)
        out = head(h)
        ref = model(x)
    if task.is_detection:
        cls, box = out
        assert cls.shape[0] == 2 and cls.shape[2] == task.num_classes == ref[0].shape[2]
        assert box.shape[:2] == cls.shape[:2] and box.shape[2] == 4
        anchors = heads.exit_anchors((head.out_h, head.out_w), task.input_shape[1:])
        assert anchors.shape == (cls.shape[1], 4)
    else:
        assert out.shape == ref.shape == (2, task.num_classes)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "vgg16", "googlenet", "alexnet"])
def test_every_backbone_takes_one_channel_and_its_classes(arch):
    import dataclasses

    from pantheon.zoo import models

    side = 64 if arch == "alexnet" else 32
    task = dataclasses.replace(get_task("digits_resnet18"), arch=arch, input_shape=(1, side, side), num_classes=7)
    model = models.build(task).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, side, side)).shape == (2, 7)
    if arch == "vgg16":  # small input: the light classifier over a 1x1 map
        assert isinstance(model.avgpool, torch.nn.AdaptiveAvgPool2d) and model.classifier[0].in_features == 512


def test_slice_and_zoo_build_through_the_same_builders():
    from pantheon.offline import slice as sl
    from pantheon.zoo import models

    assert sl.build_arch is models.build_arch
    zoo, sliced = get_task("digits_googlenet").build_model(), sl.build_arch("googlenet")
    for m in (zoo, sliced):  # no auxiliary heads, no input transform, in both
        assert m.aux1 is None and m.aux2 is None and not m.transform_input
    assert [type(m) for m in zoo.modules()] == [type(m) for m in sliced.modules()]
    assert isinstance(sl.build_arch("ssdlite"), type(models.ssdlite_detector().backbone))


def test_ssd_anchors_match_the_original_head():
    from pantheon.zoo.models import ssd_anchors

    task = get_task("face_detection")
    model = task.build_model().eval()
    cls, box = model(torch.zeros(1, *task.input_shape))
    anchors = ssd_anchors(model, task.input_shape)
    assert anchors.shape == (cls.shape[1], 4) == (box.shape[1], 4)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2  # SSD default boxes may overhang the image, centres may not
    assert float(centers.min()) >= 0 and float(centers.max()) <= 300


# ---------------------------------------------------------------------------------------------
# dataset loaders on tiny datasets in their standard formats
# ---------------------------------------------------------------------------------------------


def test_digits_split_is_stratified_deterministic_and_held_out():
    task = get_task("digits_resnet18")
    parts = {s: zd.digits_split(task, s) for s in zd.SPLITS}
    sizes = {s: len(p) for s, p in parts.items()}
    assert sum(sizes.values()) == 1797 and 1070 <= sizes["train"] <= 1080 and sizes["test"] == 360
    x, y = parts["test"][0]
    assert x.shape == (3, 32, 32) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    counts = torch.bincount(parts["test"].tensors[1], minlength=10)
    assert int(counts.min()) >= 34  # stratified: every digit ~36 times in the test split
    # the same split on every call: no image of test appears in train
    train = parts["train"].tensors[0].flatten(1)
    test = parts["test"].tensors[0].flatten(1)
    assert torch.cdist(test[:50], train).min() > 0
    again = zd.digits_split(task, "test")
    assert torch.equal(again.tensors[1], parts["test"].tensors[1])


def test_imagefolder_reads_labels_sizes_and_carves_val(tmp_path):
    task = get_task("age_classification")  # 8 classes, 3x64x64
    for c in range(8):
        for i in range(5):
            _png(tmp_path / "adience_age" / "train" / f"class{c}" / f"{i}.png", color=(c * 30, 0, 0))
        _png(tmp_path / "adience_age" / "test" / f"class{c}" / "0.png", size=(100, 80), color=(c * 30, 0, 0))
    train = zd.load_split(task, "train", str(tmp_path))
    val = zd.load_split(task, "val", str(tmp_path))
    test = zd.load_split(task, "test", str(tmp_path))
    assert len(train) + len(val) == 40 and len(val) == 4 and len(test) == 8
    assert {p for p, _ in train.samples}.isdisjoint({p for p, _ in val.samples})
    img, label = test[3]
    assert img.shape == (3, 64, 64) and label == 3
    # the red channel encodes the class: normalised value (c*30/255 - 0.5) / 0.5
    assert abs(float(img[0].mean()) - ((3 * 30 / 255) - 0.5) / 0.5) < 0.02


def test_imagefolder_wrong_class_count_and_missing_folder(tmp_path):
    task = get_task("gender_classification")  # 2 classes
    for c in ("f", "m", "x"):
        _png(tmp_path / "adience_gender" / "train" / c / "0.png")
    with pytest.raises(DataError, match="3 class folders"):
        zd.load_split(task, "train", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        zd.load_split(task, "test", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        zd.load_split(task, "train", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="--data_dir"):
        zd.load_split(task, "train", None)


def test_corrupt_image_is_one_clear_error(tmp_path):
    task = get_task("gender_classification")
    _png(tmp_path / "adience_gender" / "train" / "f" / "0.png")
    bad = tmp_path / "adience_gender" / "train" / "m" / "0.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png at all")
    ds = zd.load_split(task, "train", str(tmp_path))
    idx = [i for i, (p, _) in enumerate(ds.samples) if p.endswith("m/0.png")][0]
    with pytest.raises(DataError, match="cannot read image .*m/0.png"):
        ds[idx]


def test_gtsrb_layout_keeps_true_class_ids(tmp_path):
    task = get_task("sign_recognition")
    base = tmp_path / "gtsrb"
    for cls in (0, 2, 42):
        for i in range(4):
            _png(base / "GTSRB" / "Training" / f"{cls:05d}" / f"00000_{i:05d}.ppm", size=(35, 37))
    _png(base / "GTSRB" / "Final_Test" / "Images" / "00000.ppm", size=(50, 52))
    _png(base / "GTSRB" / "Final_Test" / "Images" / "00001.ppm", size=(31, 29))
    (base / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
        "00000.ppm;50;52;5;5;45;47;16\n00001.ppm;31;29;5;5;26;24;2\n"
    )
    train = zd.load_split(task, "train", str(tmp_path))
    val = zd.load_split(task, "val", str(tmp_path))
    assert len(train) + len(val) == 12 and len(val) == 1
    assert sorted({lab for _, lab in train.samples + val.samples}) == [0, 2, 42]
    test = zd.load_split(task, "test", str(tmp_path))
    assert [lab for _, lab in test.samples] == [16, 2]
    assert test[0][0].shape == (3, 32, 32)


def _fer_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["emotion,pixels,Usage"] + [f"{e},{px},{u}" for e, px, u in rows]
    path.write_text("\n".join(lines) + "\n")


def test_fer2013_csv_splits_labels_and_pixels(tmp_path):
    task = get_task("emotion_classification")
    full = " ".join(["0"] * (48 * 47) + ["255"] * 48)  # last row white
    _fer_csv(tmp_path / "fer2013" / "fer2013.csv", [
        (3, full, "Training"), (5, full, "Training"), (6, full, "PublicTest"), (1, full, "PrivateTest"),
    ])
    train = zd.load_split(task, "train", str(tmp_path))
    assert len(train) == 2 and [train[i][1] for i in range(2)] == [3, 5]
    img = train[0][0]
    assert img.shape == (1, 48, 48)
    assert float(img[0, -1].mean()) == pytest.approx(1.0) and float(img[0, 0].mean()) == pytest.approx(-1.0)
    assert zd.load_split(task, "val", str(tmp_path))[0][1] == 6
    assert zd.load_split(task, "test", str(tmp_path))[0][1] == 1


def test_fer2013_wrong_image_size(tmp_path):
    task = get_task("emotion_classification")
    _fer_csv(tmp_path / "fer2013" / "fer2013.csv", [(3, " ".join(["7"] * 100), "Training")])
    with pytest.raises(DataError, match="wrong image size, 100 pixels instead of 48x48"):
        zd.load_split(task, "train", str(tmp_path))


def _voc(base, image_id, size, objects, declared=None):
    w, h = size
    _png(base / "JPEGImages" / f"{image_id}.jpg", size=size)
    dw, dh = declared or size
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    xml = (f"<annotation><filename>{image_id}.jpg</filename><size><width>{dw}</width><height>{dh}</height>"
           f"<depth>3</depth></size>{objs}</annotation>")
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "Annotations" / f"{image_id}.xml").write_text(xml)


def test_voc_reads_boxes_scaled_to_the_input(tmp_path):
    task = get_task("object_detection")  # classes red, green; input 300x300
    base = tmp_path / "traffic_lights"
    _voc(base, "a", (640, 480), [("red", (64, 48, 128, 96)), ("green", (320, 240, 640, 480))])
    _voc(base, "b", (300, 300), [("green", (10, 20, 30, 40))])
    _voc(base, "c", (160, 160), [])
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    (base / "ImageSets" / "Main" / "val.txt").write_text("c\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("a\n")
    ds = zd.load_split(task, "train", str(tmp_path))
    img, target = ds[0]
    assert img.shape == (3, 300, 300)
    assert torch.allclose(target["boxes"], torch.tensor([[30.0, 30.0, 60.0, 60.0], [150.0, 150.0, 300.0, 300.0]]))
    assert target["labels"].tolist() == [1, 2]
    assert zd.load_split(task, "val", str(tmp_path))[0][1]["boxes"].shape == (0, 4)
    batch = zd.detection_collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 300, 300) and len(batch[1]) == 2


def test_voc_bad_inputs(tmp_path):
    task = get_task("face_detection")
    base = tmp_path / "fddb"
    _voc(base, "a", (100, 100), [("cat", (1, 1, 5, 5))])
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    with pytest.raises(DataError, match="unknown class 'cat'"):
        zd.load_split(task, "train", str(tmp_path))
    _voc(base, "a", (100, 100), [("face", (1, 1, 5, 5))], declared=(200, 150))
    ds = zd.load_split(task, "train", str(tmp_path))
    with pytest.raises(DataError, match="wrong image size 100x100, a.xml says 200x150"):
        ds[0]
    (base / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="not a Pascal VOC annotation"):
        zd.load_split(task, "train", str(tmp_path))
    (base / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>100</width><height>100</height></size>"
        "<object><name>face</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object></annotation>"
    )
    with pytest.raises(DataError, match=r"not a Pascal VOC annotation \(ValueError: no <bndbox/ymax> in <object>\)"):
        zd.load_split(task, "train", str(tmp_path))


def test_dataset_len_and_subset():
    from torch.utils.data import IterableDataset, TensorDataset

    ds = TensorDataset(torch.zeros(5, 2))
    assert zd.dataset_len(ds) == 5
    assert zd.dataset_len(zd.subset(ds, 3)) == 3 and zd.subset(ds, 9) is ds and zd.subset(ds, None) is ds

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(TypeError, match="Stream has no length"):
        zd.dataset_len(Stream())


def test_detection_exits_refuse_what_is_not_a_detection_exit():
    from pantheon.errors import ModelError
    from pantheon.offline.exits import exit_anchors, task_loss

    task = get_task("face_detection")
    with pytest.raises(ModelError, match="needs detection exits, not Identity"):
        exit_anchors(task, torch.nn.Identity(), [torch.nn.Identity()])
    with pytest.raises(ModelError, match="model is an SSDRaw, not Identity"):
        exit_anchors(task, torch.nn.Identity(), [])
    with pytest.raises(ModelError, match="needs the exit's anchors"):
        task_loss(task, (torch.zeros(1, 4, 2), torch.zeros(1, 4, 4)), [], anchors=None)


def test_check_sample_reports_wrong_image_size():
    task = get_task("digits_resnet18")
    other = torch.utils.data.TensorDataset(torch.zeros(2, 3, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(DataError, match=r"wrong image size: .* \[3, 28, 28\], the model expects \[3, 32, 32\]"):
        zd.check_sample(task, other)


# ---------------------------------------------------------------------------------------------
# metrics and detection post-processing
# ---------------------------------------------------------------------------------------------


def test_box_codes_round_trip_and_decode_finds_the_object():
    anchors = heads.exit_anchors((4, 4), (64, 64))
    gt = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    iou = metrics.box_iou(gt, anchors)[0]
    best = int(iou.argmax())
    codes = torch.zeros(1, anchors.shape[0], 4)
    codes[0, best] = metrics.encode_boxes(gt, anchors[best : best + 1])[0]
    assert torch.allclose(metrics.decode_boxes(codes, anchors)[0, best], gt[0], atol=1e-4)
    logits = torch.full((1, anchors.shape[0], 3), -10.0)
    logits[..., 0] = 10.0
    logits[0, best] = torch.tensor([-10.0, -10.0, 10.0])
    dets = metrics.decode_detections(logits, codes, anchors, (64, 64), score_thresh=0.5)[0]
    assert dets["labels"].tolist() == [2]
    assert torch.allclose(dets["boxes"][0], gt[0], atol=1e-3)
    m = metrics.MeanAP50(anchors, (64, 64))
    m.update((logits, codes), [{"boxes": gt, "labels": torch.tensor([2])}])
    assert m.compute() == pytest.approx(1.0)
    miss = metrics.MeanAP50(anchors, (64, 64))
    miss.update((logits, codes), [{"boxes": torch.tensor([[40.0, 40.0, 60.0, 60.0]]), "labels": torch.tensor([2])}])
    assert miss.compute() == pytest.approx(0.0)


def test_ssd_loss_prefers_the_right_answer():
    anchors = heads.exit_anchors((4, 4), (64, 64))
    target = [{"boxes": torch.tensor([[10.0, 12.0, 30.0, 40.0]]), "labels": torch.tensor([1])}]
    torch.manual_seed(0)
    wrong_cls, wrong_box = torch.randn(1, anchors.shape[0], 2), torch.randn(1, anchors.shape[0], 4)
    iou = metrics.box_iou(target[0]["boxes"], anchors)[0]
    pos = iou >= 0.5
    pos[iou.argmax()] = True
    good_cls = torch.zeros(1, anchors.shape[0], 2)
    good_cls[0, :, 0] = 10.0
    good_cls[0, pos] = torch.tensor([-10.0, 10.0])
    good_box = torch.zeros(1, anchors.shape[0], 4)
    good_box[0, pos] = metrics.encode_boxes(target[0]["boxes"].expand(int(pos.sum()), 4), anchors[pos])
    bad = metrics.ssd_loss(wrong_cls, wrong_box, anchors, target)
    good = metrics.ssd_loss(good_cls, good_box, anchors, target)
    assert torch.isfinite(bad) and float(good) < 0.01 < float(bad)


def test_nms_fallback_matches_torchvision():
    torch.manual_seed(1)
    xy = torch.rand(30, 2) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(30, 2) * 20], dim=1)
    scores = torch.rand(30)
    from torchvision.ops import nms as tv_nms

    import pantheon.zoo.metrics as zm

    expected = tv_nms(boxes, scores, 0.3)
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision on the board")
        return real_import(name, *args, **kwargs)

    builtins.__import__ = no_torchvision
    try:
        got = zm.nms(boxes, scores, 0.3)
    finally:
        builtins.__import__ = real_import
    assert got.tolist() == expected.tolist()
