"""``pantheon-deploy run`` and ``bench``: a runtime (or bench) container on the board, then collect.

Checks before anything runs: the app's bundle is on the board; the image is there and its
``org.pantheon.l4t`` label suits the board's L4T release (else refused, naming the base to
rebuild from); the engine has the ``nvidia`` runtime (else refused, naming the fix, unless
``--no-nvidia-runtime`` asks for a CPU trial).

The container: ``--runtime nvidia`` (unless a CPU trial), ``--network host``, the board's data
root bind-mounted at ``/data``, ``/etc/nv_tegra_release`` read-only and ``/run/jtop.sock``
only when the board has it (otherwise Docker would create a directory there). Never
``--privileged``: power modes are set on the host by ``setup``.

Its output is streamed; when it ends (or Ctrl-C stops it, or it fails) the run folder is
collected into ``<store>/logs/<app>/<run-id>/`` with the board state and the container's
exit code and output, and the report table is printed.

Equivalent commands, as saved in ``commands.sh``::

    docker -H ssh://nvidia@nx run -d --name pantheon-run-digits-<id> --network host --runtime nvidia \\
      -v /var/lib/pantheon/data:/data -v /etc/nv_tegra_release:/etc/nv_tegra_release:ro \\
      pantheon-jetson:latest runtime /data/apps/digits/repository \\
      /data/apps/digits/workload/workload.bin /data/logs/digits/<id> --policy pantheon --telemetry auto
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pantheon import console
from pantheon.deploy.collect import collect_dir
from pantheon.deploy.engine import RemoteEngine
from pantheon.deploy.fleet import STOP, Ctx
from pantheon.deploy.remote import BoardFacts, read_facts
from pantheon.deploy.setup import board_state
from pantheon.deploy.ssh import Session, check_name, last_line, q
from pantheon.errors import BoardError, DeployError, DockerError, clear_interrupt
from pantheon.formats.store import new_run_id
from pantheon.platform import jetson as pb

DEFAULT_IMAGE = "pantheon-jetson:latest"


def check_image(engine: RemoteEngine, image: str, facts: BoardFacts) -> Any:
    """The image on the board, refused when its L4T label does not suit the board's release."""
    import docker

    engine.record("image", "inspect", image, mutating=False)
    try:
        img = engine.client.images.get(image)
    except docker.errors.ImageNotFound:
        raise DockerError(
            f"image {image} is not on board {engine.session.board.name}: "
            f"pantheon-deploy push {engine.session.board.cli} --image {q(image)} "
            f"(or pantheon-deploy build {engine.session.board.cli} --tag {q(image)})"
        ) from None
    if facts.is_jetson:
        l4t = (img.labels or {}).get(pb.L4T_LABEL) or None
        problem = pb.compatibility_problem(facts.l4t, l4t, image, board=engine.session.board.cli)
        if problem:
            raise BoardError(f"refusing to run on board {engine.session.board.name}: {problem}")
    return img


def _bundle_present(session: Session, app: str) -> None:
    path = f"{session.board.remote_root}/apps/{app}/manifest.json"
    res = session.run(f"test -f {q(path)}", check=False, what="looking for the app bundle")
    if res.returncode != 0:
        raise DeployError(
            f"app {app} has no bundle on board {session.board.name} ({path} is missing): "
            f"pantheon-deploy push {session.board.cli} --app {app}"
        )


def container_spec(
    session: Session, facts: BoardFacts, image: str, command: List[str], name: str, nvidia: bool,
    labels: Dict[str, str], env: Dict[str, str],
) -> Dict[str, Any]:
    """Keyword arguments for ``containers.run`` (and, via :func:`cli_args`, the docker command)."""
    root = session.board.remote_root
    volumes = {root: {"bind": "/data", "mode": "rw"}}
    if facts.is_jetson:
        volumes[pb.board_path(pb.NV_TEGRA_RELEASE, session.board.board_root)] = {"bind": pb.NV_TEGRA_RELEASE, "mode": "ro"}
    if facts.jtop:  # only when present: a missing socket would become a directory and break jtop
        volumes[pb.board_path(pb.JTOP_SOCKET, session.board.board_root)] = {"bind": pb.JTOP_SOCKET, "mode": "rw"}
    spec: Dict[str, Any] = {
        "image": image, "command": command, "name": name, "detach": True, "network_mode": "host",
        "volumes": volumes, "labels": labels, "environment": env, "privileged": False,
    }
    if nvidia:
        spec["runtime"] = "nvidia"
    return spec


