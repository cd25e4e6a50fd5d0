"""``--backend ray``: connecting to Ray (``pipeline.compute.pool.RayPool`` runs the workers as actors).

Ray is optional (``pip install 'ray>=2.9'``). Without ``--address`` a local Ray instance is started with one
CPU per worker; with it the stage joins that cluster (``ray start --head`` on one machine, ``ray start
--address=...`` on the others). Nothing assumes a shared file system: the project's code travels as Ray's
``working_dir`` (the repository, less what .gitignore and ``_EXCLUDES`` name), V and M travel through the
object store, and episodes come back to this process, the only writer of the dataset. Every node needs the
packages of requirements.txt.

Results are those of the local backend: an episode depends only on (``--seed``, its id), and an
evaluation task only on its parameters and episode seeds, so where a task runs changes nothing. An actor
that dies, or a batch in which nothing finishes within the task timeout (a hung actor), is replaced by a
fresh actor and its unfinished work is done again.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

from pipeline.contract.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]  # the repository: pipeline/compute/ is two levels down
# Run outputs and anything large stay behind; .gitignore (which Ray also honours) already names data/ and results/.
_EXCLUDES = [".git/", ".venv/", "docs/", "bench/out/", "*.h5", "*.pt", "*.pkl", "*.gif", "*.png"]
_ENV_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER")
INSTALL = "pip install 'ray>=2.9'"


def start(address: str | None, workers: int):
    """Import Ray and connect to ``address`` (or start a local instance with ``workers`` CPUs); returns ray.
    A missing Ray, an unreachable cluster or a cluster smaller than ``workers`` is a UsageError."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed: {INSTALL} (or use --backend local)") from None
    if address:
        check_reachable(address)
        authenticate(address)
    if not ray.is_initialized():
        env_vars = {k: os.environ[k] for k in _ENV_VARS if k in os.environ}  # headless rendering, as here
        options = dict(runtime_env={"working_dir": str(ROOT), "excludes": _EXCLUDES, "env_vars": env_vars},
                       include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            if address:
                ray.init(address=address, **options)
            else:
                # Ray runs its workers at nice 15 by default: beside any other busy process (another stage, the
                # local backend's workers) its actors would wait minutes for the CPU. A local instance's actors
                # are this stage's workers, at the priority local workers have.
                ray.init(num_cpus=workers, _system_config={"worker_niceness": 0}, **options)
        except ConnectionError as e:
            raise UsageError(f"--address {address}: no Ray cluster answered ({e}); start one with "
                             "'ray start --head' or drop --address for a local one") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers > cpus:
        raise UsageError(f"--workers {workers} but the Ray cluster has {cpus} CPUs: pass --workers {cpus} or fewer")
    return ray


# What an HTTP/2 client sends first (RFC 9113, 3.4): the preface and an empty SETTINGS frame. Ray's GCS is a gRPC
# server, which speaks HTTP/2 and answers with a SETTINGS frame of its own (frame type 0x04, the 4th byte).
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_FRAME_HEADER, _SETTINGS = 9, 0x04


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address must accept a connection and answer as a Ray cluster does (gRPC) within ``timeout`` s
    each: ray.init would wait on anything else for minutes (a closed port, or another server answering)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # 'auto', 'ray://...': Ray resolves these itself
    start = "start one with 'ray start --head' on that machine, or drop --address for a local Ray instance"
    try:
        connection = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); {start}") from None
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
        connection.close()
        return  # a TLS cluster answers only a TLS handshake: ray.init's own
    with connection:
        reply = _first_bytes(connection, _HTTP2_HELLO, _FRAME_HEADER, timeout)
    if len(reply) >= _FRAME_HEADER and reply[3] == _SETTINGS:
        return
    if not reply:
        what = f"accepts connections but sent nothing back within {timeout:g} s"
    else:
        text = reply.decode("latin-1").strip().splitlines()[0] if reply.strip() else ""
        text = "".join(c if c.isprintable() else "?" for c in text)[:60]
        what = f"answered, but not as a Ray cluster does ({text!r})" if text else "answered, but not as a Ray cluster does"
    raise UsageError(f"--address {address}: another server {what}; pass the address of a Ray cluster's head (its GCS "
                     f"port, 6379 by default), or {start}")


def _first_bytes(connection: socket.socket, hello: bytes, wanted: int, timeout: float) -> bytes:
    """Send ``hello``; what comes back within ``timeout`` s, until ``wanted`` bytes or the server closes."""
    reply = b""
    connection.settimeout(timeout)
    try:
        connection.sendall(hello)
        while len(reply) < wanted:
            more = connection.recv(256)
            if not more:
                break
            reply += more
    except OSError:  # a timeout, or a reset: nothing (more) came back
        pass
    return reply


def _token_at_hand() -> bool:
    """Whether this process has a Ray token to send: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or the
    one ``ray start`` and local Ray instances keep in ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


@contextlib.contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def authenticate(address: str) -> None:
    """Make sure the cluster at ``address`` accepts this process, else one line saying what to set.

    ``ray start --head`` turns token authentication on once ~/.ray/auth_token exists (an earlier local Ray run
    leaves one behind), but a driver with RAY_AUTH_MODE unset sends no token and is turned away. So when the
    cluster turns this process away, a token is at hand and RAY_AUTH_MODE is unset, token mode is switched on
    (for this process and the workers it starts) and the cluster asked again. Token mode is not switched on for
    a cluster without authentication: its workers would send no token back to this process."""
    try:
        from ray._raylet import Config, GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray version's internals: ray.init reports what goes wrong
        return

    def accepted() -> bool:
        try:
            with _native_stderr_silenced():  # Ray's C++ client logs each refusal to the process's stderr
                GcsClient(address=address)
        except AuthenticationError:
            return False
        except Exception:  # anything else (a cluster still starting up): ray.init waits and reports it
            pass
        return True

    if accepted():
        return
    if "RAY_AUTH_MODE" not in os.environ and _token_at_hand():
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")  # Ray reads the mode once; read it again
        if accepted():
            return
    raise UsageError(f"--address {address}: the Ray cluster there requires an authentication token and refused "
                     "this process's: set RAY_AUTH_TOKEN to its token (`ray get-auth-token` on the head node prints "
                     "it; or RAY_AUTH_TOKEN_PATH to a file holding it) and RAY_AUTH_MODE=token, then re-run")


def stop() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
