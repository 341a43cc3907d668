"""Warm trials: NNI's local trials without paying Python's imports in every trial process.

Measured under ``nnictl`` (``benchmarks/bench_nni_overhead.py``): most of what a local trial
costs beyond its stage is the new interpreter importing ``nni`` (scipy.stats, pandas through
json_tricks), ``torch`` and the stage's own heavy modules (``nni.nas`` pulls in Lightning) --
seconds per trial on a busy 2-core machine, paid once by ``facenas nni run-local`` but by every
trial under nnictl.

A *warm server* (one per experiment, forked by the facenas advisor from its own process -- which
has ``nni`` imported already -- on the advisor's machine) imports the rest once and forks a child
per trial:

1. NNI starts the trial command as usual (``python -m facenas.adapters.nni.trial``); its
   :func:`handoff` (before any heavy import) connects to the experiment's socket and passes its
   argv, environment, working directory and stdin/stdout/stderr (``SCM_RIGHTS``);
2. the server forks; the child takes the trial's file descriptors, working directory and
   environment, re-reads NNI's trial environment (NNI 3.0 reads it at import time:
   :func:`_rebind_nni`), reseeds the global RNGs and runs :func:`facenas.adapters.nni.trial.main`;
3. the trial process relays signals to the child and exits with the child's status, so NNI sees an
   ordinary trial (its stdout, metrics, exit code); a trial process that disappears gets its child
   killed.

Modules a child imported that the server had not are imported by the server after the child
ends, so later trials of the same stage start warm. With ``trialConcurrency`` > 1 each child
gets its share of the cores (:func:`trial_threads`: ``OMP_NUM_THREADS`` and
``torch.set_num_threads``), as NNI shares GPUs between trials, unless the trial's environment sets
``OMP_NUM_THREADS`` itself. Only NNI's ``local`` platform hands off (remote trials run on other
machines); anything unexpected (no server, a refused connection)
falls back to running the trial in its own process. The socket lives in a ``0700`` folder of
the user's and the server serves only its own uid (``SO_PEERCRED``). It exits when the advisor
process that started it ends.

The same server, in *python* mode, serves NNI's own Python processes: ``facenas nni create``
starts the manager with a generated interpreter (:func:`write_python_shim`) as its
``pythonInterpreter``, so the dispatcher (``python -m nni --exp_params ...``) and the local training
service's version probe (``python -m nni.tools.nni_manager_scripts.collect_version_info``) -- run
one after the other before the first trial, each a fresh interpreter importing ``nni`` (scipy.stats,
pandas: 1.5-3 s each here) -- are forked from a process that imported NNI's dependencies
(:data:`NNI_DEPENDENCIES`) and ``torch`` while the manager started. ``nni`` itself is never imported
in that server: NNI 3.0 sets itself up for a dispatcher, a trial or a plain program at import time
from the environment, so each child imports it fresh with its own environment (45 ms once its
dependencies are loaded) and runs the module as ``python -m`` does (:mod:`runpy`). Anything but
``-m MODULE`` (or no server) runs the real interpreter (``os.execv``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import runpy
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

#: set to "0" in the NNI manager's environment to run every trial in its own process
ENABLE_ENV = "FACENAS_NNI_WARM"
#: set to "0" for NNI's own Python processes to start as fresh interpreters (no python-mode server)
PYTHON_SERVER_ENV = "FACENAS_NNI_PYTHON_SERVER"
_MAX_MSG = 1 << 20
#: longest a trial waits for a server that is still importing (then it runs in its own process)
STARTUP_WAIT_S = 120.0
#: what a server imports before its first trial (every trial imports nni; the stages and the facenas
#: spaces a trial describes its architecture with import torch)
PRELOAD = ("torch", "nni")
#: set in a warm trial when the server limited its threads (:func:`trial_threads`); the trial records it
THREADS_ENV = "FACENAS_TRIAL_THREADS"
#: what ``import nni`` (3.0) and its dispatcher import besides nni's own modules (measured with
#: ``python -X importtime``: scipy.stats and pandas, through json_tricks, are most of it); a python-mode
#: server imports them, never ``nni`` (see the module docstring), then ``torch`` for the trials
NNI_DEPENDENCIES = ("numpy", "scipy.stats", "pandas", "json_tricks", "yaml", "typeguard", "colorama", "schema",
                    "requests", "psutil", "filelock", "cloudpickle", "dateutil", "simplejson", "typing_extensions",
                    "websockets", "websockets.frames", "websockets.http11", "websockets.client", "sqlite3")
PYTHON_PRELOAD = (*NNI_DEPENDENCIES, "torch")
#: longest a python-mode server waits for the NNI manager it serves to be named (then it exits)
UNWATCHED_S = 300.0


def socket_path(experiment_id: str, kind: str = "sock") -> Path:
    """The warm server's socket for ``experiment_id`` (short: AF_UNIX paths are limited to 107 bytes).

    ``kind="python"``: the socket of the python-mode server serving NNI's own processes.
    """
    return Path(tempfile.gettempdir()) / f"facenas-warm-{os.getuid()}" / f"{experiment_id}.{kind}"


def _starting_marker(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".starting")


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_while_starting(path: Path) -> None:
    """Wait while the server of ``path`` imports (its marker exists), at most :data:`STARTUP_WAIT_S`.

    A stale marker (older than that) or one naming a process that ended is not waited for.
    """
    starting = _starting_marker(path)
    try:
        deadline = starting.stat().st_mtime + STARTUP_WAIT_S
    except OSError:
        return
    pid = None
    while not path.exists() and time.time() < deadline:
        if pid is None:
            try:
                text = starting.read_text().strip()
            except OSError:
                return  # the marker is gone: the server is up (or gave up)
            pid = int(text) if text.isdigit() else 0
        if pid and not _pid_alive(pid):
            return
        time.sleep(0.02)  # the server is importing what this process would import too: wait for it


def enabled(env: dict[str, str] | os._Environ = os.environ) -> bool:
    return env.get(ENABLE_ENV, "1") not in ("0", "false", "no", "")


def python_server_enabled(env: dict[str, str] | os._Environ = os.environ) -> bool:
    return enabled(env) and env.get(PYTHON_SERVER_ENV, "1") not in ("0", "false", "no", "")


# -- the trial process (client) -----------------------------------------------------------------
def handoff(argv: Sequence[str]) -> int | None:
    """Run this trial in the experiment's warm server; its exit status, or None to run it here."""
    exp_id = os.environ.get("NNI_EXP_ID")
    if os.environ.get("NNI_PLATFORM") != "local" or not exp_id or not enabled():
        return None
    return _delegate(socket_path(exp_id), argv)


