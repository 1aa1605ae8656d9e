"""Exit placement: the pymoo GA against exhaustive enumeration, the repository it writes, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _profiling import make_variants
from typer.testing import CliRunner

from pantheon.cli import app as cli
from pantheon.errors import FormatError, InfeasibleError, PlanError, UsageError
from pantheon.formats import read_model_config, store
from pantheon.offline.plan import (
    ExitProfile,
    _Layout,
    objective_line,
    objective_value,
    optimise,
    plan,
    solve_exact,
    solve_exhaustive,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def golden():
    """Two tasks small enough to check by hand (see the comments in the test)."""
    a = ExitProfile("A", block_ms=[2, 2, 2, 2], branch_ms=[1, 1, 1, 1], block_mb=[1, 1, 1, 1],
                    branch_mb=[0.5, 0.3, 0.2, 0.4], accuracy=[0.80, 0.90, 0.95, 0.96], max_delta_accuracy=0.1)
    b = ExitProfile("B", block_ms=[1, 1, 1], branch_ms=[0.5, 3, 0.5], block_mb=[1, 1, 1],
                    branch_mb=[0.1, 0.1, 0.1], accuracy=[0.5, 0.7, 0.7], max_delta_accuracy=0.3)
    return [a, b]


# A: exit 0 loses 0.16 > 0.1 -> out; exits 1..3 admissible, 3 is the most accurate (kept).
#    Blocks 0..3 always deployed (4 MB) + branch 3 (0.4 MB) = 4.4 MB minimum.
#    T(j) for {3}: 9,7,5,3 -> 6.0; {1,3}: 5,3,5,3 -> 4.0 (+0.3 MB); {2,3}: 7,5,3,3 -> 4.5 (+0.2 MB);
#    {1,2,3}: 5,3,3,3 -> 3.5 (+0.5 MB). A's best accuracy is its last exit's: both objectives agree on its filters.
# B: exit 1 (5 ms, 0.7) ties in accuracy with the faster exit 2 (3.5 ms, 0.7).
#    mean-time: exit 1 is off the (strict) frontier, exit 2 must be kept.
#      {2}: 3.5,2.5,1.5 -> 2.5; {0,2}: 1.5,2.5,1.5 -> 11/6; memory 3.1 / 3.2 MB.
#    reference: exit 1 stays (weak frontier) and is one of the two most accurate; keeping either is enough.
#      {1}: 5,4,0 -> 3 (2.1 MB, block 2 not deployed); {0,1}: 1.5,4,0 -> 11/6 (2.2 MB), as fast as {0,2}
#      in 1 MB less. Objective: maximise 1/mean(T_A) + 1/mean(T_B).
GOLDEN_MEAN_TIME = [  # budget, exits, sum of mean(T) (the objective), memory
    (7.9, {"A": [1, 3], "B": [0, 2]}, 4.0 + 11 / 6, 7.9),
    (7.85, {"A": [2, 3], "B": [0, 2]}, 4.5 + 11 / 6, 7.8),
    (7.6, {"A": [3], "B": [0, 2]}, 6.0 + 11 / 6, 7.6),
    (7.7, {"A": [2, 3], "B": [2]}, 4.5 + 2.5, 7.7),
    (None, {"A": [1, 2, 3], "B": [0, 2]}, 3.5 + 11 / 6, 8.1),
]
GOLDEN_REFERENCE = [  # budget, exits, sum of 1/mean(T) (the objective), sum of mean(T), memory
    (7.9, {"A": [1, 2, 3], "B": [0, 1]}, 1 / 3.5 + 6 / 11, 3.5 + 11 / 6, 7.1),
    (6.9, {"A": [1, 3], "B": [0, 1]}, 1 / 4.0 + 6 / 11, 4.0 + 11 / 6, 6.9),
    (6.8, {"A": [2, 3], "B": [0, 1]}, 1 / 4.5 + 6 / 11, 4.5 + 11 / 6, 6.8),
    (6.6, {"A": [3], "B": [0, 1]}, 1 / 6.0 + 6 / 11, 6.0 + 11 / 6, 6.6),
    (6.5, {"A": [3], "B": [1]}, 1 / 6.0 + 1 / 3.0, 6.0 + 3.0, 6.5),
]


@pytest.mark.parametrize("budget, exits, objective, memory", GOLDEN_MEAN_TIME)
@pytest.mark.parametrize("exhaustive", [False, True])
def test_golden_instance_mean_time(budget, exits, objective, memory, exhaustive):
    res = optimise(golden(), budget, exhaustive=exhaustive, generations=30, pop_size=20, objective="mean-time")
    assert res.exits == exits and res.objective == "mean-time"
    assert res.objective_ms == pytest.approx(objective) and res.objective_value == pytest.approx(objective)
    assert res.memory_mb == pytest.approx(memory)
    assert res.candidates == {"A": [1, 2, 3], "B": [0, 2]}  # B's tied exit 1 is dropped


@pytest.mark.parametrize("budget, exits, value, mean_sum, memory", GOLDEN_REFERENCE)
@pytest.mark.parametrize("exhaustive", [False, True])
def test_golden_instance_reference(budget, exits, value, mean_sum, memory, exhaustive):
    res = optimise(golden(), budget, exhaustive=exhaustive, generations=30, pop_size=20)  # reference is the default
    assert res.exits == exits and res.objective == "reference"
    assert res.objective_value == pytest.approx(value)  # sum of 1/mean(T)
    assert res.objective_ms == pytest.approx(mean_sum)  # sum of mean(T), reported alongside
    assert res.memory_mb == pytest.approx(memory)
    assert res.candidates == {"A": [1, 2, 3], "B": [0, 1, 2]}  # B's tied exit 1 stays on the frontier
    assert res.per_task["B"]["objective_term"] == pytest.approx(1 / res.per_task["B"]["mean_time_ms"])


def test_the_tie_rule_alone_changes_the_plan():
    """At 7.9 MB: reference keeps B's tied exit 1 (and deploys 2 blocks of B), mean-time cannot."""
    b = golden()[1]
    assert list(b.pareto("reference")) == [True, True, True]
    assert list(b.pareto("mean-time")) == [True, False, True]
    assert b.tops("reference") == [1, 2] and b.tops("mean-time") == [2]
    ref, mt = optimise(golden(), 7.9, exhaustive=True), optimise(golden(), 7.9, exhaustive=True, objective="mean-time")
    assert 1 in ref.exits["B"] and 1 not in mt.exits["B"]


