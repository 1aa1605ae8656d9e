"""The memory manager: one tensor per job, plus the one kept at its latest passed exit."""

from __future__ import annotations

import pytest
import torch

from pantheon.errors import RuntimeFault
from pantheon.formats.events import read_events
from pantheon.online.memory import MemoryManager
from pantheon.online.runtime import Runtime


def test_a_kept_tensor_is_counted_replaced_taken_and_freed():
    mm = MemoryManager()
    x = torch.zeros(10, dtype=torch.float32)  # 40 bytes
    mm.store(1, x)
    mm.keep(1, torch.zeros(5))  # 20 bytes kept at a passed exit
    assert mm.bytes_held == 60 and mm.kept_bytes == 20 and mm.kept_peak_tensors == 1
    mm.keep(1, torch.zeros(2))  # a later exit replaces it: one kept tensor per job
    assert mm.kept_bytes == 8 and mm.bytes_held == 48 and mm.kept_peak_bytes == 20
    mm.keep(2, torch.zeros(1))
    assert mm.kept_peak_tensors == 2
    t = mm.take_kept(1)
    assert t.numel() == 2 and mm.kept_bytes == 4
    with pytest.raises(RuntimeFault, match="job 1 kept no tensor"):
        mm.take_kept(1)
    assert mm.release(1) and mm.bytes_held == 4  # job 2's kept tensor is all that is left
    mm.store(2, torch.zeros(3))
    assert mm.release(2) and mm.bytes_held == 0 and mm.kept_bytes == 0 and mm.peak_bytes == 60


# -- in the live runtime -----------------------------------------------------------------------

DIMS = [1, 3, 48, 48]


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    """One task of 6 real conv blocks at 48x48, exits after blocks 3 and 5; profiled as 1 ms per
    block and 50 us per exit branch (a pooled linear head), what the scheduler plans with."""
    from _repo import TaskSpec, build_repository

    spec = {"long": TaskSpec(widths=[32] * 6, depth=[2] * 6, exits={3: 0.85, 5: 0.9}, input=(3, 48, 48),
                             latencies=[1000] * 6, exit_latencies={3: 50, 5: 50})}
    return build_repository(tmp_path_factory.mktemp("fbrepo") / "repo", spec)


def _past_exit_3_then_hopeless(rt, tries=200):
    """Once the job runs block 4 (it passed exit 3), re-plan its task so slowly that block 5 and
    exit 5 cannot meet the deadline any more while exit 3's branch alone still can."""
    import time

    tp = rt.sched.states["long"]  # this run's tables of the task (the repository is not touched)
    for _ in range(tries * 50):
        with rt._cv:
            job = next((j for j in rt.sched.queue if j.task is tp), None)
            if job is None or job.next_block > 5:
                return False  # finished or past block 5 before we looked: try another job
            if job.next_block == 5:
                slack = job.deadline - rt.clock.now()
                tp.rescale(1.5 * slack / (tp.base_blocks[5] + tp.base_exit_lat[1]))
                assert rt.dispatch_us + tp.scale * tp.base_exit_lat[0] < slack  # the branch still fits
                return True
        time.sleep(0.0001)
    return False


@pytest.mark.parametrize("fallback", [True, False])
def test_the_runtime_finishes_a_job_through_an_exit_it_passed(repo_dir, tmp_path, fallback):
    """Live on the CPU: the job keeps block 3's output when it moves on to block 4; then its
    remaining path turns hopeless. With the fallback it leaves through exit 3 (the kept
    tensor, the branch only) and meets its deadline; without, it is dropped."""
    log = tmp_path / "run"
    with Runtime(repo_dir, device="cpu", log=log, calibrate=False, fallback=fallback) as rt:
        for _ in range(20):
            fut = rt.submit("long", torch.randn(*DIMS), relative_deadline_us=10_000_000)
            hit = _past_exit_3_then_hopeless(rt)
            res = fut.result(60)
            if hit:
                break
            rt.sched.states["long"].rescale(1.0)
        assert hit, "never caught the job between blocks 4 and 5"
    if fallback:
        assert res.met and res.exit == 3 and tuple(res.output.shape) == (1, 10)
        assert rt.summary["fallback_exits"] == 1 and rt.summary["memory_kept_peak_tensors"] == 1
        assert rt.summary["memory_kept_peak_bytes"] > 0
        evs = [e for e in read_events(log) if e.get("job") == res.job and e["ev"] == "dispatch"]
        assert [e.get("block", e.get("exit")) for e in evs][-2:] == [4, 3]  # block 4 ran, then exit 3
    else:
        assert res.dropped and "fallback_exits" not in rt.summary
    assert len(rt.memory) == 0 and rt.memory.bytes_held == 0