def cli_args(spec: Dict[str, Any]) -> List[str]:
    """The ``docker run`` arguments equivalent to ``spec``."""
    args = ["run", "-d", "--name", spec["name"], "--network", spec["network_mode"]]
    if spec.get("runtime"):
        args += ["--runtime", spec["runtime"]]
    for host, v in spec["volumes"].items():
        args += ["-v", f"{host}:{v['bind']}" + (":ro" if v["mode"] == "ro" else "")]
    for k, v in spec["environment"].items():
        args += ["-e", f"{k}={v}"]
    for k, v in spec["labels"].items():
        args += ["--label", f"{k}={v}"]
    return args + [spec["image"], *spec["command"]]


def _stream_logs(ctx: Ctx, container: Any) -> None:
    """Echo the container's output as it comes (the full log is read once it has ended)."""
    buf = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").rstrip("\r")
                if not ctx.fleet and not ctx.quiet:
                    console.err.print(f"  | {text}", markup=False, highlight=False)
    except Exception:  # the stream ends with the container; a broken stream must not fail the run
        return


def _wait(ctx: Ctx, container: Any) -> Tuple[Optional[int], bool]:
    """Wait for the container; on Ctrl-C (or a fleet-wide stop) stop it. Returns (exit code, interrupted)."""
    interrupted = False
    failures = 0
    while True:
        try:
            res = container.wait(timeout=1)
            return int(res.get("StatusCode", -1)), interrupted
        except KeyboardInterrupt:  # handled here: stop the container, then collect what it wrote
            clear_interrupt()
            interrupted = True
            STOP.set()
        except Exception as exc:  # a read timeout (the container still runs), or a lost engine
            if "timed out" not in str(exc).lower():
                failures += 1
                if failures > 3:
                    raise DockerError(f"lost the engine of board {ctx.board.name} while waiting for the "
                                      f"container: {exc}") from exc
        if STOP.is_set() and not interrupted:
            interrupted = True
        if interrupted:
            ctx.log("stopping the container (the runtime flushes its log on SIGTERM)...")
            try:
                container.stop(timeout=20)
                res = container.wait(timeout=60)
                return int(res.get("StatusCode", -1)), True
            except Exception:
                return None, True


def _start(engine: RemoteEngine, spec: Dict[str, Any]) -> Any:
    """``containers.run``; a Ctrl-C while the engine creates or starts it removes the container."""
    try:
        return engine.client.containers.run(**spec)
    except KeyboardInterrupt:
        try:
            engine.client.containers.get(spec["name"]).remove(force=True)
        except Exception:  # not created yet, or already gone: nothing to clean
            pass
        raise


