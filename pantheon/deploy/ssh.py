"""The system ``ssh`` as pantheon-deploy uses it: board addresses, host-key policy, quoting, errors.

Security model (docs/deploy.md "Security model"):

* host keys are always checked: ``StrictHostKeyChecking=yes`` against ``--known-hosts``
  (default: ssh's own, ``~/.ssh/known_hosts``); a board seen for the first time needs
  ``--accept-new-host-key`` (``StrictHostKeyChecking=accept-new``), a changed key is refused;
* keys or the agent only: ``BatchMode=yes``, so ssh never prompts and no password is ever
  on a command line; ``--identity`` adds ``-i KEY -o IdentitiesOnly=yes``;
* the user's ``~/.ssh/config`` still applies (jump hosts, agents) for what we do not set;
* board names starting with ``-`` or holding shell metacharacters are refused, and every
  remote path and value goes through :func:`shlex.quote`.

Every remote action goes through a :class:`Session`, which records it as the equivalent
shell command (``--dry-run`` prints mutating ones instead of running them; real runs save
them as ``commands.sh``) and reuses one authenticated connection (OpenSSH multiplexing).

Example::

    board = parse_board("nvidia@192.168.55.1:22")
    with Session(board) as s:
        print(s.run("uname -m").stdout)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from pantheon import console
from pantheon.errors import DeployError, HostKeyError, SSHError, UsageError

DEFAULT_REMOTE_ROOT = "/var/lib/pantheon/data"
DEFAULT_CONNECT_TIMEOUT = 5

_HOST_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# Every pattern here is used with fullmatch: ``$`` alone would accept a trailing newline.


# --------------------------------------------------------------------------------------------
# Boards and their validation
# --------------------------------------------------------------------------------------------


def check_host(host: str) -> str:
    """Refuse a host that could be read as an ssh option or carries shell metacharacters."""
    if not host or host.startswith("-"):
        raise UsageError(f"refusing board {host!r}: a host name may not be empty or start with '-'")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (_HOST_RE.fullmatch(bare) or (":" in bare and _IPV6_RE.fullmatch(bare))):
        raise UsageError(
            f"refusing board {host!r}: a host is a name or an IP address (letters, digits, '.', '-', '_')"
        )
    return bare


def check_name(kind: str, value: str) -> str:
    """App names, run ids, inventory names: used in paths on both sides, so kept plain."""
    if not value or not _NAME_RE.fullmatch(value) or ".." in value:
        raise UsageError(f"bad {kind} {value!r}: use letters, digits, '.', '-', '_' (not starting with them)")
    return value


_REMOTE_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+@~-]*$")


def check_remote_path(path: str) -> str:
    """An absolute board path of plain characters (no spaces, no '..'): quoted anyway, kept readable."""
    if not _REMOTE_PATH_RE.fullmatch(path or "") or "/../" in path + "/":
        raise UsageError(
            f"bad remote path {path!r}: it must be absolute, of letters, digits and ._+@~-/ only, without '..'"
        )
    return path.rstrip("/") or "/"


def default_name(host: str) -> str:
    """A board's name from its host: ``fe80::1`` -> ``fe80__1``, ``::1`` -> ``ipv6__1``."""
    name = host.replace(":", "_")
    return name if name[:1].isalnum() else "ipv6" + name


def check_port(value: object, where: str) -> int:
    """An integer port 1..65535 (``22`` or ``"22"``); ``22.7``, ``True`` or ``"22\n"`` are refused."""
    text = str(value)
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _PORT_RE.fullmatch(text))):
        raise UsageError(f"bad port {value!r} for {where}: a whole number from 1 to 65535")
    port = int(text)
    if not 0 < port < 65536:
        raise UsageError(f"bad port {value!r} for {where}: a whole number from 1 to 65535")
    return port