@pytest.mark.parametrize("objective, budget", [("reference", 6.4), ("mean-time", 7.0)])
def test_golden_infeasible_names_memory_and_the_smallest_budget(objective, budget):
    need = {"reference": r"6\.50 MB.*A 4\.40 MB, B 2\.10 MB", "mean-time": r"7\.50 MB.*A 4\.40 MB, B 3\.10 MB"}[objective]
    with pytest.raises(InfeasibleError, match=r"memory: .*smallest feasible budget is " + need):
        optimise(golden(), budget, objective=objective)


def test_the_objective_alone_changes_the_plan():
    """One spare MB: the extra exit that cuts sum(mean T) most (P: 8.5 -> 6 ms) is not the one that
    adds most to sum(1/mean T) (Q: 1/1.7 -> 1/1.2). Accuracy rises and no latency ties: only the objective differs."""
    p = ExitProfile("P", [5, 5], [1, 1], [1, 1], [1, 1], [0.90, 0.95], max_delta_accuracy=0.1)
    q = ExitProfile("Q", [1, 1], [0.2, 0.2], [1, 1], [1, 1], [0.90, 0.95], max_delta_accuracy=0.1)
    for exhaustive in (False, True):
        mt = optimise([p, q], 7, objective="mean-time", exhaustive=exhaustive, generations=20, pop_size=10)
        ref = optimise([p, q], 7, objective="reference", exhaustive=exhaustive, generations=20, pop_size=10)
        assert mt.exits == {"P": [0, 1], "Q": [1]} and mt.objective_value == pytest.approx(6 + 1.7)
        assert ref.exits == {"P": [1], "Q": [0, 1]} and ref.objective_value == pytest.approx(1 / 8.5 + 1 / 1.2)
        assert ref.objective_ms == pytest.approx(8.5 + 1.2)  # worse by mean-time's measure, as it should be


