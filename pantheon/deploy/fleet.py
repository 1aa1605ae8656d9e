"""Boards from the command line or an inventory file, and running one verb on many in parallel.

Inventory (``--inventory boards.yaml``)::

    defaults:                      # optional; applied to every board
      user: nvidia
      identity: ~/.ssh/id_ed25519  # relative paths are relative to this file
      remote_root: /var/lib/pantheon/data
    boards:
      - name: nx-1                 # label in tables and local paths (default: the host)
        host: 192.168.55.1
        port: 22
        labels: {site: lab, kind: xavier-nx}
        preset: xavier-nx          # deploy/boards/xavier-nx.yaml (default: detected from the model)
        env: {}                    # exported to board-side commands, e.g. PANTHEON_BOARD_ROOT
      - {name: nx-2, host: 192.168.55.2}

Precedence: a board's own entry > command-line options > the inventory's ``defaults``.

A verb acting on several boards runs them in a thread pool of ``--jobs`` workers; one
board failing does not stop the others; a per-board table ends the run and the exit
code is 0 only when every board succeeded. With one board, errors propagate as usual.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from pantheon import console
from pantheon.deploy.ssh import Board, Recorder, parse_board
from pantheon.errors import FormatError, PantheonError, UsageError, clear_interrupt
from pantheon.formats.store import Store

STOP = threading.Event()  # set on Ctrl-C during a fleet command; long board actions check it
_BOARD_KEYS = {"name", "host", "user", "port", "identity", "labels", "env", "remote_root", "preset"}
_TEXT_KEYS = ("name", "host", "user", "identity", "remote_root", "preset")
_MAP_KEYS = ("labels", "env")
_SCALARS = (str, int, float, bool)


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _check_types(entry: Any, where: str) -> None:
    """Every inventory value has the type the format says, before anything uses it: text keys
    are strings, ``labels``/``env`` map names to scalars (``port`` is checked by the board itself)."""
    if not isinstance(entry, dict):
        raise FormatError(f"{where} must be a mapping of keys such as host, port, env; got {_type_name(entry)}")
    for key in _TEXT_KEYS:
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise FormatError(f"{where}: '{key}' must be a string, got {_type_name(value)} {value!r}")
    for key in _MAP_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise FormatError(f"{where}: '{key}' must be a mapping of NAME: value, got {_type_name(value)} {value!r}")
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, _SCALARS):
                raise FormatError(f"{where}: '{key}' entry {k!r}: {v!r} must map a name to a string or number")


@dataclass
class Connection:
    """Connection settings from the command line, shared by every board of a command."""

    user: Optional[str] = None
    port: Optional[int] = None
    identity: Optional[str] = None
    known_hosts: Optional[str] = None
    accept_new_host_key: bool = False
    connect_timeout: int = 5
    remote_root: Optional[str] = None


def _merge(entry: Dict[str, Any], conn: Connection, defaults: Dict[str, Any], base: Path) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for key in ("user", "port", "identity", "remote_root"):
        if entry.get(key) is not None:
            values[key] = entry[key]
        elif getattr(conn, key) is not None:
            values[key] = getattr(conn, key)
        elif defaults.get(key) is not None:
            values[key] = defaults[key]
    if values.get("identity") is not None:
        ident = Path(str(values["identity"])).expanduser()
        values["identity"] = str(ident if ident.is_absolute() else base / ident)
    for key in ("labels", "env"):
        merged = dict(defaults.get(key) or {})
        merged.update(entry.get(key) or {})
        values[key] = {str(k): str(v) for k, v in merged.items()}
    if entry.get("preset") or defaults.get("preset"):
        values["preset"] = str(entry.get("preset") or defaults.get("preset"))
    values["known_hosts"] = conn.known_hosts
    values["accept_new_host_key"] = conn.accept_new_host_key
    values["connect_timeout"] = conn.connect_timeout
    return values


def load_inventory(path: Path, conn: Optional[Connection] = None) -> List[Board]:
    """Read an inventory YAML file into boards (see the module docstring for the format)."""
    conn = conn or Connection()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read inventory {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise FormatError(f"inventory {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "boards" not in data:
        raise FormatError(f"inventory {path}: expected a mapping with a 'boards' list")
    defaults = data.get("defaults") or {}
    _check_types(defaults, f"inventory {path}: 'defaults'")
    entries = data["boards"]
    if isinstance(entries, dict):  # {name: {host: ...}} is accepted too
        for k, v in entries.items():
            _check_types(v or {}, f"inventory {path}: board {k!r}")
        entries = [dict(v or {}, name=str(k)) for k, v in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"inventory {path}: 'boards' must be a non-empty list")
    boards: List[Board] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            _check_types(entry, f"inventory {path}: board #{i + 1}")
        if not isinstance(entry, dict) or not entry.get("host"):
            raise FormatError(f"inventory {path}: board #{i + 1} needs a 'host'")
        unknown = set(entry) - _BOARD_KEYS
        if unknown:
            raise FormatError(f"inventory {path}: board #{i + 1} has unknown keys {sorted(unknown)}")
        values = _merge(entry, conn, defaults, Path(path).resolve().parent)
        boards.append(parse_board(str(entry["host"]), name=str(entry.get("name") or ""), **values))
    _check_unique(boards)
    return boards


def _check_unique(boards: Sequence[Board]) -> None:
    seen = set()
    for b in boards:
        if b.name in seen:
            raise UsageError(f"two boards are named {b.name!r}: give them distinct names")
        seen.add(b.name)


def select_boards(
    specs: Sequence[str],
    inventory: Optional[Path],
    conn: Connection,
    labels: Sequence[str] = (),
) -> List[Board]:
    """The boards a command acts on: ``--board`` values, then the inventory's, filtered by ``--label``."""
    boards: List[Board] = []
    for spec in specs:
        values = _merge({}, conn, {}, Path.cwd())
        boards.append(parse_board(spec, **values))
    if inventory is not None:
        boards.extend(load_inventory(inventory, conn))
    for sel in labels:
        if "=" not in sel:
            raise UsageError(f"bad --label {sel!r}: expected KEY=VALUE")
        k, v = sel.split("=", 1)
        boards = [b for b in boards if b.labels.get(k) == v]
    if not boards:
        raise UsageError("no board given: pass --board HOST (repeatable) or --inventory FILE")
    _check_unique(boards)
    return boards