def python_client(args: Sequence[str], path: str | os.PathLike, python: str) -> int:
    """NNI's ``pythonInterpreter`` for an experiment (:func:`write_python_shim`): ``python ARGS``.

    ``-m MODULE ...`` runs forked from the python-mode server at ``path`` when there is one; anything
    else, or no server, replaces this process with the real interpreter ``python``.
    """
    args = list(args)
    if len(args) >= 2 and args[0] == "-m" and not args[1].startswith("-"):
        code = _delegate(Path(path), args)
        if code is not None:
            return code
    os.execv(python, [python, *args])
    return 127  # not reached


def write_python_shim(path: Path, server_socket: Path, python: str | None = None) -> Path:
    """Write the executable NNI runs as its Python for one experiment (see :func:`python_client`)."""
    python = python or sys.executable
    if any(c.isspace() for c in python) or len(python) > 120:
        raise OSError(f"{python}: a path with spaces or over 120 characters cannot be a script's interpreter line")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(
        f"#!{python}\n"
        "# NNI's python for one facenas experiment: `-m MODULE` runs forked from a server that imported NNI's\n"
        "# dependencies (facenas.adapters.nni.warm); anything else runs the interpreter above.\n"
        "import sys\n"
        "from facenas.adapters.nni.warm import python_client\n"
        f"sys.exit(python_client(sys.argv[1:], {str(server_socket)!r}, {python!r}))\n",
        encoding="utf-8")
    os.chmod(path, 0o700)
    return path