def test_the_allowed_drop_is_measured_against_the_best_exit_for_reference():
    # the middle exit (0.93) beats the original head (0.90): reference measures the drop against 0.93
    t = ExitProfile("x", [1, 1, 1], [0.1] * 3, [1] * 3, [0.1] * 3, [0.89, 0.93, 0.90], max_delta_accuracy=0.02)
    assert t.reference_accuracy("reference") == pytest.approx(0.93)
    assert t.reference_accuracy("mean-time") == pytest.approx(0.90)
    assert list(t.acc_ok("reference")) == [False, True, False]
    assert list(t.acc_ok("mean-time")) == [True, True, True]
    assert optimise([t], None, exhaustive=True, objective="reference").exits == {"x": [1]}
    assert optimise([t], None, exhaustive=True, objective="mean-time").exits == {"x": [0, 1]}
    res = optimise([t], None, exhaustive=True)
    assert res.per_task["x"]["reference_accuracy"] == pytest.approx(0.93)


def test_reference_needs_positive_latencies():
    t = ExitProfile("z", [0, 1], [0, 1], [1, 1], [1, 1], [0.9, 0.9], max_delta_accuracy=0.1)
    with pytest.raises(PlanError, match="latency 0 ms.*--objective mean-time"):
        optimise([t], None)
    assert optimise([t], None, objective="mean-time").exits == {"z": [0]}


def test_unknown_objective_is_a_usage_error():
    with pytest.raises(UsageError, match="--objective must be one of reference, mean-time; got 'foo'"):
        optimise(golden(), None, objective="foo")


def random_instance(seed: int, objective: str):
    rng = np.random.default_rng(seed)
    tasks = []
    for t in range(rng.integers(2, 5)):
        b = int(rng.integers(3, 9))
        acc = np.sort(rng.uniform(0.5, 0.95, b))
        acc = np.clip(acc + rng.normal(0, 0.02, b), 0, 1)  # noise: some exits fall off the frontier
        acc[rng.random(b) < 0.25] = acc.max()  # ties at the best accuracy (the reference keeps several)
        tasks.append(ExitProfile(
            f"t{t}", block_ms=rng.uniform(0.2, 3, b), branch_ms=rng.uniform(0.05, 1.5, b),
            block_mb=rng.uniform(0.5, 5, b), branch_mb=rng.uniform(0.05, 2, b), accuracy=acc,
            max_delta_accuracy=float(rng.uniform(0.05, 0.4)),
        ))
    lay = _Layout(tasks, None, objective)
    x_min = np.zeros((1, lay.n_var), bool)
    x_min[0, lay.minimal] = True
    lo = lay.evaluate(x_min)[1][0]
    hi = lay.evaluate(lay.candidate[None, :])[1][0]
    return tasks, float(lo + rng.uniform(0.2, 0.7) * (hi - lo)), int(lay.candidate.sum())