# --------------------------------------------------------------------------------------------
# Running a verb on boards
# --------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a verb's per-board function gets: the board, its recorder and how to report."""

    board: Board
    recorder: Recorder
    dry_run: bool = False
    fleet: bool = False  # several boards: no progress bars, status lines prefixed with the board
    quiet: bool = False  # --json: no tables on stdout
    store: Store = field(default_factory=Store)  # the local artifact store (collected logs, records)

    def log(self, msg: str) -> None:
        from rich.markup import escape  # "[nx-1]" would otherwise be read as a markup tag and vanish

        console.info(f"{escape(f'[{self.board.name}]')} {msg}" if self.fleet else msg)

    @property
    def show_progress(self) -> bool:
        return not self.fleet


@dataclass
class BoardResult:
    board: Board
    ok: bool
    summary: str
    data: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


Verb = Callable[[Ctx], Tuple[str, Dict[str, Any]]]


def run_on_boards(
    boards: Sequence[Board], verb: Verb, *, jobs: int = 4, dry_run: bool = False, name: str = "", quiet: bool = False,
    store: Optional[Store] = None,
) -> List[BoardResult]:
    """Run ``verb`` on every board (in parallel when several); collect one result per board.

    Real runs save each board's actions as ``commands.sh`` (with ``result.json``) under
    ``<store>/deploy/<board>/<run-id>-<name>/``, also when the board failed.
    """
    fleet = len(boards) > 1
    STOP.clear()
    store = store or Store()

    def one(board: Board) -> BoardResult:
        ctx = Ctx(board, Recorder(dry_run=dry_run, prefix=f"[{board.name}] " if fleet else ""), dry_run, fleet, quiet,
                  store)
        t0 = time.monotonic()
        try:
            summary, data = verb(ctx)
            res = BoardResult(board, True, summary, data, time.monotonic() - t0)
        except PantheonError as exc:
            if not fleet:
                _save_record(ctx, name, BoardResult(board, False, str(exc), {}, time.monotonic() - t0))
                raise
            res = BoardResult(board, False, str(exc), {}, time.monotonic() - t0)
        except Exception as exc:  # one board's bug must not stop the others; shown in the table
            if not fleet:
                raise
            msg = " ".join(str(exc).split()) or exc.__class__.__name__
            res = BoardResult(board, False, f"unexpected {exc.__class__.__name__}: {msg}", {}, time.monotonic() - t0)
        _save_record(ctx, name, res)
        return res

    if not fleet:
        return [one(boards[0])]
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    with cf.ThreadPoolExecutor(max_workers=min(jobs, len(boards)), thread_name_prefix="board") as pool:
        futures = [pool.submit(one, b) for b in boards]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            # Ctrl-C reaches only this thread: tell every board to stop (run: stop the container and
            # collect what it wrote), wait for them, then report the interruption.
            STOP.set()
            clear_interrupt()  # handled: the boards' collections may still seal what they fetch
            for f in futures:
                f.cancel()
            cf.wait(futures)
            raise


