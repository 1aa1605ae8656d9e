"""``pantheon-deploy setup``: power mode and clocks of a Jetson, set through sudo and verified.

Steps on the board (each recorded as its shell command):

1. read the model and L4T release; refuse a board that is not a Jetson;
2. check ``sudo -n true`` (power modes need root; a password prompt is refused with the fix);
3. list the power modes (``nvpmodel -p --verbose``) and the active one (``nvpmodel -q``);
4. before the first change, store the current state in ``/var/lib/pantheon-setup`` on the
   board: the active mode id, and the clocks with ``jetson_clocks --store FILE``;
5. ``nvpmodel -m ID``, then ``jetson_clocks`` (``--jetson-clocks``);
6. verify with ``nvpmodel -q`` and ``jetson_clocks --show`` (clocks pinned: MinFreq == MaxFreq).

``--restore`` undoes it: ``jetson_clocks --restore FILE``, ``nvpmodel -m <stored id>``, and
removes the stored state. ``--nvpmodel bench`` takes the board preset's benchmark mode
(``deploy/boards/*.yaml``, matched by the board model).

With the jetson-stats service on the board (``/run/jtop.sock`` and its ``jtop`` package importable
by the host's ``python3``), steps 4-6 go through jtop instead (``jetson.nvpmodel = ID``,
``jetson.jetson_clocks = True``, waited for with ``jetson.ok()``): no sudo is needed, the state
before the first change is kept in ``~/.local/state/pantheon-setup`` and restored the same way.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pantheon import console
from pantheon.deploy.fleet import Ctx
from pantheon.deploy.remote import (
    SETUP_STATE_DIR,
    BoardFacts,
    board_command,
    preset_for,
    read_facts,
    require_jetson,
    sudo_prefix,
)
from pantheon.deploy.ssh import Session, q, qjoin
from pantheon.errors import BoardError, UsageError
from pantheon.platform import jetson as pb


def _state_paths(session: Session) -> Tuple[str, str, str]:
    d = pb.board_path(SETUP_STATE_DIR, session.board.board_root)
    return d, f"{d}/nvpmodel.id", f"{d}/l4t_dfs.conf"


def _choose_mode(modes: pb.PowerModes, wanted: str, facts: BoardFacts, preset_name: Optional[str]) -> pb.PowerMode:
    if wanted.lower() != "bench":
        return modes.resolve(wanted)
    preset = preset_for(facts.model, preset_name)
    if not preset or not preset.get("bench_mode"):
        raise UsageError(f"no board preset with a bench_mode matches model {facts.model!r}: pass --nvpmodel ID|NAME")
    names = preset["bench_mode"] if isinstance(preset["bench_mode"], list) else [preset["bench_mode"]]
    for name in names:
        try:
            return modes.resolve(str(name))
        except UsageError:
            continue
    return modes.resolve(str(names[0]))  # raises, listing the board's modes


def query_mode(session: Session, sudo: List[str]) -> Optional[pb.PowerMode]:
    res = board_command(session, sudo, "nvpmodel", ["-q"], check=False)
    return pb.parse_nvpmodel_query(res.stdout) if res.ok else None


def query_clocks(session: Session, sudo: List[str]) -> Optional[Dict[str, Any]]:
    res = board_command(session, sudo, "jetson_clocks", ["--show"], check=False)
    return pb.parse_jetson_clocks_show(res.stdout) if res.ok else None


def power_state(session: Session, facts: BoardFacts) -> Dict[str, Any]:
    """Power mode and clocks lock of a Jetson (None where unreadable without sudo); {} off a Jetson."""
    if not facts.is_jetson:
        return {}
    sudo = ["sudo", "-n"] if facts.sudo == "ok" else []
    mode = query_mode(session, sudo)
    clocks = query_clocks(session, sudo) if (facts.sudo == "ok" or facts.uid == 0) else None
    return {"nvpmodel": {"id": mode.id, "name": mode.name} if mode else None,
            "jetson_clocks": clocks.get("locked") if clocks else None}


def board_state(session: Session, facts: BoardFacts) -> Dict[str, Any]:
    """Board facts plus power mode and clocks, for a run's ``board.json``."""
    return {"board": session.board.name, "address": session.board.address, **facts.as_dict(),
            **power_state(session, facts)}


