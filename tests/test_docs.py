"""README.md and docs/: a short first page, links that resolve, and every command line checked against the
real CLI trees.

Commands are taken from fenced code blocks (``$ `` prompts, ``\\`` continuations, ``&&``/``|``/``;``
chains, ``VAR=x`` prefixes and ``# comments`` handled as a shell would) and from inline code spans
that start with ``pantheon``/``pantheon-deploy``; ``docker compose run --rm trainer|deploy ...``
counts as the image's entrypoint (``pantheon``/``pantheon-deploy``) with those arguments. Each is
parsed by typer/click (``_clitree``), nothing runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from _clitree import PROGRAMS, check_argv

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```\s*(\w*)")
_SHELL = {"bash", "sh", "shell", "console"}  # untagged blocks (synopses, output, trees): only `$ ` lines
_INLINE = re.compile(r"`((?:\.venv/bin/)?pantheon(?:-deploy)? [^`]+)`")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_COMPOSE = {"trainer": "pantheon", "trainer-cpu": "pantheon", "deploy": "pantheon-deploy"}


def _blocks(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, logical line) of the shell lines of fenced code blocks, continuations joined."""
    inside, shell, pending, start = False, False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if m:
            inside, pending = not inside, ""
            shell = inside and m.group(1) in _SHELL
            continue
        if not inside or not (shell or pending or line.lstrip().startswith("$ ")):
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def _commands(words: List[str]) -> Iterator[List[str]]:
    """Split a shell line's words at ``&&``, ``||``, ``;`` and ``|``; drop ``VAR=x`` prefixes."""
    cmd: List[str] = []
    for w in words + [";"]:
        if w in ("&&", "||", ";", "|", "&"):
            while cmd and _ENV.match(cmd[0]):
                cmd = cmd[1:]
            if cmd:
                yield cmd
            cmd = []
        else:
            cmd.append(w)


def _cli_argv(cmd: List[str]) -> List[str]:
    """``cmd`` as argv of pantheon/pantheon-deploy, or [] when it is another program."""
    prog = cmd[0].rsplit("/", 1)[-1] if cmd[0].startswith(".venv/bin/") else cmd[0]
    if prog in PROGRAMS:
        return [prog, *cmd[1:]]
    if cmd[:4] == ["docker", "compose", "run", "--rm"] and len(cmd) > 4 and cmd[4] in _COMPOSE:
        return [_COMPOSE[cmd[4]], *cmd[5:]] if len(cmd) > 5 else []
    return []


def documented_commands() -> List[Tuple[str, List[str]]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        where = page.relative_to(REPO).as_posix()
        for n, line in _blocks(text):
            line = re.sub(r"^\s*\$ ", "", line)
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not shell (YAML, tables, output): nothing to check
                continue
            for cmd in _commands(words):
                argv = _cli_argv(cmd)
                if argv:
                    out.append((f"{where}:{n}", argv))
        for n, line in enumerate(text.splitlines(), 1):
            if line.startswith("```"):
                continue
            for m in _INLINE.finditer(line):
                span = m.group(1)
                if "..." in span or "[" in span or "|" in span:  # a synopsis (`build [--target a|b]`)
                    continue
                for cmd in _commands(shlex.split(span, comments=True)):
                    argv = _cli_argv(cmd)
                    if argv:
                        out.append((f"{where}:{n}", ["inline", *argv]))
    return out


COMMANDS = documented_commands()


def test_many_commands_are_documented():
    assert len(COMMANDS) > 60
    assert {argv[0] for _, argv in COMMANDS if argv[0] != "inline"} == set(PROGRAMS)


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, argv):
    """A command line parses; in prose, `pantheon export` (a command's name) or `pantheon-deploy
    --data-root DIR` (an option of the program) only has to exist."""
    inline = argv[0] == "inline"
    argv = argv[1:] if inline else argv
    try:
        if inline and (len(argv) == 2 or argv[1].startswith("-")):
            check_argv(argv, name_only=True)
        else:
            check_argv(argv)
    except AssertionError as exc:
        pytest.fail(f"{where}: {exc}", pytrace=False)


def test_the_checker_catches_a_wrong_command(tmp_path):
    with pytest.raises(AssertionError, match="No such option"):
        check_argv(["pantheon-deploy", "push", "--bord", "x"])
    with pytest.raises(AssertionError, match="Missing option"):
        check_argv(["pantheon", "plan", "digits"])


def test_readme_first_page_is_short_and_names_the_journey():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    for needed in ("make demo", "make test", "docker compose up trainer", "pantheon-deploy push --board",
                   "pantheon-deploy run --board", "python3-venv", "docker` group", "source .venv/bin/activate"):
        assert needed in text, needed


_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _anchors(page: Path) -> set:
    """GitHub's heading anchors of a markdown page."""
    out, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for m in _LINK.finditer(page.read_text()):
            target, anchor = m.group(1), m.group(2)
            if re.match(r"^[a-z]+:", target):
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and path.suffix == ".md" and anchor[1:] not in _anchors(path):
                broken.append(f"{page.relative_to(REPO)}: {target}{anchor}")
    assert not broken, broken
