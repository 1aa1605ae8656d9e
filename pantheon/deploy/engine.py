"""The Docker engines pantheon-deploy talks to: the board's (over SSH) and the local one.

The board's engine is reached with the Docker SDK for Python through
``docker system dial-stdio`` run over our own :class:`~pantheon.deploy.ssh.Session`
(the same transport as ``docker -H ssh://user@board``), bridged to a private local
unix socket. We do not use docker-py's ``ssh://`` adapter because it runs a bare
``ssh`` without options: it could not carry our host-key policy, identity, known_hosts
or connection sharing.

Every SDK call is recorded as the equivalent ``docker`` command, e.g.
``docker -H ssh://nvidia@10.0.0.7 image inspect pantheon-jetson:latest``.

Example::

    with Session(board) as s, RemoteEngine(s) as eng:
        eng.client.images.list()
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from typing import Any, Dict, List, Optional

from pantheon.deploy.ssh import Session, last_line
from pantheon.errors import DockerError

# Reads of whole images or builds take long: the SDK's 60 s default would cut them.
LONG_TIMEOUT = 3600
FIX_NO_DOCKER = (
    "install Docker on the board (JetPack 5/6: sudo apt install nvidia-container, which brings docker "
    "and the NVIDIA runtime) and add the user to the docker group"
)
FIX_NO_NVIDIA = (
    "install nvidia-container-runtime (JetPack: sudo apt install nvidia-container; it registers the "
    "'nvidia' runtime with Docker) and restart docker; or pass --no-nvidia-runtime for a CPU trial"
)


def _import_docker() -> Any:
    try:
        import docker

        return docker
    except ImportError as exc:
        raise DockerError("the Docker SDK for Python is missing: pip install 'pantheon[deploy]'") from exc


class _DialStdioBridge:
    """A private unix socket; each connection to it runs ``docker system dial-stdio`` on the board."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dir = tempfile.mkdtemp(prefix="pantheon-engine-")
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "docker.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(32)
        self.procs: List[subprocess.Popen] = []
        self.errors: List[str] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True, name="pantheon-dial-stdio").start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        argv = self.session.argv(self.session.wrap("docker system dial-stdio"))
        # Own session: a Ctrl-C on the terminal must not kill the engine connection we need to stop
        # the container and collect its logs afterwards.
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                start_new_session=True)
        self.procs.append(proc)

        def upstream() -> None:
            try:
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    proc.stdin.write(data)  # type: ignore[union-attr]
            except OSError:
                pass
            finally:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass

        def errors() -> None:
            data = proc.stderr.read()  # type: ignore[union-attr]
            if data:
                self.errors.append(data.decode(errors="replace"))

        threading.Thread(target=upstream, daemon=True).start()
        threading.Thread(target=errors, daemon=True).start()
        try:
            while True:
                data = proc.stdout.read(1 << 16)  # type: ignore[union-attr]
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
            proc.wait()

    def close(self) -> None:
        self._stop = True
        try:
            self.server.close()
        except OSError:
            pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RemoteEngine:
    """The board's Docker engine through the SDK, with each call recorded as a docker command."""

    def __init__(self, session: Session, timeout: int = 120) -> None:
        self.session = session
        self.timeout = timeout
        self._bridge: Optional[_DialStdioBridge] = None
        self._client: Any = None
        self._long: Any = None
        self.info: Dict[str, Any] = {}
        self.version = ""  # the engine's version, from the probe that opens the client

    # The docker CLI equivalent of an SDK call, for --dry-run and commands.sh.
    def cli(self, *args: str) -> str:
        b = self.session.board
        host = f"ssh://{b.address}"
        return shlex.join(["docker", "-H", host, *args])

    def record(self, *args: str, mutating: bool = True, note: str = "") -> bool:
        return self.session.recorder.add(self.cli(*args), mutating=mutating, note=note)

    def probe(self) -> str:
        """Check that the board has docker and its engine answers; return the engine version."""
        res = self.session.run(
            "command -v docker >/dev/null 2>&1 || exit 127; docker version --format '{{.Server.Version}}'",
            check=False,
            what="docker version",
        )
        b = self.session.board
        if res.returncode == 127:
            raise DockerError(f"board {b.name} has no docker command: {FIX_NO_DOCKER}")
        if res.returncode != 0 or not res.stdout.strip():
            raise DockerError(
                f"the Docker engine on board {b.name} does not answer ({last_line(res.stderr) or 'no output'}): "
                f"start it (sudo systemctl start docker) and check that user {b.user or '(default)'} may use it"
            )
        return res.stdout.strip().splitlines()[-1]

    @property
    def client(self) -> Any:
        """A ``docker.DockerClient`` for the board's engine (probed on first use)."""
        if self._client is None:
            docker = _import_docker()
            self.session.connect()
            self.version = self.probe()
            self._bridge = _DialStdioBridge(self.session)
            try:
                self._client = docker.DockerClient(base_url=f"unix://{self._bridge.path}", timeout=self.timeout)
                self.info = self._client.info()
            except Exception as exc:
                detail = last_line("".join(self._bridge.errors)) or " ".join(str(exc).split())
                self.close()
                raise DockerError(f"cannot talk to the Docker engine on board {self.session.board.name}: {detail}") from exc
        return self._client

    def long_client(self) -> Any:
        """A second client with a long read timeout, for image loads and builds (closed with the engine)."""
        if self._long is None:
            docker = _import_docker()
            _ = self.client
            assert self._bridge is not None
            self._long = docker.DockerClient(base_url=f"unix://{self._bridge.path}", timeout=LONG_TIMEOUT)
        return self._long

    def runtimes(self) -> List[str]:
        _ = self.client
        return sorted((self.info.get("Runtimes") or {}).keys())

    def require_nvidia_runtime(self) -> None:
        if "nvidia" not in self.runtimes():
            raise DockerError(
                f"the Docker engine on board {self.session.board.name} has no 'nvidia' runtime "
                f"(it has: {', '.join(self.runtimes()) or 'none'}): {FIX_NO_NVIDIA}"
            )

    def architecture(self) -> str:
        _ = self.client
        return normalize_arch(str(self.info.get("Architecture", "")))

    def close(self) -> None:
        for client in (self._long, self._client):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing a half-open client must not hide the real error
                    pass
        self._client = self._long = None
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_client(timeout: int = 120) -> Any:
    """The local engine (``$DOCKER_HOST`` or the default socket)."""
    docker = _import_docker()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:
        raise DockerError(
            f"the local Docker engine does not answer ({exc}): start docker or set DOCKER_HOST"
        ) from exc


def normalize_arch(arch: str) -> str:
    """``x86_64``/``amd64`` -> ``amd64``; ``aarch64``/``arm64`` -> ``arm64``."""
    a = arch.lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv8": "arm64"}.get(a, a)