def check_timeout(value: object) -> int:
    """``--connect-timeout``: whole seconds, 1 to 3600."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise UsageError(f"bad --connect-timeout {value!r}: whole seconds from 1 to 3600")
    return value


@dataclass
class Board:
    """One board: where to reach it and how. ``name`` labels it in tables and local paths."""

    host: str
    name: str = ""
    user: Optional[str] = None
    port: Optional[int] = None
    identity: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)  # exported to every board-side command
    remote_root: str = DEFAULT_REMOTE_ROOT
    preset: Optional[str] = None
    known_hosts: Optional[str] = None
    accept_new_host_key: bool = False
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        self.host = check_host(self.host)
        self.name = check_name("board name", self.name or default_name(self.host))
        if self.user is not None and not _USER_RE.fullmatch(self.user):
            raise UsageError(f"refusing user {self.user!r} for board {self.name}: not a plain user name")
        if self.port is not None:
            self.port = check_port(self.port, f"board {self.name}")
        self.connect_timeout = check_timeout(self.connect_timeout)
        for key in self.env:
            if not _ENV_KEY_RE.fullmatch(key):
                raise UsageError(f"bad environment variable name {key!r} for board {self.name}")
        self.remote_root = check_remote_path(self.remote_root)
        if self.identity is not None:
            self.identity = str(Path(self.identity).expanduser())
            if not Path(self.identity).is_file():
                raise UsageError(f"identity file {self.identity} does not exist")
        if self.known_hosts is not None:
            self.known_hosts = str(Path(self.known_hosts).expanduser())

    @property
    def address(self) -> str:
        """``user@host:port`` as people write it (for messages and docker's ssh:// URL)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"

    @property
    def cli(self) -> str:
        """``--board ADDRESS`` (and ``--remote-root`` when not the default) for commands in hints."""
        out = f"--board {q(self.address)}"
        return out + (f" --remote-root {q(self.remote_root)}" if self.remote_root != DEFAULT_REMOTE_ROOT else "")

    @property
    def board_root(self) -> str:
        """The board root that board-side platform files and commands are found under."""
        return self.env.get("PANTHEON_BOARD_ROOT", "/") or "/"


def parse_board(spec: str, **kwargs: object) -> Board:
    """``[user@]host[:port]`` -> :class:`Board`; keyword arguments fill what the spec leaves out.

    Example: ``parse_board("nvidia@10.0.0.7:2222")``.
    """
    if spec.startswith("-"):
        raise UsageError(f"refusing board {spec!r}: a board may not start with '-'")
    user = None
    port = None
    rest = spec
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", rest)
    if m:
        host, port = m.group(1), m.group(2)
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host = rest
    if port is not None and not _PORT_RE.fullmatch(str(port)):
        raise UsageError(f"bad port in board {spec!r}: a whole number from 1 to 65535")
    values = dict(kwargs)
    if user:  # what the spec spells out wins over --user/--port and inventory defaults
        values["user"] = user
    if port:
        values["port"] = int(port)
    return Board(host=host, **values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Recording: every action as the equivalent shell command
# --------------------------------------------------------------------------------------------


class Recorder:
    """Collects actions as shell commands; in dry-run mode, prints mutating ones instead of running."""

    def __init__(self, dry_run: bool = False, prefix: str = "") -> None:
        self.dry_run = dry_run
        self.prefix = prefix
        self.commands: List[str] = []
        self._lock = threading.Lock()

    def add(self, command: str, *, mutating: bool = True, note: str = "") -> bool:
        """Record ``command``; return True when it should really run."""
        line = command + (f"  # {note}" if note else "")
        with self._lock:
            self.commands.append(line if mutating else f"{line}  # (read-only)")
        if self.dry_run and mutating:
            console.out.print(f"{self.prefix}{line}", markup=False, highlight=False)
            return False
        return True

    def script(self, title: str) -> str:
        return "#!/bin/sh\n# " + title + "\nset -e\n" + "\n".join(self.commands) + "\n"


# --------------------------------------------------------------------------------------------
# ssh errors
# --------------------------------------------------------------------------------------------


def classify_ssh_failure(board: Board, stderr: str) -> DeployError:
    """Turn ssh's exit-255 stderr into one actionable line."""
    text = " ".join(stderr.split())
    where = f"{board.name} ({board.address})"
    known = board.known_hosts or "~/.ssh/known_hosts"
    kh_host = f"[{board.host}]:{board.port}" if board.port and board.port != 22 else board.host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key for" in stderr and "has changed" in stderr:
        return HostKeyError(
            f"the host key of board {where} CHANGED since it was recorded in {known}: refusing to connect "
            f"(a reinstalled board? then remove the old key with ssh-keygen -R {q(kh_host)}"
            f"{' -f ' + q(known) if board.known_hosts else ''} and connect again)"
        )
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return HostKeyError(
            f"unknown host key for board {where}: it is not in {known}; check its fingerprint "
            f"(ssh-keyscan -p {board.port or 22} {board.host} | ssh-keygen -lf -) and pass "
            f"--accept-new-host-key once to record it"
        )
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        key = f"key {board.identity}" if board.identity else "your keys/agent"
        return SSHError(
            f"authentication failed on board {where} with {key}: install your public key on the board "
            f"(ssh-copy-id {board.address.rsplit(':', 1)[0] if board.port else board.address}) or pass --identity"
        )
    for marker in ("timed out", "Connection refused", "No route to host", "Could not resolve", "Network is unreachable",
                   "Name or service not known", "Connection closed", "Connection reset"):
        if marker in stderr:
            return SSHError(
                f"cannot reach board {where}: {text or marker} (ConnectTimeout={board.connect_timeout}s); "
                f"check the address, the port and that sshd runs on the board"
            )
    return SSHError(f"ssh to board {where} failed: {text or 'exit status 255'}")


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    ran: bool = True

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Session:
    """An authenticated connection to one board (OpenSSH multiplexing) and its action recorder.

    ``run(script)`` executes a POSIX shell snippet on the board, prefixed with the board's
    ``env`` exports; mutating snippets are only printed under ``--dry-run``. Use as a context
    manager; :meth:`close` ends the shared connection.
    """

    def __init__(self, board: Board, recorder: Optional[Recorder] = None, *, multiplex: bool = True) -> None:
        self.board = board
        self.recorder = recorder or Recorder()
        self._ctl_dir: Optional[str] = None
        self._master = False
        self._multiplex = multiplex and os.name == "posix"
        self._lock = threading.Lock()
        self.closed = False

    # ---- argv -------------------------------------------------------------------------------

    def _options(self) -> List[str]:
        b = self.board
        opts = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=" + ("accept-new" if b.accept_new_host_key else "yes"),
            "-o", f"ConnectTimeout={int(b.connect_timeout)}",
            "-o", "ServerAliveInterval=10",
            "-o", "ServerAliveCountMax=3",
        ]
        if b.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={b.known_hosts}"]
        if b.identity:
            opts += ["-i", b.identity, "-o", "IdentitiesOnly=yes"]
        if b.port:
            opts += ["-p", str(b.port)]
        if b.user:
            opts += ["-l", b.user]
        return opts

    def _mux_options(self) -> List[str]:
        if not self._master or not self._ctl_dir:
            return []
        return ["-o", "ControlMaster=no", "-o", f"ControlPath={self._ctl_dir}/c"]

    def argv(self, remote: Optional[str] = None) -> List[str]:
        """The ssh command line (multiplexed when the master is up) for ``remote``."""
        argv = ["ssh", *self._options(), *self._mux_options(), "-T", "--", self.board.host]
        if remote is not None:
            argv.append(remote)
        return argv

    def display(self, remote: str) -> str:
        """The equivalent shell command, without the multiplexing options."""
        return shlex.join(["ssh", *self._options(), "--", self.board.host, remote])

    def wrap(self, script: str) -> str:
        """``script`` with the board's environment exported first."""
        if not self.board.env:
            return script
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.board.env.items()))
        return f"export {exports}; {script}"

    # ---- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """Authenticate once (host key, key) and keep the connection for the later commands."""
        with self._lock:
            if self._master or self.closed:
                return
            if not shutil.which("ssh"):
                raise SSHError("the ssh client is not installed on this machine (apt install openssh-client)")
            if self._multiplex:
                self._ctl_dir = tempfile.mkdtemp(prefix="pantheon-ssh-")
                argv = ["ssh", *self._options(), "-o", "ControlMaster=yes", "-o", f"ControlPath={self._ctl_dir}/c",
                        "-o", "ControlPersist=120", "-f", "-N", "--", self.board.host]
            else:
                argv = ["ssh", *self._options(), "-T", "--", self.board.host, "true"]
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=self.board.connect_timeout * 3 + 10,
                                      start_new_session=True)  # the shared connection outlives a Ctrl-C
            except subprocess.TimeoutExpired:
                raise SSHError(
                    f"cannot reach board {self.board.name} ({self.board.address}): no answer in "
                    f"{self.board.connect_timeout * 3 + 10} s"
                ) from None
            if proc.returncode != 0:
                raise classify_ssh_failure(self.board, proc.stderr)
            self._master = self._multiplex

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._master and self._ctl_dir:
                subprocess.run(["ssh", *self._options(), "-o", f"ControlPath={self._ctl_dir}/c", "-O", "exit",
                                "--", self.board.host], capture_output=True, timeout=10, check=False)
            if self._ctl_dir:
                shutil.rmtree(self._ctl_dir, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands ---------------------------------------------------------------------------

    def run(
        self,
        script: str,
        *,
        mutating: bool = False,
        check: bool = True,
        input_bytes: Optional[bytes] = None,
        timeout: float = 120.0,
        note: str = "",
        what: str = "",
    ) -> Result:
        """Run a shell snippet on the board; raise :class:`DeployError` on failure when ``check``."""
        remote = self.wrap(script)
        if not self.recorder.add(self.display(remote), mutating=mutating, note=note):
            return Result(0, "", "", ran=False)
        stdin = input_bytes if input_bytes is not None else b""
        return self._exec(remote, stdin, timeout, check, what or "command", what or script.splitlines()[0][:80])

    def run_script(self, script: str, *, mutating: bool = True, check: bool = True, timeout: float = 300.0,
                   note: str = "", what: str = "") -> Result:
        """Run a long shell script by feeding it to ``sh -s`` on the board (no argument-length limit)."""
        remote = self.wrap("sh -s")
        shown = f"{self.display(remote)} <<'PANTHEON_EOF'\n{script.rstrip()}\nPANTHEON_EOF"
        if not self.recorder.add(shown, mutating=mutating, note=note):
            return Result(0, "", "", ran=False)
        return self._exec(remote, script.encode(), timeout, check, what or "script", what or "script")

    def _exec(self, remote: str, stdin: bytes, timeout: float, check: bool, waiting: str, failing: str) -> Result:
        """Run ``remote`` over ssh; a timeout (named ``waiting``), ssh's own failure (exit 255) and, when
        ``check``, a non-zero exit (named ``failing``) become one-line errors."""
        self.connect()
        try:
            proc = subprocess.run(self.argv(remote), input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SSHError(f"board {self.board.name}: {waiting} did not finish in {timeout:.0f} s") from None
        res = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if res.returncode == 255 and not res.stdout:
            raise classify_ssh_failure(self.board, res.stderr)
        if check and res.returncode != 0:
            raise DeployError(
                f"board {self.board.name}: {failing} failed (exit {res.returncode}): "
                f"{last_line(res.stderr) or last_line(res.stdout) or 'no output'}"
            )
        return res

    def popen(self, script: str, *, note: str = "", **kwargs: object) -> Optional[subprocess.Popen]:
        """Start a mutating remote command with pipes (transfers); None under --dry-run."""
        remote = self.wrap(script)
        if not self.recorder.add(self.display(remote), mutating=True, note=note):
            return None
        self.connect()
        return subprocess.Popen(self.argv(remote), **kwargs)  # type: ignore[call-overload]


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def q(value: object) -> str:
    """Shell-quote one value for a remote command."""
    return shlex.quote(str(value))


def qjoin(values: Sequence[object]) -> str:
    """Shell-quote and join the words of a remote command."""
    return " ".join(q(v) for v in values)


# Hashes every file below the current directory, one ``<sha256>  ./<rel>`` line each.
SHA256_TREE = "find . -type f -print0 | xargs -0 -r sha256sum"


def sha256sum_line(line: str) -> Optional[Tuple[str, str]]:
    """``(rel, sha256)`` of one line of :data:`SHA256_TREE`'s output; None for anything else
    (sha256sum escapes a name holding a newline or backslash and marks the line with a backslash)."""
    if len(line) <= 66 or line.startswith("\\"):
        return None
    rel = line[66:]
    return (rel[2:] if rel.startswith("./") else rel), line[:64]