def _delegate(path: Path, argv: Sequence[str]) -> int | None:
    """Run ``argv`` in the server at ``path`` with this process's stdio; its exit status, or None."""
    _wait_while_starting(path)
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        request = json.dumps({"argv": list(argv), "env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        socket.send_fds(sock, [request], [0, 1, 2])
        reader = sock.makefile("rb")
        first = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError) as exc:
        log.debug("warm server at %s not usable (%s): running in this process", path, exc)
        sock.close()
        return None
    pid = first.get("pid")
    if not isinstance(pid, int):
        sock.close()
        return None

    def relay(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, relay)
    try:
        line = reader.readline()
    except OSError:
        line = b""
    sock.close()
    if not line:  # the server went away: make sure the child does not outlive us
        relay(signal.SIGKILL, None)
        print("facenas trial: the warm trial server ended before the trial did", file=sys.stderr)
        return 1
    return int(json.loads(line).get("exit", 1))


# -- the server -----------------------------------------------------------------------------------
def _rebind_nni() -> None:
    """Make an already imported ``nni`` (3.0) read this process's trial environment again."""
    import nni.runtime.env_vars as env_vars
    import nni.runtime.log as nni_log
    import nni.runtime.trial_command_channel as channel
    import nni.trial as nni_trial

    env_vars.trial_env_vars = env_vars._load_env_vars(env_vars._trial_env_var_names)
    t = env_vars.trial_env_vars
    nni_trial.trial_env_vars = t
    nni_trial._params = None
    nni_trial._experiment_id = t.NNI_EXP_ID or "STANDALONE"
    nni_trial._trial_id = t.NNI_TRIAL_JOB_ID or "STANDALONE"
    nni_trial._sequence_id = int(t.NNI_TRIAL_SEQ_ID) if t.NNI_TRIAL_SEQ_ID is not None else 0
    channel._channel = None
    root = logging.getLogger()
    for tag, handler in list(nni_log.handlers.items()):  # the server's own (standalone) NNI log handler
        root.removeHandler(handler)
        del nni_log.handlers[tag]
    nni_log.trial_env_vars = t
    nni_log._init_logger()


def _reseed() -> None:
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def trial_threads(concurrency: int, cpus: int | None = None) -> int | None:
    """Threads per trial when ``concurrency`` trials share this machine's ``cpus``: an equal share each.

    Every trial's PyTorch would otherwise start a thread per core: ``trialConcurrency`` of them
    then oversubscribe the cores, and OpenMP threads waiting on each other at every parallel region
    made stages several times slower under nnictl than the same stages one after another in
    ``facenas nni run-local`` (measured: ``benchmarks/bench_nni_overhead.py``). None: one trial at a time.
    """
    if concurrency <= 1:
        return None
    cpus = cpus or len(os.sched_getaffinity(0))
    return max(1, cpus // concurrency)


def _limit_threads(threads: int | None, env: dict[str, str]) -> None:
    """In a child: at most ``threads`` compute threads, unless the trial's own environment sets them."""
    if not threads or env.get("OMP_NUM_THREADS"):
        return
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # for what imports torch later
    os.environ[THREADS_ENV] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _run_trial(request: dict[str, Any]) -> int:
    """In a trial-mode child: run the facenas trial of ``request`` (its environment already set)."""
    sys.argv = list(request["argv"])
    if "nni" in sys.modules:
        _rebind_nni()
    from facenas.adapters.nni import trial

    return trial.main(sys.argv[1:], warm=False)


def _run_python(request: dict[str, Any]) -> int:
    """In a python-mode child: ``python -m MODULE ARGS`` as the interpreter would run it."""
    args = list(request["argv"])
    module = args[1]
    sys.argv = [module, *args[2:]]  # runpy puts the module's file first, as `python -m` does
    if sys.path:
        sys.path[0] = os.getcwd()  # `python -m`: the working directory first
    if os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=True)
    root = logging.getLogger()  # a fresh interpreter has no logging set up: the server's is not the child's
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _child(request: dict[str, Any], fds: list[int], report: Path | None, close: list[int], threads: int | None = None,
           mode: str = "trial") -> None:
    """In the forked child: become the trial (or the ``python -m`` process) and run it; never returns."""
    code = 1
    try:
        for fd in close:
            try:
                os.close(fd)
            except OSError:
                pass
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _reseed()
        if mode == "python":
            code = _run_python(request)
        else:
            os.environ["FACENAS_NNI_WARM_SERVER"] = str(os.getppid())
            _limit_threads(threads, request["env"])
            code = _run_trial(request)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must report and exit whatever happened
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            # a file, not a pipe: the list outgrows a pipe's buffer and nobody reads it before we exit
            if report is not None:
                report.write_text(json.dumps(sorted(sys.modules)), encoding="utf-8")
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


class WarmServer:
    """Forks one child per trial from a process that has the heavy modules imported."""

    def __init__(self, path: Path, parent_pid: int | None, preload: Sequence[str] = (), stages: Sequence[str] = (),
                 threads: int | None = None, mode: str = "trial"):
        """``mode``: "trial" (children run the facenas trial) or "python" (children run ``python -m``
        requests; the server then lives until the process named by a ``{"watch": pid}`` request
        ends, or :data:`UNWATCHED_S` when none is named)."""
        if mode not in ("trial", "python"):
            raise ValueError(f"warm server mode {mode!r}: expected 'trial' or 'python'")
        self.path = path
        self.parent_pid = parent_pid
        self.threads = threads
        self.mode = mode
        self.watch_pid: int | None = None
        self.started = time.time()
        self.children: dict[int, dict[str, Any]] = {}  # pid -> {"conn", "report"}
        self.learned: set[str] = set()
        self.reports = 0
        self.sel = selectors.DefaultSelector()
        self.owned_files: list[Path] = []  # removed with the socket (a python-mode server's shim)
        for name in preload:
            self._import(name)
        if stages:
            from facenas.nas.stages import STAGES

            for stage in stages:
                try:
                    STAGES.get(stage)
                except Exception as exc:  # noqa: BLE001 - the trial will report it
                    log.warning("stage %s not preloaded: %s", stage, exc)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        # a child's end wakes the loop at once (SIGCHLD through a pipe), so its trial process learns
        # its exit status without waiting for the next poll
        self._wakeup = os.pipe()
        for fd in self._wakeup:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup[1])
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self._wakeup[0], selectors.EVENT_READ, "child")
        if mode == "python":  # found by python_server_pid (what `nnictl stop` leaves is looked for there)
            self.owned_files.append(path.with_suffix(".pid"))
            path.with_suffix(".pid").write_text(str(os.getpid()), encoding="utf-8")
        _starting_marker(path).unlink(missing_ok=True)

    @staticmethod
    def _import(name: str) -> None:
        import importlib
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - an optional warm-up
            log.debug("preload of %s failed: %s", name, exc)

    def _parent_alive(self) -> bool:
        if self.mode == "python" and self.watch_pid is None:
            try:  # the process whose end ends this server (:func:`watch`)
                self.watch_pid = int(_watch_file(self.path).read_text(encoding="utf-8"))
                log.info("serving until process %d ends", self.watch_pid)
            except (OSError, ValueError):
                pass
        if self.watch_pid is not None:
            return _pid_alive(self.watch_pid)
        if self.mode == "python" and self.parent_pid is None:
            return time.time() < self.started + UNWATCHED_S
        return self.parent_pid is None or os.getppid() == self.parent_pid

    def _accept(self) -> None:
        conn, _ = self.sock.accept()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():  # a forked child could not use CUDA
            log.warning("CUDA was initialised in the warm server: trials run in their own processes from now on")
            conn.close()
            return
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            conn.close()
            return
        conn.settimeout(10)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MSG, 3)
            while not msg.endswith(b"\n"):
                more = conn.recv(_MAX_MSG)
                if not more:
                    raise ValueError("truncated request")
                msg += more
            request = json.loads(msg)
            if self.mode == "python" and not (len(request.get("argv") or ()) >= 2 and request["argv"][0] == "-m"):
                raise ValueError(f"expected `-m MODULE ...`, got {request.get('argv')!r}")
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
        except (OSError, ValueError) as exc:
            log.warning("bad request: %s", exc)
            conn.close()
            return
        self.reports += 1
        # a python-mode server keeps to its preload: what its children import (nni) must stay out of it
        report = self.path.parent / f"{self.path.stem}.{os.getpid()}.{self.reports}.modules" if self.mode == "trial" else None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            others = [self.sock.fileno(), conn.fileno(), *self._wakeup] + [c["conn"].fileno() for c in self.children.values()]
            _child(request, fds, report, others, self.threads, self.mode)
        if self.mode == "python":
            log.info("child %d runs %s, forked at unix %.3f", pid, " ".join(request["argv"][:2]), time.time())
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        self.children[pid] = {"conn": conn, "report": report, "started": time.time()}
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _reap(self) -> None:
        now = time.time()
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 1 << 8
            child = self.children[pid]
            if not done:
                if child.get("kill_at") and now > child["kill_at"]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                continue
            del self.children[pid]
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            if not child.get("kill_at"):
                self.sel.unregister(child["conn"])
                try:
                    child["conn"].sendall(json.dumps({"exit": code}).encode() + b"\n")
                except OSError:
                    pass
            child["conn"].close()
            if child["report"] is None:
                continue
            try:
                self.learned |= set(json.loads(child["report"].read_text(encoding="utf-8") or "[]")) - set(sys.modules)
            except (OSError, ValueError):
                pass
            child["report"].unlink(missing_ok=True)

    def _client_gone(self, pid: int) -> None:
        """The trial process's connection became readable: it ended (NNI killed it); end its child."""
        child = self.children.get(pid)
        if child is None or child.get("kill_at"):
            return
        try:
            data = child["conn"].recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data:
            return
        log.warning("the trial process of child %d went away: ending the child", pid)
        self.sel.unregister(child["conn"])
        child["kill_at"] = time.time() + 5
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def serve(self) -> None:
        log.info("warm %s server on %s (pid %d), ready at unix %.3f", self.mode, self.path, os.getpid(), time.time())
        try:
            while self._parent_alive():
                for key, _ in self.sel.select(timeout=0.2):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "child":
                        try:
                            while os.read(self._wakeup[0], 512):
                                pass
                        except BlockingIOError:
                            pass
                    else:
                        self._client_gone(key.data)
                self._reap()
                if not self.children and self.learned:
                    for name in sorted(self.learned, key=lambda n: n.count(".")):
                        if name not in sys.modules and name != "__main__" and not name.startswith("facenas.adapters.nni.warm"):
                            self._import(name)
                    self.learned.clear()
        finally:
            self.close()

    def close(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for leftover in (self.path, _starting_marker(self.path), _watch_file(self.path), *self.owned_files):
            leftover.unlink(missing_ok=True)
        self.sock.close()


class _Forked:
    """The handle of a warm server forked from the calling process (what :func:`start` returns then)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status) if done else None

    def terminate(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        import threading

        def reap() -> None:  # no zombie left in the advisor's process
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass

        threading.Thread(target=reap, daemon=True).start()


def _as_trial_side_nni() -> None:
    """Turn an ``nni`` imported in NNI's dispatcher mode into the trial API a forked server's children use.

    NNI 3.0 decides at import time, from ``SDK_PROCESS``: in the dispatcher ``nni`` has no trial
    functions (``get_next_parameter``, ``report_final_result`` ...) and its logging and
    ``dispatcher_env_vars`` say "dispatcher". With ``SDK_PROCESS`` gone from the environment this
    re-reads those variables and adds the trial API, as a fresh ``import nni`` in a trial does.
    """
    import nni
    import nni.runtime.env_vars as env_vars
    import nni.runtime.log as nni_log
    import nni.trial as nni_trial
    from nni.common.nas_utils import training_update

    env_vars.dispatcher_env_vars = env_vars._load_env_vars(env_vars._dispatcher_env_var_names)
    nni_log.dispatcher_env_vars = env_vars.dispatcher_env_vars
    nni.dispatcher_env_vars = env_vars.dispatcher_env_vars
    for name in getattr(nni_trial, "__all__", [n for n in vars(nni_trial) if not n.startswith("_")]):
        setattr(nni, name, getattr(nni_trial, name))
    nni.training_update = training_update
    root = logging.getLogger()
    for tag, handler in list(nni_log.handlers.items()):  # the dispatcher's log file is not ours
        root.removeHandler(handler)
        del nni_log.handlers[tag]


def _serve_forked(path: Path, parent_pid: int, stages: Sequence[str], log_file: Path, threads: int | None) -> None:
    """In the forked child of :func:`start`: become the warm server; never returns."""
    def prepare() -> None:
        for key in ("SDK_PROCESS", "NNI_TUNER_COMMAND_CHANNEL"):
            os.environ.pop(key, None)
        if "nni" in sys.modules:
            _as_trial_side_nni()

    def server() -> WarmServer:
        return WarmServer(path, parent_pid, PRELOAD, stages, threads)

    _become_server(path, log_file, prepare, server, f"forked from the advisor (pid {parent_pid}): nni imported already")


def start(experiment_id: str, stages: Sequence[str], log_file: Path, fork: bool = True,
          threads: int | None = None) -> Any | None:
    """Start the warm server of ``experiment_id`` (from the advisor); its handle, or None if disabled.

    ``fork``: fork it from this process, which has ``nni`` imported already (the advisor's, before
    it opens its channel to the NNI manager: no other thread runs yet), instead of starting a new
    interpreter that imports it again -- seconds of CPU, at the very time NNI's manager starts its
    training service, on the path to the first trial. The handle has ``poll()`` and ``terminate()``.
    ``threads``: each trial's share of the cores (:func:`trial_threads`), None to leave them be.
    """
    import subprocess
    import threading

    if not enabled():
        return None
    path = socket_path(experiment_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _starting_marker(path).touch()  # trials that start meanwhile wait for the server instead of importing alongside it
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if fork and threading.active_count() == 1:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _serve_forked(path, parent, list(stages), log_file, threads)
        _mark_starting(path, pid)
        return _Forked(pid)
    cmd = [sys.executable, "-m", "facenas.adapters.nni.warm", "--socket", str(path), "--parent", str(os.getpid()),
           "--stages", ",".join(stages)] \
        + (["--trial-threads", str(threads)] if threads else [])
    env = {k: v for k, v in os.environ.items() if k not in ("SDK_PROCESS", "NNI_TUNER_COMMAND_CHANNEL")}
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, close_fds=True)


def _mark_starting(path: Path, pid: int) -> None:
    """Name the starting server's process in its marker (clients stop waiting if it ends)."""
    try:
        marker = _starting_marker(path)
        if marker.exists():
            marker.write_text(str(pid))
    except OSError:
        pass


def start_python_server(experiment_id: str, env: dict[str, str], log_file: Path) -> tuple[Any, Path] | None:
    """Start the python-mode server of ``experiment_id`` (from ``facenas nni create``, before NNI starts).

    A new interpreter (not a fork of the caller, which may be any program) in its own session, so it
    outlives ``facenas nni create``; it imports :data:`PYTHON_PRELOAD` while the caller imports ``nni``
    and starts the manager, and ends when the process named by :func:`watch` ends. Returns its
    ``Popen`` and the interpreter NNI is to run (:func:`write_python_shim`); None when warm trials
    are disabled (``$FACENAS_NNI_WARM=0``) or the server is (``$FACENAS_NNI_PYTHON_SERVER=0``).
    """
    import subprocess

    if not python_server_enabled(env):
        return None
    path, shim = _python_server_files(experiment_id, log_file)
    cmd = [sys.executable, "-m", "facenas.adapters.nni.warm", "--mode", "python", "--socket", str(path),
           "--experiment-id", experiment_id, "--preload", ",".join(PYTHON_PRELOAD), "--owned", str(shim)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=dict(env), close_fds=True,
                                start_new_session=True)
    _mark_starting(path, proc.pid)
    return proc, shim


def _python_server_files(experiment_id: str, log_file: Path) -> tuple[Path, Path]:
    """The python server's socket path and the interpreter shim NNI runs (written), marked as starting."""
    path = socket_path(experiment_id, "python")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shim = write_python_shim(path.with_suffix(".py"), path)
    _starting_marker(path).touch()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return path, shim


def fork_python_server(experiment_id: str, log_file: Path) -> tuple[Any, Path] | None:
    """Import :data:`PYTHON_PRELOAD` here, then fork the python-mode server of ``experiment_id`` from this process.

    For ``facenas nni create``: it imports ``torch`` (the search spaces) and NNI's dependencies
    itself anyway, so the server costs no second import. Only from a process that has not imported
    ``nni`` (the server must not have it, see the module docstring) and runs no other thread; None
    otherwise (then :func:`start_python_server`) or when warm trials are disabled. The server runs
    in its own session with none of this process's pipes or sockets, so it outlives it unnoticed.
    """
    import threading

    if not python_server_enabled() or "nni" in sys.modules or threading.active_count() != 1:
        return None
    path, shim = _python_server_files(experiment_id, log_file)
    started = time.time()
    for name in PYTHON_PRELOAD:
        WarmServer._import(name)
    log.debug("imported %d modules for NNI's processes in %.2f s", len(PYTHON_PRELOAD), time.time() - started)
    if "nni" in sys.modules or threading.active_count() != 1:  # a preloaded module brought them: no fork
        _starting_marker(path).unlink(missing_ok=True)
        shim.unlink(missing_ok=True)
        return None
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        _serve_python_forked(path, log_file, shim)
    _mark_starting(path, pid)
    return _Forked(pid), shim


def _serve_python_forked(path: Path, log_file: Path, shim: Path) -> None:
    """In the child of :func:`fork_python_server`: become the python-mode server; never returns."""
    def prepare() -> None:
        os.setsid()
        for name in os.listdir("/proc/self/fd"):  # the caller's pipes and sockets: whoever reads them must see EOF
            try:
                if int(name) > 2 and os.readlink(f"/proc/self/fd/{name}").startswith(("pipe:", "socket:")):
                    os.close(int(name))
            except (OSError, ValueError):
                pass

    def server() -> WarmServer:
        srv = WarmServer(path, None, mode="python")
        srv.owned_files.append(shim)
        return srv

    _become_server(path, log_file, prepare, server,
                   f"forked from facenas nni create (pid {os.getppid()}) with NNI's dependencies imported")


def _become_server(path: Path, log_file: Path, prepare: Callable[[], None], make: Callable[[], "WarmServer"],
                   message: str) -> None:
    """In a forked child: stdin from /dev/null, stdout/stderr to ``log_file``, ``prepare()``, SIGTERM ends,
    this process's own logging, then serve ``make()`` until it ends; never returns into the caller's code."""
    code = 0
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
        out = os.open(str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        prepare()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        from facenas.utils.log import setup_logging

        setup_logging(0)
        log.info("%s", message)
        try:
            server = make()
        finally:
            _starting_marker(path).unlink(missing_ok=True)
        server.serve()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - the server must not return into the caller's code
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def remove_python_server_files(experiment_id: str) -> None:
    """Remove what a python-mode server of ``experiment_id`` leaves when it is killed before it serves."""
    path = socket_path(experiment_id, "python")
    for leftover in (path, _starting_marker(path), _watch_file(path), path.with_suffix(".pid"), path.with_suffix(".py")):
        leftover.unlink(missing_ok=True)


def _watch_file(path: Path) -> Path:
    return path.with_suffix(".manager")


def python_server_pid(experiment_id: str) -> int | None:
    """The running python-mode server of ``experiment_id`` (its processes descend from it), if any."""
    try:
        pid = int(socket_path(experiment_id, "python").with_suffix(".pid").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def watch(experiment_id: str, pid: int) -> None:
    """Tell the python-mode server of ``experiment_id`` to end when process ``pid`` (the NNI manager) ends.

    A file next to its socket, read by the server between requests: the caller (``facenas nni create``)
    does not wait for a server that may still be importing.
    """
    path = _watch_file(socket_path(experiment_id, "python"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(int(pid)), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    from facenas.utils.log import setup_logging

    p = argparse.ArgumentParser(prog="python -m facenas.adapters.nni.warm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--parent", type=int, help="exit when this process ends")
    p.add_argument("--stages", default="", help="stages to import at start (comma-separated)")
    p.add_argument("--preload", default=",".join(PRELOAD), help="modules to import at start (comma-separated)")
    p.add_argument("--trial-threads", type=int, default=None, help="compute threads per trial (default: PyTorch's)")
    p.add_argument("--mode", choices=("trial", "python"), default="trial",
                   help="trial: children run facenas trials; python: children run `python -m` requests (NNI's processes)")
    p.add_argument("--experiment-id", help="the experiment served (names the process for `nnictl stop` checks)")
    p.add_argument("--owned", action="append", default=[], help="a file removed when the server ends")
    args = p.parse_args(argv)
    setup_logging(0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.time()
    try:
        server = WarmServer(Path(args.socket), args.parent, [m for m in args.preload.split(",") if m],
                            [s for s in args.stages.split(",") if s], args.trial_threads, mode=args.mode)
        server.owned_files += [Path(f) for f in args.owned]
    finally:
        _starting_marker(Path(args.socket)).unlink(missing_ok=True)
    log.info("imported %s in %.2f s", args.preload, time.time() - started)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
