"""The board-command layer: facts read on a board and Jetson commands run there through sudo.

Platform files and commands are found under the board's root, ``/`` on a real board. A
board whose inventory ``env`` sets ``PANTHEON_BOARD_ROOT`` (a stand-in root in tests) has
its files read under it and its commands run as ``$PANTHEON_BOARD_ROOT/usr/sbin/nvpmodel``
and ``$PANTHEON_BOARD_ROOT/usr/bin/jetson_clocks``; otherwise the plain names run. Either
way the command is the same: ``sudo -n nvpmodel -m 8`` (see :mod:`pantheon.platform.jetson`).

Power-mode changes always go through ``sudo -n`` on the host, never through a privileged
container; a user who cannot sudo without a password gets one line saying so and how to fix it.

Example::

    facts = read_facts(session)          # model, L4T, sudo, jtop, disk
    out = board_command(session, facts, "nvpmodel", ["-q"]).stdout
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from pantheon.deploy.ssh import Result, Session, q, qjoin
from pantheon.errors import BoardError
from pantheon.platform import jetson as pb

SETUP_STATE_DIR = "/var/lib/pantheon-setup"  # under the board root; root-owned, written via sudo


@dataclass
class BoardFacts:
    model: Optional[str] = None
    l4t: Optional[str] = None
    uid: Optional[int] = None
    user: str = ""
    sudo: str = "missing"  # ok | password | missing
    jtop: bool = False
    jtop_version: Optional[str] = None  # jetson-stats on the host (the service's version), if importable
    arch: str = ""
    disk_free_kb: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_jetson(self) -> bool:
        return self.l4t is not None

    @property
    def jetpack(self) -> Optional[str]:
        return pb.jetpack_for(self.l4t)

    def as_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "l4t": self.l4t, "jetpack": self.jetpack, "user": self.user,
                "sudo": self.sudo, "jtop": self.jtop, "jtop_version": self.jtop_version, "arch": self.arch,
                "disk_free_kb": self.disk_free_kb}


def _facts_script(root: str, remote_root: str) -> str:
    model = q(pb.board_path(pb.DEVICE_TREE_MODEL, root))
    release = q(pb.board_path(pb.NV_TEGRA_RELEASE, root))
    jtop = q(pb.board_path(pb.JTOP_SOCKET, root))
    dpkg = 'echo "DPKG $(dpkg-query --show nvidia-l4t-core 2>/dev/null)"' if root in ("", "/") else "true"
    return f"""echo "MODEL $(tr -d '\\000' < {model} 2>/dev/null)"
echo "RELEASE $(head -n 1 {release} 2>/dev/null)"
{dpkg}
echo "UID $(id -u)"
echo "USER $(id -un)"
if command -v sudo >/dev/null 2>&1; then
  if sudo -n true >/dev/null 2>&1; then echo "SUDO ok"; else echo "SUDO password"; fi
else echo "SUDO missing"; fi
if [ -S {jtop} ]; then echo "JTOP yes"; else echo "JTOP no"; fi
echo "JTOPV $(python3 -c 'import jtop; print(jtop.__version__)' 2>/dev/null)"
echo "ARCH $(uname -m)"
d={q(remote_root)}; while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname "$d") || break; done
echo "DF $(df -Pk "$d" | tail -n 1)"
"""


def parse_facts(text: str) -> BoardFacts:
    """The facts script's ``KEY value`` lines -> :class:`BoardFacts`."""
    f = BoardFacts()
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "MODEL":
            f.model = pb.parse_device_tree_model(value)
        elif key == "RELEASE":
            f.l4t = pb.parse_nv_tegra_release(value) or f.l4t
        elif key == "DPKG" and f.l4t is None:
            f.l4t = pb.l4t_from_dpkg(value)
        elif key == "UID" and value.isdigit():
            f.uid = int(value)
        elif key == "USER":
            f.user = value
        elif key == "SUDO":
            f.sudo = value
        elif key == "JTOP":
            f.jtop = value == "yes"
        elif key == "JTOPV":
            f.jtop_version = value or None
        elif key == "ARCH":
            f.arch = value
        elif key == "DF":
            parts = value.split()
            if len(parts) >= 4 and parts[3].isdigit():
                f.disk_free_kb = int(parts[3])
    return f