@pytest.mark.parametrize("objective", ["reference", "mean-time"])
@pytest.mark.parametrize("seed", range(6))
def test_ga_reaches_the_exhaustive_optimum_on_random_instances(seed, objective):
    tasks, budget, n_cand = random_instance(seed, objective)
    assert 3 <= n_cand <= 20
    ex = optimise(tasks, budget, exhaustive=True, objective=objective)
    ga = optimise(tasks, budget, seed=seed, objective=objective)
    lay = _Layout(tasks, budget, objective)
    dp, en = solve_exact(lay), solve_exhaustive(lay)
    assert en.score == pytest.approx(dp.score, abs=1e-9)  # two exact methods agree
    assert ex.objective_value == pytest.approx(objective_value(dp.score, objective), abs=1e-9)
    assert ga.objective_value == pytest.approx(ex.objective_value, abs=1e-9)
    assert ga.memory_mb <= budget + 1e-9
    for t in tasks:  # every kept exit passes the per-exit filters, one of the most accurate is kept
        cand = set(np.flatnonzero(t.candidates(objective)))
        assert set(ga.exits[t.name]) <= cand and set(t.tops(objective)) & set(ga.exits[t.name])


def test_exhaustive_refuses_large_instances():
    b = 25
    t = ExitProfile("big", np.ones(b), np.full(b, 0.1), np.ones(b), np.full(b, 0.1),
                    np.linspace(0.5, 0.9, b), max_delta_accuracy=1.0)
    with pytest.raises(UsageError, match="at most 20 candidate exits"):
        solve_exhaustive(_Layout([t], None))


def test_accuracy_filter_is_against_the_original_exit_for_mean_time():
    t = ExitProfile("x", [1, 1, 1, 1], [0.1] * 4, [1] * 4, [0.1] * 4, [0.70, 0.88, 0.895, 0.90], max_delta_accuracy=0.02)
    assert list(t.acc_ok("mean-time")) == [False, True, True, True]
    res = optimise([t], None, exhaustive=True, objective="mean-time")
    assert res.exits == {"x": [1, 2, 3]}


# ------------------------------------------------------------------------------------------------
# Files: variants dirs with profile.csv -> repository
# ------------------------------------------------------------------------------------------------

CSV3 = "block latency,branch latency,block mem,branch mem,accuracy\n1.0,0.2,2.0,0.1,0.80\n1.0,0.2,2.0,0.1,0.88\n1.0,0.3,2.0,0.2,0.90\n"
CSV2 = "block latency,branch latency,block mem,branch mem,accuracy\n2.0,0.5,1.0,0.3,0.95\n2.0,0.5,1.0,0.3,0.96\n"


def _setup(tmp_path, csv_a=CSV3, csv_b=CSV2, settings=None):
    base = tmp_path / "variants"
    make_variants(base / "ta", "ta", n_blocks=3, profile_csv=csv_a)
    make_variants(base / "tb", "tb", n_blocks=2, profile_csv=csv_b)
    s = tmp_path / "settings.json"
    s.write_text(json.dumps(settings or {"ta": {"max_delta_accuracy": 0.05}, "tb": {"max_delta_accuracy": 0.02}, "max_memory": 100}))
    return base, s


def test_plan_writes_a_verified_repository(tmp_path):
    base, s = _setup(tmp_path)
    res = plan(str(s), base=base, save=tmp_path / "repo")
    # ta: exit 0 loses 0.10 > 0.05 -> out; 1, 2 kept. tb: both within 0.02 -> both kept (budget is ample)
    assert res.exits == {"ta": [1, 2], "tb": [0, 1]}
    repo = tmp_path / "repo"
    m = store.verify(repo, kind="repository")
    assert set(m.files) == {
        "plan.json", "ta/config.pbtxt", "tb/config.pbtxt",
        "ta/model_files/block_00.pt", "ta/model_files/block_01.pt", "ta/model_files/block_02.pt",
        "ta/model_files/branch_01.pt", "ta/model_files/branch_02.pt",
        "tb/model_files/block_00.pt", "tb/model_files/block_01.pt",
        "tb/model_files/branch_00.pt", "tb/model_files/branch_01.pt",
    }
    cfg = read_model_config(repo / "ta" / "config.pbtxt")
    assert cfg.name == "ta" and list(cfg.dims) == [1, 3, 16, 16]
    assert [(b.id, b.latency) for b in cfg.block_profile] == [(0, 1000), (1, 1000), (2, 1000)]
    assert [(e.id, e.latency) for e in cfg.exit_profile] == [(1, 200), (2, 300)]
    assert [round(e.accuracy, 4) for e in cfg.exit_profile] == [0.88, 0.90]
    pj = json.loads((repo / "plan.json").read_text())
    assert pj["tasks"] == ["ta", "tb"] and pj["exits"]["ta"] == [1, 2] and pj["max_memory"] == 100
    # the chunks are byte-identical copies of the variants
    assert (repo / "ta/model_files/branch_02.pt").read_bytes() == (base / "ta/branch_02.pt").read_bytes()
    # the runtime's reader accepts it
    from pantheon.online.repository import read_repository

    r = read_repository(repo)
    assert r.names == ["ta", "tb"]