def run_container(
    ctx: Ctx,
    session: Session,
    *,
    app: str,
    image: str,
    command: List[str],
    remote_dir: str,
    local_dir_kind: Tuple[str, str],
    run_id: str,
    nvidia: bool,
    facts: Optional[BoardFacts] = None,
    pre: Sequence[List[str]] = (),
) -> Dict[str, Any]:
    """Run ``command`` in ``image`` on the board, stream it, collect ``remote_dir``; raise if it failed."""
    facts = facts or read_facts(session)
    with RemoteEngine(session) as engine:
        _ = engine.client
        if nvidia:
            engine.require_nvidia_runtime()
        img = check_image(engine, image, facts)
        _bundle_present(session, app)
        state = board_state(session, facts)
        labels = {"org.pantheon.app": app, "org.pantheon.run-id": run_id}
        env = {"PANTHEON_DATA": "/data", "PANTHEON_PROGRESS": "0", "PANTHEON_IMAGE_DIGEST": img.id,
               "PANTHEON_RUN_ID": run_id}
        # Host facts a container cannot read itself (nvpmodel/jetson_clocks live on the host), for the
        # run and bench manifests (pantheon.platform.jetson honours these variables).
        if facts.model:
            env[pb.ENV_MODEL] = facts.model
        if state.get("nvpmodel"):
            env[pb.ENV_NVPMODEL] = f"{state['nvpmodel']['name']}:{state['nvpmodel']['id']}"
        if state.get("jetson_clocks") is not None:
            env[pb.ENV_CLOCKS] = "1" if state["jetson_clocks"] else "0"
        info: Dict[str, Any] = {"image": image, "image_id": img.id, "run_id": run_id, "app": app, "nvidia": nvidia}
        for i, pre_cmd in enumerate(pre):  # e.g. generating a shorter workload first
            spec = container_spec(session, facts, image, pre_cmd, f"pantheon-pre-{app}-{run_id}-{i}", nvidia, labels, env)
            if engine.record(*cli_args(spec)):
                c = _start(engine, spec)
                pre_code = int(c.wait().get("StatusCode", -1))
                out = c.logs().decode(errors="replace")
                c.remove(force=True)
                if pre_code != 0:
                    raise DeployError(f"board {session.board.name}: {' '.join(pre_cmd[:2])} failed (exit {pre_code}): "
                                      f"{last_line(out)}")
        spec = container_spec(session, facts, image, command, f"pantheon-{command[0]}-{app}-{run_id}", nvidia, labels, env)
        if not engine.record(*cli_args(spec)):
            return {**info, "dry_run": True}
        ctx.log(f"starting {spec['name']} on {session.board.name}")
        t0 = time.monotonic()
        container = _start(engine, spec)
        ctx.log(f"{spec['name']} is running (Ctrl-C stops it and still collects what it wrote)")
        streamer = threading.Thread(target=_stream_logs, args=(ctx, container), daemon=True)
        streamer.start()
        code, interrupted = _wait(ctx, container)
        streamer.join(timeout=5)
        info.update(exit_code=code, interrupted=interrupted, seconds=round(time.monotonic() - t0, 1),
                    container=spec["name"], command=command)
        output = container.logs().decode(errors="replace")
        container.reload()
        hc = container.attrs.get("HostConfig") or {}
        info.update(privileged=bool(hc.get("Privileged")), mounts=list(hc.get("Binds") or []),
                    runtime=hc.get("Runtime"), network=hc.get("NetworkMode"))
        engine.record("rm", "-f", spec["name"])
        container.remove(force=True)
    store_dir = ctx.store.root / local_dir_kind[0]
    extras = {"board.json": state, "container.json": info, "container.log": output,
              "commands.sh": session.recorder.script(f"pantheon-deploy {command[0]} {app} on {session.board.address}")}
    collected = collect_dir(ctx, session, remote_dir, store_dir, kind=local_dir_kind[1], extras=extras,
                            meta={"run_id": run_id, "app": app, "exit_code": code, "interrupted": interrupted})
    info["local"] = collected["local"]
    info["collected_files"] = collected["files"]
    if interrupted:
        ctx.log(f"interrupted: the container was stopped; what it wrote is in {info['local']}")
        raise KeyboardInterrupt
    if code != 0:
        tail = " | ".join(ln for ln in output.strip().splitlines()[-3:] if ln.strip()) or "no output"
        raise DeployError(f"{command[0]} {run_id} on board {session.board.name} failed: the container exited "
                          f"with {code}: {tail} (collected to {info['local']})")
    return info


def run_app(ctx: Ctx, session: Session, app: str, *, policy: str = "pantheon", duration: Optional[float] = None,
            telemetry: str = "auto", image: str = DEFAULT_IMAGE, nvidia: bool = True, device: str = "auto",
            run_id: Optional[str] = None) -> Tuple[str, Dict[str, Any]]:
    """``pantheon runtime`` of app ``app`` on the board; collect; print the report table."""
    check_name("app", app)
    run_id = check_name("run id", run_id or new_run_id())
    remote_dir = f"{session.board.remote_root}/logs/{app}/{run_id}"
    data, log = "/data", f"/data/logs/{app}/{run_id}"
    workload = f"{data}/apps/{app}/workload/workload.bin"
    pre = []
    if duration is not None:  # a workload of this length, generated on the board from the app file
        workload = f"{log}/workload.bin"
        pre.append(["workload", "--spec", f"{data}/apps/{app}/app.yaml", "--repo", f"{data}/apps/{app}/repository",
                    "--duration", f"{duration:g}", "--out", workload])
    command = ["runtime", f"{data}/apps/{app}/repository", workload, log, "--policy", policy,
               "--telemetry", telemetry, "--device", device]
    info = run_container(ctx, session, app=app, image=image, command=command, remote_dir=remote_dir,
                         local_dir_kind=(f"logs/{app}/{run_id}", "log"), run_id=run_id, nvidia=nvidia, pre=pre)
    if info.get("dry_run"):
        return f"dry run: {len(ctx.recorder.commands)} actions listed", info
    summary = report(ctx, info["local"], app, run_id)
    info["summary"] = {k: summary.get(k) for k in ("jobs", "dmr", "relative_accuracy", "dropped", "preempted_jobs",
                                                   "response_p99_us")}
    return (f"run {run_id}: {summary.get('jobs')} jobs, DMR {100 * (summary.get('dmr') or 0):.2f}%, relative accuracy "
            f"{100 * (summary.get('relative_accuracy') or 0):.2f}% -> {info['local']}"), info


