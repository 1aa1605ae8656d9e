"""The application files under deploy/apps/: the paper's three apps and the digits demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from pantheon.formats.app import load_app

APPS = Path(__file__).resolve().parents[1] / "deploy" / "apps"

# The reference artifact's settings (alpha, memory in MB) and workloads (deadlines in ms); the
# stream-by-stream comparison with its files is tests/test_reference_dropin.py.
PAPER = {
    "traffic": ({"object_detection": 20, "sign_recognition": 31}, 0.01, 25, 4),
    "robot": ({"face_detection": 20, "age_classification": 28, "gender_classification": 31,
               "emotion_classification": 31}, 0.01, 296, 4),
    "uav": ({"wildfire_detection": 20, "wildlife_recognition": 28, "scene_recognition": 31}, 0.02, 92, 3),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_apps(name):
    deadlines, alpha, memory, n_streams = PAPER[name]
    app = load_app(APPS / f"{name}.yaml")
    assert app.name == name and app.max_memory == memory
    assert set(app.tasks) == set(deadlines)
    assert all(lim.max_delta_accuracy == alpha for lim in app.tasks.values())
    assert len(app.streams) == n_streams
    for s in app.streams:
        assert s.deadline_us == deadlines[s.task] * 1000
        assert s.period_us == 33333  # 30 fps, in whole microseconds as the reference writes it
        assert s.start_us == 0 and s.end_us is None  # every camera from 0 to the app's duration
    assert app.duration_s == 30
    assert app.jitter_us == 1000
    assert [(b.task, b.rate) for b in app.best_effort] == [("alexnet", 20)]


def test_traffic_has_two_streams_of_each_task_and_answers_to_the_reference_name():
    app = load_app("traffic")
    assert [s.task for s in app.streams] == ["sign_recognition"] * 2 + ["object_detection"] * 2
    ref = load_app("indoor_smart_traffic")  # the reference artifact's name for this app
    assert ref.name == "traffic" and ref.source == app.source


def test_digits_demo_app():
    app = load_app("digits")
    assert set(app.tasks) == {"digits_resnet18", "digits_mobilenet_v2", "digits_googlenet"}
    assert all(0.03 <= lim.max_delta_accuracy <= 0.05 for lim in app.tasks.values())
    # CPU speed varies: the demo's streams are multiples of each task's full-model latency
    assert all(s.period_x and s.deadline_x and s.deadline_x <= s.period_x for s in app.streams)
    # A load where exits matter: >= 50% of the CPU by the (hot, isolated) profiles, which live
    # chained CPU execution exceeds by 1.3-2x (see the comment in digits.yaml).
    assert sum(1 / s.period_x for s in app.streams) >= 0.5


@pytest.mark.parametrize("name", ["traffic", "robot", "uav", "digits"])
def test_every_app_task_is_in_the_zoo(name):
    zoo = pytest.importorskip("pantheon.zoo.tasks")
    app = load_app(name)
    for task in list(app.tasks) + [b.task for b in app.best_effort]:
        t = zoo.get_task(task)
        assert t.name == task
    for task in app.tasks:  # planned tasks are real-time tasks with exits, not the best-effort net
        assert zoo.get_task(task).group in ("paper", "demo")