def test_plan_prints_nothing_and_returns_what_the_cli_prints(tmp_path, capsys, monkeypatch):
    from pantheon.cli.offline import print_plan

    monkeypatch.setenv("COLUMNS", "200")  # the table unfolded
    base, s = _setup(tmp_path)
    res = plan(str(s), base=base, save=tmp_path / "repo")
    assert capsys.readouterr().out == ""  # the library returns the plan; `pantheon plan` prints it
    assert not res.skipped and "skipped" not in json.loads((tmp_path / "repo" / "plan.json").read_text())
    print_plan(res)
    shown = capsys.readouterr()
    assert f"exit plan for {res.app} ({res.solver}, objective reference)" in shown.out
    assert f"{objective_line(res)}; memory {res.memory_mb:.2f} MB of 100 MB" in shown.out
    assert "│ ta   │ 1 2 " in shown.out and " 0.880 0.900 " in shown.out  # ta's kept exits and their accuracies
    assert f"wrote {tmp_path / 'repo'}" in shown.err
    again = plan(str(s), base=base, save=tmp_path / "repo")  # up to date: read back
    assert capsys.readouterr().out == ""
    assert again.skipped and again.exits == res.exits and again.repository == tmp_path / "repo"
    print_plan(again)
    shown = capsys.readouterr()
    assert objective_line(res) in shown.out and "wrote" not in shown.err


def test_plan_truncates_blocks_after_the_last_kept_exit(tmp_path):
    # ta's exit 1 is more accurate than the original exit 2 -> exit 2 is dominated, block 2 not deployed
    csv = CSV3.replace("0.88", "0.91")
    base, s = _setup(tmp_path, csv_a=csv)
    res = plan(str(s), base=base, save=tmp_path / "repo")
    assert res.exits["ta"] == [1]
    files = store.read_manifest(tmp_path / "repo").files
    assert "ta/model_files/block_02.pt" not in files and "ta/model_files/branch_02.pt" not in files
    assert "ta/model_files/branch_00.pt" not in files
    cfg = read_model_config(tmp_path / "repo" / "ta" / "config.pbtxt")
    assert [b.id for b in cfg.block_profile] == [0, 1] and [e.id for e in cfg.exit_profile] == [1]


