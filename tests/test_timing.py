"""The one timing loop (``pantheon.online.timing.time_calls``): order, hooks, budget, what a sample covers."""

from __future__ import annotations

import time

import pytest
import torch

from pantheon.online import timing
from pantheon.online.timing import MIN_BUDGET_ROUNDS, time_calls


def test_rounds_warmup_rotation_and_hooks_in_order():
    log = []
    calls = [lambda name=name: log.append(name) for name in "abc"]
    samples = time_calls(
        calls, 2, warmup=1, rotate=True, sync=lambda: log.append("sync"),
        before_sample=lambda: log.append("flush"), on_round=lambda r: log.append(f"round {r}"),
    )
    assert [len(s) for s in samples] == [2, 2, 2]
    assert all(isinstance(ns, int) and ns >= 0 for s in samples for ns in s)
    timed = lambda c: ["flush", "sync", c, "sync"]  # noqa: E731
    assert log == (
        ["a", "b", "c", "round 0"]  # warm-up: untimed, no hooks
        + timed("b") + timed("c") + timed("a") + ["round 1"]  # round 1 starts at call 1
        + timed("c") + timed("a") + timed("b") + ["round 2"]
    )


def test_without_rotation_every_round_runs_in_list_order():
    log = []
    time_calls([lambda: log.append(0), lambda: log.append(1)], 3)
    assert log == [0, 1] * 3


def test_a_sample_is_the_call_only():
    slow_hook = 0.2
    (samples,) = time_calls([lambda: time.sleep(0.01)], 2, before_sample=lambda: time.sleep(slow_hook))
    assert all(0.01e9 <= ns < slow_hook * 1e9 for ns in samples)


def test_budget_stops_after_the_minimum_rounds():
    rounds = []
    (samples,) = time_calls([lambda: None], 1000, warmup=2, budget_s=0.0, on_round=rounds.append)
    assert len(samples) == MIN_BUDGET_ROUNDS and rounds == list(range(2 + MIN_BUDGET_ROUNDS))
    (samples,) = time_calls([lambda: None], 50, budget_s=60.0)
    assert len(samples) == 50


def test_repeat_must_be_positive():
    with pytest.raises(ValueError, match="repeat"):
        time_calls([lambda: None], 0)


def test_time_module_on_cpu_flushes_before_every_sample(monkeypatch):
    flushes = []
    calls = []

    class Count(torch.nn.Module):
        def forward(self, x):
            calls.append(len(flushes))
            return x + 1

    monkeypatch.setattr(timing, "cache_flush_bytes", lambda: 1 << 20)
    real = timing.time_calls

    def spy(*args, **kwargs):
        hook = kwargs["before_sample"]
        kwargs["before_sample"] = lambda: (flushes.append(1), hook())
        return real(*args, **kwargs)

    monkeypatch.setattr(timing, "time_calls", spy)
    t = timing.time_module(Count(), [1, 4], warmup=2, repeat=5, device=torch.device("cpu"))
    assert t.repeat == 5 and t.warmup == 2
    assert calls == [0, 0, 1, 2, 3, 4, 5]  # two warm-up calls, then one flush before each sample