def report(ctx: Ctx, local: str, app: str, run_id: str) -> Dict[str, Any]:
    """Write the report folder of a collected run and print its table (single board)."""
    from pantheon.analysis.report import COMPARE_COLUMNS, compare_rows, write_report

    folder, summary = write_report(local, out=ctx.store.report_dir(app, run_id), plots=not ctx.fleet)
    if not ctx.fleet and not ctx.quiet:
        console.print_table(f"{app} on {ctx.board.name}: {summary.get('policy', '?')} ({summary.get('device', '?')})",
                            COMPARE_COLUMNS, compare_rows([summary]))
        console.info(f"report written to {folder}")
    return summary


def bench_command(app: str, out: str, *, policies: Sequence[str] = (), device: str = "auto",
                  telemetry: str = "auto", duration: Optional[float] = None, seed: int = 0,
                  max_jobs: Optional[int] = None, max_span_s: Optional[float] = None) -> List[str]:
    """The ``pantheon bench`` command line the container runs (values checked first: one line)."""
    from pantheon.online.workload import MAX_JOBS, MAX_SPAN_S, check_options

    check_options(seed, duration, 1.0, MAX_JOBS if max_jobs is None else max_jobs,
                  MAX_SPAN_S if max_span_s is None else max_span_s)
    command = ["bench", "--app", app, "--out", out, "--device", device, "--telemetry", telemetry, "--seed", str(seed)]
    if policies:
        command += ["--policies", ",".join(policies)]
    if duration is not None:
        command += ["--duration", f"{duration:g}"]
    if max_jobs is not None:
        command += ["--max-jobs", str(int(max_jobs))]
    if max_span_s is not None:
        command += ["--max-span", f"{max_span_s:g}"]
    return command


def bench_app(ctx: Ctx, session: Session, app: str, *, policies: Sequence[str] = (), image: str = DEFAULT_IMAGE,
              nvidia: bool = True, device: str = "auto", telemetry: str = "auto", duration: Optional[float] = None,
              seed: int = 0, run_id: Optional[str] = None, max_jobs: Optional[int] = None,
              max_span_s: Optional[float] = None) -> Tuple[str, Dict[str, Any]]:
    """``pantheon bench --app APP`` in the image on the board; collect its results folder.

    ``max_jobs``/``max_span_s`` raise the workload bounds of ``pantheon bench`` (checked here
    first, so a bad value is refused before anything runs on the board).

    The container writes ``/data/bench/<app>/<run-id>/`` (results, manifest with the image digest,
    L4T, board model, power mode, clocks, telemetry summary); it comes back to
    ``<store>/bench/<app>/<run-id>/``.
    """
    check_name("app", app)
    run_id = check_name("run id", run_id or new_run_id())
    out = f"/data/bench/{app}/{run_id}"
    command = bench_command(app, out, policies=policies, device=device, telemetry=telemetry, duration=duration,
                            seed=seed, max_jobs=max_jobs, max_span_s=max_span_s)
    info = run_container(ctx, session, app=app, image=image, command=command,
                         remote_dir=f"{session.board.remote_root}/bench/{app}/{run_id}",
                         local_dir_kind=(f"bench/{app}/{run_id}", "bench"), run_id=run_id, nvidia=nvidia)
    if info.get("dry_run"):
        return f"dry run: {len(ctx.recorder.commands)} actions listed", info
    return f"bench {run_id}: results in {info['local']}", info