def _save_record(ctx: Ctx, name: str, res: BoardResult) -> None:
    if ctx.dry_run or not name or not ctx.recorder.commands:
        return
    from pantheon.formats.store import new_run_id, write_artifact

    dest = ctx.store.root / "deploy" / ctx.board.name / f"{new_run_id()}-{name}"
    result = {"board": ctx.board.name, "address": ctx.board.address, "verb": name, "ok": res.ok,
              "summary": res.summary, "seconds": round(res.seconds, 3), "data": res.data}
    try:
        with write_artifact(dest, kind="deploy-record", meta={"verb": name, "board": ctx.board.name}) as tmp:
            (tmp / "commands.sh").write_text(ctx.recorder.script(f"pantheon-deploy {name} on {ctx.board.address}"))
            (tmp / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    except OSError as exc:  # a record we cannot write must not turn a good deploy into a failure
        console.warn(f"could not save the commands of {name} on {ctx.board.name}: {exc}")


def print_results(verb: str, results: Sequence[BoardResult], *, to_stderr: bool = False) -> None:
    """The per-board table that ends a fleet command."""
    from rich.markup import escape  # addresses ("[fe80::1]") and messages are text, not markup

    rows = [(r.board.name, escape(r.board.address), "ok" if r.ok else "FAILED", f"{r.seconds:.1f}", escape(r.summary))
            for r in results]
    console.print_table(f"pantheon-deploy {verb}", ["board", "address", "result", "s", "summary"], rows,
                        to_stderr=to_stderr)


def exit_code(results: Sequence[BoardResult]) -> int:
    return 0 if all(r.ok for r in results) else 1


@dataclass
class Common:
    """The options every board command shares (see ``pantheon-deploy push --help``)."""

    boards: Sequence[str] = ()
    inventory: Optional[Path] = None
    labels: Sequence[str] = ()
    conn: Connection = field(default_factory=Connection)
    jobs: int = 4
    dry_run: bool = False
    store: Store = field(default_factory=Store)  # the local artifact store

    def select(self) -> List[Board]:
        return select_boards(self.boards, self.inventory, self.conn, self.labels)


def execute(name: str, common: Common, verb: Verb, *, as_json: bool = False) -> int:
    """Select the boards, run ``verb`` on each, print the summary line or fleet table; the exit code."""
    boards = common.select()
    results = run_on_boards(boards, verb, jobs=common.jobs, dry_run=common.dry_run, name=name, quiet=as_json,
                            store=common.store)
    if as_json:
        payload = [{"board": r.board.name, "address": r.board.address, "ok": r.ok, "summary": r.summary,
                    **r.data} for r in results]
        console.out.print_json(json.dumps(payload if len(results) > 1 else payload[0], default=str))
    elif len(results) > 1:
        print_results(name, results)
    else:
        from rich.markup import escape

        console.info(escape(results[0].summary))
    return exit_code(results)