def test_cli_plan_with_app_yaml_and_existing_repository(tmp_path):
    base, _ = _setup(tmp_path)
    y = tmp_path / "mini.yaml"
    y.write_text("name: mini\nmax_memory: 9.5\ntasks:\n  ta: {max_delta_accuracy: 0.05}\n  tb: {max_delta_accuracy: 0.02}\n")
    runner = CliRunner()
    r = runner.invoke(cli, ["plan", "--setting", str(y), "--base", str(base), "--ga-gen", "20", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "objective reference (maximise): sum 1/mean(T)" in r.output and "of 9.5 MB" in r.output
    repo = store.Store().repository_dir("mini")
    assert store.verify(repo, kind="repository")
    pj = json.loads((repo / "plan.json").read_text())
    assert pj["objective"] == "reference"
    assert pj["objective_value"] == pytest.approx(sum(1 / t["mean_time_ms"] for t in pj["per_task"].values()))
    assert store.read_manifest(repo).inputs["objective"] == "reference"
    before = (repo / "manifest.json").read_text()
    r = runner.invoke(cli, ["plan", "--setting", str(y), "--base", str(base), "--ga-gen", "20", "--seed", "3"])
    assert r.exit_code == 0 and "skipped (up to date)" in r.output  # same inputs: kept as is
    assert (repo / "manifest.json").read_text() == before
    r = runner.invoke(cli, ["plan", "--setting", str(y), "--base", str(base)])  # other solver options
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(cli, ["plan", "--setting", str(y), "--base", str(base), "--force", "--exhaustive"])
    assert r.exit_code == 0, r.output


def test_cli_infeasible_memory_is_one_line(tmp_path):
    base, s = _setup(tmp_path, settings={"ta": {"max_delta_accuracy": 0.05}, "tb": {"max_delta_accuracy": 0.02}, "max_memory": 3})
    r = CliRunner().invoke(cli, ["plan", "--setting", str(s), "--base", str(base), "--save", str(tmp_path / "repo")])
    assert r.exit_code == 1
    assert "memory:" in r.output and "smallest feasible budget is 8.50 MB" in r.output
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    "settings, err, match",
    [
        ({"ta": {"max_delta_accuracy": 0.05}, "nope": {"max_delta_accuracy": 0.01}, "max_memory": 50}, PlanError, "'nope'"),
        ({"ta": {"max_delta_accuracy": -0.01}, "max_memory": 50}, FormatError, r"\[0, 1\]"),
        ({"ta": {"max_delta_accuracy": 1.5}, "max_memory": 50}, FormatError, r"\[0, 1\]"),
        ({"ta": {"max_delta_accuracy": 0.05}, "max_memory": -4}, FormatError, "positive"),
    ],
)
def test_bad_settings(tmp_path, settings, err, match):
    base, s = _setup(tmp_path, settings=settings)
    with pytest.raises(err, match=match):
        plan(str(s), base=base, save=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    r = CliRunner().invoke(cli, ["plan", "--setting", str(s), "--base", str(base), "--save", str(tmp_path / "r2")])
    assert r.exit_code == 1 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "csv_text, match",
    [
        (CSV3.replace("branch mem,", ""), "branch mem"),
        (CSV3.replace("0.88", "nan"), "nan"),
        (CSV3.replace("1.0,0.3", "1.0,NaN"), "nan"),
        ("block latency,branch latency,block mem,branch mem,accuracy\n1,1,1,1,0.9\n", "1 rows but the variants have 3"),
    ],
)
def test_bad_profile_csv_in_variants(tmp_path, csv_text, match):
    base, s = _setup(tmp_path, csv_a=csv_text)
    with pytest.raises(FormatError, match=match):
        plan(str(s), base=base, save=tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_missing_profile_csv_says_run_profile(tmp_path):
    base, s = _setup(tmp_path)
    make_variants(base / "ta", "ta", n_blocks=3)  # no profile.csv
    with pytest.raises(PlanError, match="pantheon profile --task ta"):
        plan(str(s), base=base, save=tmp_path / "repo")


def _profile_overhead(variants_dir, overhead_us):
    """Give a variants dir the profile.json a profiler writes (with its measured dispatch overhead)."""
    store.update_artifact(variants_dir, {"profile.json": json.dumps({"dispatch_overhead_us": overhead_us})})


def test_blocks_below_the_dispatch_overhead_are_merged_into_one_chunk(tmp_path):
    """ta's blocks are profiled at 1000 us; with a 2500 us dispatch overhead measured with the profiles,
    blocks 0 and 1 become one chunk (exit 1 follows it), block 2 stays (an exit follows it); the merged
    chunk computes what the two blocks compute, and the runtime's reader charges the overhead per chunk."""
    import torch

    from pantheon.online.repository import load_torchscript, read_repository

    base, s = _setup(tmp_path)
    for t in ("ta", "tb"):
        _profile_overhead(base / t, 2500.0 if t == "ta" else 40.0)
    res = plan(str(s), base=base, save=tmp_path / "repo")
    assert res.dispatch_overhead_us == 2500.0 and res.min_chunk_us == 2500.0
    assert res.chunks == {"ta": [[0, 1], [2]], "tb": [[0], [1]]}  # tb: every block is followed by a kept exit
    repo = tmp_path / "repo"
    cfg = read_model_config(repo / "ta" / "config.pbtxt")
    assert [(b.id, b.latency) for b in cfg.block_profile] == [(0, 2000), (1, 1000)]
    assert [(e.id, e.latency) for e in cfg.exit_profile] == [(0, 200), (1, 300)]
    files = store.verify(repo, kind="repository").files
    assert "ta/model_files/block_02.pt" not in files and "ta/model_files/branch_00.pt" in files
    x = torch.randn(1, 3, 16, 16)
    merged = load_torchscript(repo / "ta/model_files/block_00.pt")
    b0, b1 = (load_torchscript(base / f"ta/block_0{j}.pt") for j in (0, 1))
    with torch.no_grad():
        assert torch.allclose(merged(x), b1(b0(x)), atol=1e-6)
    r = read_repository(repo)
    assert r.dispatch_us == 2500.0
    assert r.tasks["ta"].blocks == (2000, 1000) and r.tasks["ta"].costs()[0] == (4500, 3500)  # profiled, charged
    assert r.tasks["ta"].full == (4500 + 2700, 8000 + 2800)
    assert json.loads((repo / "plan.json").read_text())["chunks"]["ta"] == [[0, 1], [2]]


def test_min_chunk_us_zero_keeps_every_block_and_bad_values_are_one_line(tmp_path):
    base, s = _setup(tmp_path)
    _profile_overhead(base / "ta", 2500.0)
    res = plan(str(s), base=base, save=tmp_path / "repo", min_chunk_us=0)
    assert res.chunks["ta"] == [[0], [1], [2]] and res.dispatch_overhead_us == 2500.0
    for bad in ("-1", "nan"):
        r = CliRunner().invoke(cli, ["plan", "--setting", str(s), "--base", str(base), "--save", str(tmp_path / "r2"),
                                     "--min-chunk-us", bad])
        assert r.exit_code != 0 and "--min-chunk-us" in r.output and "Traceback" not in r.output
        assert not (tmp_path / "r2").exists()


def test_cli_objective_is_recorded_and_a_plan_with_another_is_not_up_to_date(tmp_path):
    base, s = _setup(tmp_path)
    repo = tmp_path / "repo"
    args = ["plan", "--setting", str(s), "--base", str(base), "--save", str(repo), "--exhaustive"]
    runner = CliRunner()
    r = runner.invoke(cli, args + ["--objective", "mean-time"])
    assert r.exit_code == 0, r.output
    assert "objective mean-time" in r.output and "sum 1/mean(T)" not in r.output
    pj = json.loads((repo / "plan.json").read_text())
    assert pj["objective"] == "mean-time" and pj["objective_value"] == pytest.approx(pj["objective_ms"])
    r = runner.invoke(cli, args + ["--objective", "mean-time"])
    assert r.exit_code == 0 and "skipped (up to date)" in r.output
    r = runner.invoke(cli, args)  # the default objective is reference: other inputs
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(cli, args + ["--force"])
    assert r.exit_code == 0, r.output
    assert json.loads((repo / "plan.json").read_text())["objective"] == "reference"


def test_cli_bad_objective_is_one_line_and_writes_nothing(tmp_path):
    base, s = _setup(tmp_path)
    r = CliRunner().invoke(cli, ["plan", "--setting", str(s), "--base", str(base), "--save", str(tmp_path / "repo"),
                                 "--objective", "foo"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "--objective must be one of reference, mean-time; got 'foo'" in r.output
    assert not (tmp_path / "repo").exists()