def setup_board(
    ctx: Ctx,
    session: Session,
    nvpmodel: Optional[str] = None,
    jetson_clocks: bool = False,
    restore: bool = False,
) -> Tuple[str, Dict[str, Any]]:
    """Set (or restore) the power mode and clocks; return the summary line and what was found."""
    facts = read_facts(session)
    require_jetson(session, facts, "setup")
    use_jtop = facts.jtop and facts.jtop_version is not None
    # Through jtop, sudo is only used where it is there anyway (the mode list and query need no root).
    sudo = sudo_prefix(session, facts) if not use_jtop or facts.sudo == "ok" else []
    modes = pb.parse_nvpmodel_modes(board_command(session, sudo, "nvpmodel", ["-p", "--verbose"]).stdout)
    before = query_mode(session, sudo)
    state_dir, mode_file, clocks_file = _state_paths(session)
    data: Dict[str, Any] = {"facts": facts.as_dict(), "modes": [{"id": m.id, "name": m.name} for m in modes.modes],
                            "default": str(modes.default) if modes.default else None,
                            "before": str(before) if before else None}
    if not ctx.fleet:
        _print_modes(session, facts, modes, before)
    if use_jtop:
        data["via"] = f"jtop {facts.jtop_version}"
        return _setup_with_jtop(ctx, session, modes, before, nvpmodel, jetson_clocks, restore, facts, data)
    if restore:
        _restore(session, sudo, state_dir, mode_file, clocks_file, data)
    elif nvpmodel is not None or jetson_clocks:
        target = _choose_mode(modes, nvpmodel, facts, session.board.preset) if nvpmodel is not None else None
        _store_state(session, sudo, state_dir, mode_file, clocks_file, before)
        if target is not None and (before is None or before.id != target.id):
            res = board_command(session, sudo, "nvpmodel", ["-m", str(target.id)], mutating=True)
            if "reboot" in (res.stdout + res.stderr).lower():
                data["reboot_required"] = True
                ctx.log(f"[yellow]board {session.board.name} needs a reboot to enter {target}[/yellow]")
        if jetson_clocks:
            board_command(session, sudo, "jetson_clocks", [], mutating=True)
        data["target"] = str(target) if target else None
    if ctx.dry_run:
        return f"dry run: {len(ctx.recorder.commands)} actions listed", data
    return _verify(session, sudo, data, nvpmodel is not None and not restore, jetson_clocks and not restore)


# Board-side (the host's python3 with jetson-stats): set what is asked through the jtop service, wait for it
# with jetson.ok() (30 s at most), print the state reached as one JSON line.
_JTOP_CONTROL = """import json, time
from jtop import jtop
MODE, CLOCKS = {mode!r}, {clocks!r}
with jtop() as j:
    if MODE is not None and j.nvpmodel is not None and j.nvpmodel.id != MODE:
        j.nvpmodel = MODE
    if CLOCKS is not None and j.jetson_clocks is not None and bool(j.jetson_clocks) != CLOCKS:
        j.jetson_clocks = CLOCKS
    deadline = time.monotonic() + 30
    while j.ok() and time.monotonic() < deadline:
        if (MODE is None or j.nvpmodel.id == MODE) and (CLOCKS is None or bool(j.jetson_clocks) == CLOCKS):
            break
    nvp, jc = j.nvpmodel, j.jetson_clocks
    print(json.dumps({{"nvpmodel": None if nvp is None else [nvp.id, str(nvp.name)],
                      "jetson_clocks": None if jc is None else bool(jc)}}))
"""
_JTOP_STATE = '"$HOME/.local/state/pantheon-setup"'  # user-writable: the jtop path needs no sudo


def _jtop(session: Session, mode: Optional[int], clocks: Optional[bool], mutating: bool) -> Dict[str, Any]:
    import json

    script = _JTOP_CONTROL.format(mode=mode, clocks=clocks)
    res = session.run(f"python3 - <<'PANTHEON_JTOP'\n{script}PANTHEON_JTOP", mutating=mutating,
                      what="jtop (jetson-stats service) control")
    if not res.ran:
        return {}
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BoardError(f"board {session.board.name}: jtop printed no state "
                         f"({res.stdout.strip()[-200:] or 'nothing'})") from None


