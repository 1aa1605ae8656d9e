"""``pantheon-deploy status``: what a board has and whether it is ready to run Pantheon.

Per board: SSH reachable, model and L4T release, the Docker engine (version, NVIDIA
runtime), the Pantheon images with their ids, digests and L4T labels and whether each
one can use the GPU on this board's L4T, power mode and clocks (Jetson only; clocks need
sudo), the jtop socket, free disk under the data root and the app bundles present.
Problems with one part (no Docker, no sudo) are reported in their row, not raised.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from pantheon import console
from pantheon.deploy.engine import RemoteEngine
from pantheon.deploy.fleet import Ctx
from pantheon.deploy.remote import BoardFacts, preset_for, read_facts
from pantheon.deploy.setup import power_state
from pantheon.deploy.ssh import Session, q
from pantheon.errors import PantheonError
from pantheon.platform import jetson as pb

IMAGE_HINT = "pantheon"  # images whose tags contain this are listed


def _images(engine: RemoteEngine, facts: BoardFacts) -> List[Dict[str, Any]]:
    engine.record("image", "ls", "--filter", f"reference=*{IMAGE_HINT}*", mutating=False)
    out = []
    for img in engine.client.images.list():
        tags = [t for t in img.tags if IMAGE_HINT in t]
        if not tags:
            continue
        labels = (img.attrs.get("Config") or {}).get("Labels") or {}
        l4t = labels.get(pb.L4T_LABEL)
        problem = (pb.compatibility_problem(facts.l4t, l4t, tags[0], board=engine.session.board.cli)
                   if facts.is_jetson else None)
        out.append({
            "tags": tags,
            "id": img.id,
            "digests": img.attrs.get("RepoDigests") or [],
            "l4t": l4t,
            "compatible": None if not facts.is_jetson else problem is None,
            "problem": problem,
            "created": img.attrs.get("Created"),
        })
    return out


def _bundles(session: Session) -> List[Dict[str, Any]]:
    apps = f"{session.board.remote_root}/apps"
    res = session.run(
        f"cd {q(apps)} 2>/dev/null || exit 0; for a in *; do [ -L \"$a\" ] || [ -d \"$a\" ] || continue; "
        f"t=$(readlink \"$a\" 2>/dev/null || echo \"$a\"); "
        f"if [ -f \"$a/manifest.json\" ]; then m=yes; else m=no; fi; echo \"$a $t $m\"; done",
        check=False, what="listing app bundles",
    )
    out = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            bid = parts[1].rsplit("@", 1)[-1] if "@" in parts[1] else None
            out.append({"app": parts[0], "bundle_id": bid, "manifest": parts[2] == "yes"})
    return out


def board_status(ctx: Ctx, session: Session) -> Tuple[str, Dict[str, Any]]:
    """Everything above for one board; the summary line and a JSON-able dict."""
    facts = read_facts(session)
    data: Dict[str, Any] = {"ssh": "ok", **facts.as_dict(), "is_jetson": facts.is_jetson}
    preset = preset_for(facts.model, session.board.preset) if facts.model else None
    data["preset"] = preset["name"] if preset else None
    with RemoteEngine(session) as engine:
        try:
            data["runtimes"] = engine.runtimes()  # opens the client: probes the engine
            data["engine"] = engine.version
            data["nvidia_runtime"] = "nvidia" in data["runtimes"]
            data["images"] = _images(engine, facts)
        except PantheonError as exc:
            data["engine"] = None
            data["engine_error"] = str(exc)
            data["images"] = []
    data.update(power_state(session, facts))
    data["bundles"] = _bundles(session)
    if not ctx.fleet and not ctx.quiet:
        print_status(session.board.name, data)
    return _summary(data), data


def _summary(d: Dict[str, Any]) -> str:
    parts = [d.get("model") or "unknown model", f"L4T r{d['l4t']}" if d.get("l4t") else "not a Jetson"]
    parts.append(f"docker {d['engine']}" if d.get("engine") else "NO docker engine")
    if d.get("engine"):
        parts.append("nvidia runtime" if d.get("nvidia_runtime") else "no nvidia runtime")
    parts.append(f"{len(d.get('images', []))} images")
    bad = [i for i in d.get("images", []) if i.get("compatible") is False]
    if bad:
        parts.append(f"{len(bad)} image(s) for another L4T")
    if d.get("nvpmodel"):
        parts.append(f"{d['nvpmodel']['name']} ({d['nvpmodel']['id']})")
    parts.append(f"{len(d.get('bundles', []))} bundles")
    return ", ".join(parts)


def _yn(value: Any) -> str:
    return {True: "yes", False: "no", None: "unknown"}.get(value, str(value))


def print_status(name: str, d: Dict[str, Any]) -> None:
    rows = [
        ("model", d.get("model") or "unknown"),
        ("L4T / JetPack", f"r{d['l4t']} / {d.get('jetpack') or '?'}" if d.get("l4t") else "not a Jetson"),
        ("preset", d.get("preset") or "none"),
        ("architecture", d.get("arch")),
        ("docker engine", d.get("engine") or d.get("engine_error")),
        ("nvidia runtime", _yn(d.get("nvidia_runtime"))),
        ("power mode", f"{d['nvpmodel']['name']} ({d['nvpmodel']['id']})" if d.get("nvpmodel") else "unknown"),
        ("clocks pinned", _yn(d.get("jetson_clocks"))),
        ("jtop socket", _yn(d.get("jtop"))),
        ("free disk", f"{d['disk_free_kb'] / 1048576:.1f} GB" if d.get("disk_free_kb") else "unknown"),
        ("sudo", d.get("sudo")),
    ]
    for img in d.get("images", []):
        compat = {True: "runs here", False: "WRONG L4T", None: "-"}[img["compatible"]]
        rows.append((f"image {img['tags'][0]}", f"{img['id'][7:19]} L4T {img['l4t'] or '?'} {compat}"))
    for b in d.get("bundles", []):
        rows.append((f"bundle {b['app']}", f"{b['bundle_id'] or 'plain dir'}" + ("" if b["manifest"] else " (no manifest)")))
    console.print_table(f"status of {name}", ["", ""], rows)
