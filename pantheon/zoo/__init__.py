"""The task zoo: the paper's nine tasks, the bundled ``digits`` demo tasks and a best-effort AlexNet.

``get_task(name)`` returns a :class:`~pantheon.zoo.tasks.Task`; ``list_tasks()`` all of
them. Models, exit heads, datasets and metrics live in the submodules and are
imported lazily (torchvision is not needed to list the zoo).
"""

from __future__ import annotations

from pantheon.zoo.tasks import (
    CLASSIFICATION,
    DEMO_TASKS,
    DETECTION,
    PAPER_TASKS,
    PretrainDefaults,
    Task,
    TrainDefaults,
    get_task,
    list_tasks,
)

__all__ = [
    "CLASSIFICATION",
    "DEMO_TASKS",
    "DETECTION",
    "PAPER_TASKS",
    "PretrainDefaults",
    "Task",
    "TrainDefaults",
    "get_task",
    "list_tasks",
]