def _setup_with_jtop(ctx: Ctx, session: Session, modes: pb.PowerModes, before: Optional[pb.PowerMode],
                     nvpmodel: Optional[str], jetson_clocks: bool, restore: bool, facts: BoardFacts,
                     data: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """Steps 4-6 through the jtop service (see the module docstring)."""
    mode_id: Optional[int] = None
    clocks: Optional[bool] = None
    if restore:
        res = session.run(f"cat {_JTOP_STATE}/nvpmodel.id {_JTOP_STATE}/jetson_clocks 2>/dev/null", check=False,
                          what="reading the stored power mode")
        parts = res.stdout.split()
        if not res.ok or len(parts) != 2:
            raise BoardError(f"board {session.board.name}: nothing to restore (no ~/.local/state/pantheon-setup: "
                             f"setup never changed it through jtop)")
        mode_id, clocks = (int(parts[0]) if parts[0].isdigit() else None), parts[1] == "1"
        data["target"] = str(mode_id) if mode_id is not None else None
    elif nvpmodel is not None or jetson_clocks:
        target = _choose_mode(modes, nvpmodel, facts, session.board.preset) if nvpmodel is not None else None
        now = _jtop(session, None, None, mutating=False)  # the clocks before the first change
        was = "1" if now.get("jetson_clocks") else "0"
        session.run(f"d={_JTOP_STATE}; if [ ! -f \"$d/nvpmodel.id\" ]; then mkdir -p \"$d\" && "
                    f"echo {q(str(before.id) if before else '')} > \"$d/nvpmodel.id\" && echo {was} > \"$d/jetson_clocks\"; fi",
                    mutating=True, what="storing the current power mode and clocks")
        mode_id = target.id if target is not None else None
        clocks = True if jetson_clocks else None
        data["target"] = str(target) if target else None
    else:
        mode_id = None
    state = _jtop(session, mode_id, clocks, mutating=restore or mode_id is not None or clocks is not None)
    if ctx.dry_run:
        return f"dry run: {len(ctx.recorder.commands)} actions listed", data
    nvp = state.get("nvpmodel")
    after = pb.PowerMode(int(nvp[0]), str(nvp[1])) if nvp else None
    data["after"], data["clocks_locked"] = (str(after) if after else None), state.get("jetson_clocks")
    if mode_id is not None and (after is None or after.id != mode_id):
        raise BoardError(f"board {session.board.name}: jtop reports {after or 'no mode'} after setting mode {mode_id} "
                         f"(a mode change may need a reboot: sudo reboot, then run setup again)")
    if clocks is not None and data["clocks_locked"] is not clocks:
        raise BoardError(f"board {session.board.name}: jtop reports jetson_clocks "
                         f"{'off' if clocks else 'on'} after asking for {'on' if clocks else 'off'}")
    if restore:
        session.run(f"rm -rf -- {_JTOP_STATE}", mutating=True, what="removing the stored state")
        data["restored"] = True
    pinned = {True: "clocks pinned", False: "clocks not pinned", None: "clocks unknown"}[data["clocks_locked"]]
    verb = "restored" if restore else ("set" if mode_id is not None or clocks else "is in")
    return f"{verb} {after or 'unknown mode'}, {pinned} (through jtop)", data


def _store_state(session: Session, sudo: List[str], state_dir: str, mode_file: str, clocks_file: str,
                 before: Optional[pb.PowerMode]) -> None:
    """Keep the state from before pantheon's first change (a second setup does not overwrite it)."""
    s = qjoin(sudo)
    exe = q(pb.command_path("jetson_clocks", session.board.board_root))
    mode = str(before.id) if before else ""
    session.run(
        f"if [ ! -f {q(mode_file)} ]; then {s} mkdir -p {q(state_dir)} && "
        f"{s} {exe} --store {q(clocks_file)} </dev/null && "
        f"echo {q(mode)} | {s} tee {q(mode_file)} >/dev/null; fi",
        mutating=True, what="storing the current power mode and clocks",
    )


def _restore(session: Session, sudo: List[str], state_dir: str, mode_file: str, clocks_file: str,
             data: Dict[str, Any]) -> None:
    res = session.run(f"cat {q(mode_file)} 2>/dev/null", check=False, what="reading the stored power mode")
    if not res.ok:
        raise BoardError(f"board {session.board.name}: nothing to restore (no {mode_file}: setup never changed it)")
    board_command(session, sudo, "jetson_clocks", ["--restore", clocks_file], mutating=True)
    old = res.stdout.strip()
    if old.isdigit():
        board_command(session, sudo, "nvpmodel", ["-m", old], mutating=True)
        data["target"] = old
    s = qjoin(sudo)
    session.run(f"{s} rm -rf -- {q(state_dir)}", mutating=True, what="removing the stored state")
    data["restored"] = True


def _verify(session: Session, sudo: List[str], data: Dict[str, Any], check_mode: bool,
            check_clocks: bool) -> Tuple[str, Dict[str, Any]]:
    after = query_mode(session, sudo)
    clocks = query_clocks(session, sudo)
    data["after"] = str(after) if after else None
    data["clocks_locked"] = clocks.get("locked") if clocks else None
    target = data.get("target")
    if check_mode and target and after is not None and not data.get("reboot_required"):
        if str(after) != target:
            raise BoardError(f"board {session.board.name}: nvpmodel -q reports {after} after setting {target}")
    if data.get("restored") and target and after is not None and str(after.id) != str(target):
        raise BoardError(f"board {session.board.name}: nvpmodel -q reports {after} after restoring mode {target}")
    if check_clocks and not (clocks and clocks.get("locked")):
        raise BoardError(f"board {session.board.name}: jetson_clocks ran but --show does not report pinned clocks")
    pinned = {True: "clocks pinned", False: "clocks not pinned", None: "clocks unknown"}[data["clocks_locked"]]
    verb = "restored" if data.get("restored") else ("set" if data.get("target") or check_clocks else "is in")
    return f"{verb} {after or 'unknown mode'}, {pinned}", data


def _print_modes(session: Session, facts: BoardFacts, modes: pb.PowerModes, current: Optional[pb.PowerMode]) -> None:
    preset = preset_for(facts.model, session.board.preset)
    console.info(
        f"{session.board.name}: {facts.model or 'unknown model'}, L4T r{facts.l4t} "
        f"(JetPack {facts.jetpack or '?'})" + (f", preset {preset['name']}" if preset else "")
    )
    rows = []
    for m in modes.modes:
        marks = [w for w, hit in (("active", current and current.id == m.id),
                                  ("default", modes.default and modes.default.id == m.id)) if hit]
        rows.append((m.id, m.name, ", ".join(marks)))
    console.print_table("power modes (nvpmodel -p --verbose)", ["id", "name", ""], rows, to_stderr=True)