def read_facts(session: Session) -> BoardFacts:
    """Model, L4T release, sudo, jtop socket, architecture and free disk of the board (one ssh call)."""
    b = session.board
    res = session.run(_facts_script(b.board_root, b.remote_root), what="reading the board's facts")
    return parse_facts(res.stdout)


def require_jetson(session: Session, facts: BoardFacts, what: str) -> None:
    if not facts.is_jetson:
        raise BoardError(
            f"board {session.board.name} is not a Jetson (no {pb.board_path(pb.NV_TEGRA_RELEASE, session.board.board_root)}"
            f" and no nvidia-l4t-core package; model: {facts.model or 'unknown'}): {what} needs an NVIDIA Jetson with L4T"
        )


def sudo_prefix(session: Session, facts: BoardFacts) -> List[str]:
    """``["sudo", "-n"]``, ``[]`` for root without sudo, or a :class:`BoardError` saying what to fix."""
    b = session.board
    if facts.sudo == "ok":
        return ["sudo", "-n"]
    if facts.uid == 0:
        return []
    user = facts.user or b.user or "the ssh user"
    rule = (f"'{user} ALL=(root) NOPASSWD: /usr/sbin/nvpmodel, /usr/bin/jetson_clocks' in "
            f"/etc/sudoers.d/pantheon (visudo -f)")
    if facts.sudo == "missing":
        raise BoardError(f"board {b.name}: power modes need root, and sudo is not installed there "
                         f"(user {user}): install sudo and add {rule}, or connect as a user with sudo rights")
    raise BoardError(f"board {b.name}: power modes need root, and user {user} cannot sudo without a password "
                     f"(sudo -n true fails): add {rule}")


def board_command(
    session: Session,
    sudo: Sequence[str],
    name: str,
    args: Sequence[str],
    *,
    mutating: bool = False,
    check: bool = True,
) -> Result:
    """Run a Jetson command (``nvpmodel``, ``jetson_clocks``) through ``sudo`` on the board."""
    exe = pb.command_path(name, session.board.board_root)
    argv = [*sudo, exe, *args]
    return session.run(qjoin(argv) + " </dev/null", mutating=mutating, check=check,
                       what=f"{name} {' '.join(args)}".strip())


# --------------------------------------------------------------------------------------------
# Board presets (deploy/boards/*.yaml)
# --------------------------------------------------------------------------------------------


def presets_dir() -> Path:
    """The board presets: package data (``pantheon/deploy/data/boards``, a link to ``deploy/boards`` in a
    checkout), so an installed pantheon-deploy (pip, the desktop image) has them too."""
    from pantheon.deploy.images import data_dir

    return data_dir() / "boards"


def load_presets(directory: Optional[Path] = None) -> Dict[str, Dict[str, Any]]:
    """Every board preset by name (the file stem)."""
    d = directory or presets_dir()
    out: Dict[str, Dict[str, Any]] = {}
    if d.is_dir():
        for f in sorted(d.glob("*.yaml")):
            data = yaml.safe_load(f.read_text()) or {}
            if isinstance(data, dict):
                out[f.stem] = data
    return out


def preset_for(model: Optional[str], name: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The preset named ``name``, else the first whose ``models`` substrings match the board model."""
    presets = load_presets()
    if name:
        if name not in presets:
            raise BoardError(f"unknown board preset {name!r}; known: {', '.join(sorted(presets)) or 'none'}")
        return dict(presets[name], name=name)
    for key, p in presets.items():
        if model and any(str(m).lower() in model.lower() for m in p.get("models", [])):
            return dict(p, name=key)
    return None
