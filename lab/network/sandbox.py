"""Run isolation: every lab run lives in its own PID, network and mount namespaces.

`ensure_sandbox()` re-executes the current command under
`unshare --net --pid --mount --fork --mount-proc --kill-child`. Inside, the run's Python is
PID 1 of a fresh PID namespace and Mininet's "root namespace" is a fresh, empty netns: when
the run ends, however it ends (even `kill -9`), the kernel kills every process of the run
and frees every namespace, veth and iptables rule with them. The real root namespace's
links, rules and sysctls are never touched.

The one thing that can outlive a run is the sandbox itself when only its parent is killed
(the `unshare` process keeps the run going). So the parent writes a run-state file in
/run/ftlab naming the sandbox's pid, its start time and command; `ftlab clean` stops only
the processes such files name, and only while pid and start time still match.

`call_in_sandbox(file, function, *args)` runs one function of a Python file in a fresh
sandbox and returns its JSON result: network tests use it so that the pytest process never
touches a namespace, and a crashed test leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import InputError, LabError, NotRoot, read_input

#: Set (to the sandbox's state-file name) in the environment of everything inside a sandbox.
ENV_MARKER = "FTLAB_SANDBOX"
STATE_DIR = Path(os.environ.get("FTLAB_STATE_DIR", "/run/ftlab"))
UNSHARE = ["unshare", "--net", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child"]
RESULT_PREFIX = "FTLAB-RESULT "
TMP_PREFIX = "ftlab-sandbox-"
#: How long a sandbox gets to tear down after Ctrl-C before it is killed.
INTERRUPT_GRACE = 10.0


def in_sandbox() -> bool:
    """Is this process inside a lab sandbox (started by run_sandboxed)?"""
    return bool(os.environ.get(ENV_MARKER))


def require_root(what: str = "the lab") -> None:
    if os.geteuid() != 0:
        raise NotRoot(f"{what} needs root (it builds network namespaces and iptables rules): run it as root")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat);
    None if there is no such process or it is a zombie (dead, only waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


# -- run-state files --------------------------------------------------------------------------

@dataclass
class RunState:
    path: Path
    pid: int              # the `unshare` process (killing it kills the whole sandbox); 0 = not yet
    start: int            # its start time, so a recycled pid is never killed
    owner: int            # the ftlab process that started it
    owner_start: int
    argv: list[str]
    created: float
    tmpdir: str = ""      # the run's TMPDIR: its throw-away files, removed with the run

    @classmethod
    def read(cls, path: Path) -> RunState:
        """The state in `path`; ValueError when it is not a state file this module wrote."""
        data = json.loads(read_input(path, "run-state file", 64 * 1024))
        ints = ("pid", "start", "owner", "owner_start")
        if not isinstance(data, dict) or not all(type(data.get(k)) is int for k in ints) \
                or not isinstance(data.get("argv"), list) or not all(isinstance(a, str) for a in data["argv"]) \
                or not isinstance(data.get("created"), int | float) or not isinstance(data.get("tmpdir", ""), str):
            raise ValueError("not a run-state file of ftlab")
        return cls(path, data["pid"], data["start"], data["owner"], data["owner_start"],
                   data["argv"], data["created"], data.get("tmpdir", ""))

    def remove(self) -> None:
        """Remove the state file and the run's TMPDIR: only the folder this module made for this
        state file (named after it), so a state file cannot make clean delete any other."""
        tmp = Path(self.tmpdir) if self.tmpdir else None
        if tmp and tmp.name == TMP_PREFIX + self.path.stem and tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        self.path.unlink(missing_ok=True)

    def write(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fields = dataclasses.asdict(self)
        del fields["path"]
        tmp.write_text(json.dumps(fields))
        tmp.replace(self.path)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start

    def is_sandbox(self) -> bool:
        """Is the pid still this run's sandbox: the same start time, and the command line of the
        `unshare` that run_sandboxed() started for this argv. Only then may it be signalled: a pid
        that a state file names is never trusted by itself (nor any process by its name)."""
        if not self.alive():
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return cmdline.split(b"\0")[:-1] == [a.encode() for a in UNSHARE + self.argv]

    def owner_alive(self) -> bool:
        return start_time(self.owner) == self.owner_start


def run_sandboxed(argv: list[str], *, capture: bool = False, timeout: float | None = None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run argv in a fresh sandbox, with a run-state file for as long as it runs."""
    require_root()
    name = f"run-{os.getpid()}-{time.monotonic_ns()}"
    # Everything the run puts in a temp dir goes into its own TMPDIR, removed with the run
    # (also by `ftlab clean` after a kill -9). The state file names it before it exists, so no
    # moment leaves a folder that no state file names; pid 0 = the sandbox is not started yet.
    tmpdir = str(Path(tempfile.gettempdir()) / f"{TMP_PREFIX}{name}")
    state = RunState(STATE_DIR / f"{name}.json", 0, 0, os.getpid(), start_time(os.getpid()) or 0,
                     argv, time.time(), tmpdir)
    state.write()
    try:
        os.mkdir(tmpdir)
        os.chmod(tmpdir, 0o1777)   # like /tmp: servers that drop privileges can still use it
        env = dict(os.environ if env is None else env, **{ENV_MARKER: name, "TMPDIR": tmpdir})
        out = subprocess.PIPE if capture else None
        proc = subprocess.Popen(UNSHARE + argv, env=env, stdout=out, stderr=out, text=True)
    except BaseException as exc:
        state.remove()
        if isinstance(exc, FileNotFoundError) and exc.filename == UNSHARE[0]:
            raise LabError("unshare (util-linux) not found: it is needed to isolate each run") from exc
        raise
    state.pid, state.start = proc.pid, start_time(proc.pid) or 0
    state.write()
    previous = sigterm_as_exit()
    try:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except KeyboardInterrupt:
            # The whole foreground group got SIGINT: the run inside tears down by itself.
            stdout, stderr = _wait_or_kill(proc, INTERRUPT_GRACE)
            raise
        except subprocess.TimeoutExpired:
            stdout, stderr = _wait_or_kill(proc, 0)
            raise LabError(f"sandboxed run timed out after {timeout} s: {' '.join(argv)}\n{stderr or ''}") \
                from None
    finally:
        if proc.poll() is None:
            _wait_or_kill(proc, 0)
        state.remove()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def sigterm_as_exit():
    """While a sandbox runs, SIGTERM ends this process through `finally` (which stops the
    sandbox) instead of leaving the sandbox orphaned. Returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def stop_sandboxes_of(owner: int) -> list[int]:
    """SIGKILL the live sandboxes that process `owner` started (as their state files say);
    their pids. Each one's run_sandboxed() call then returns and removes its state file."""
    stopped = []
    for path in sorted(STATE_DIR.glob("run-*.json")) if STATE_DIR.is_dir() else []:
        try:
            state = RunState.read(path)
        except (OSError, ValueError, InputError):
            continue
        if state.owner == owner and state.is_sandbox():
            os.kill(state.pid, signal.SIGKILL)
            stopped.append(state.pid)
    return stopped


def _wait_or_kill(proc: subprocess.Popen, grace: float) -> tuple[Any, Any]:
    if grace:
        try:
            return proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    inner = _children(proc.pid)
    proc.kill()   # --kill-child: the sandbox's PID 1 dies, and the kernel reaps the rest
    result = proc.communicate()
    # Return only once the sandbox's PID 1 (and so everything in it) is gone.
    deadline = time.monotonic() + 5
    while any(start_time(pid) == born for pid, born in inner.items()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def _children(pid: int) -> dict[int, int | None]:
    """pid's children with their start times (for `unshare --fork`: the sandbox's PID 1)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            for child in (task / "children").read_text().split():
                found[int(child)] = start_time(int(child))
        except OSError:
            pass
    return found


def ensure_sandbox(argv: list[str] | None = None) -> None:
    """Return if already in a sandbox; otherwise re-run this ftlab command in one and exit."""
    if in_sandbox():
        return
    require_root("ftlab")
    argv = argv or [sys.executable, "-m", "lab.cli", *sys.argv[1:]]
    try:
        result = run_sandboxed(argv)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result.returncode)


def clean(include_active: bool = False) -> list[str]:
    """Stop the sandboxes that state files name (only stale ones unless include_active).

    A sandbox is stale when the ftlab process that started it is gone. Only the pid of the
    sandbox itself is signalled (its start time and command line still those of the state file);
    then the state file and the run's TMPDIR are removed. A file that is not a state file of this
    module, or one naming a process that is not its sandbox, is reported and left alone: clean never
    acts on a name, a guess or a file it did not write.
    """
    require_root("ftlab clean")
    done = []
    for path in sorted(STATE_DIR.glob("run-*.json")) if STATE_DIR.is_dir() else []:
        try:
            state = RunState.read(path)
        except (OSError, ValueError, InputError) as exc:
            done.append(f"{path}: left alone: not a run-state file of ftlab ({str(exc)[:80]})")
            continue
        if state.owner_alive() and not include_active:
            continue          # its ftlab is running: the run is its to end (or it is starting)
        what = " ".join(state.argv)
        if state.alive() and not state.is_sandbox():
            done.append(f"{path}: left alone: pid {state.pid} is not the sandbox it names ({what[:80]})")
            continue
        if state.alive():
            os.kill(state.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while state.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if state.alive():
                raise LabError(f"sandbox pid {state.pid} ({what}) did not exit after SIGKILL")
            done.append(f"stopped sandbox pid {state.pid}: {what}")
        else:
            done.append(f"removed state of finished sandbox pid {state.pid}: {what}")
        state.remove()
    return done


# -- running one function of a file in a sandbox (network tests) --------------------------------

def call_in_sandbox(file: str | Path, function: str, *args: Any, timeout: float = 120) -> Any:
    """Run `function(*args)` from a Python file in a fresh sandbox; return its JSON result.

    Raises LabError with the sandbox's stderr when the function raised or the run failed.
    """
    argv = [sys.executable, "-m", "lab.network.sandbox", str(Path(file).resolve()), function, json.dumps(list(args))]
    result = run_sandboxed(argv, capture=True, timeout=timeout)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if result.returncode != 0:
                break
            return json.loads(line[len(RESULT_PREFIX):])
    raise LabError(f"{Path(file).name}:{function} failed in its sandbox (exit {result.returncode}):\n"
                   f"{result.stderr[-4000:]}{result.stdout[-2000:]}")


def _call_main(file: str, function: str, args_json: str) -> int:
    spec = importlib.util.spec_from_file_location(f"sandboxed_{Path(file).stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value = getattr(module, function)(*json.loads(args_json))
    print(RESULT_PREFIX + json.dumps(value), flush=True)
    return 0


if __name__ == "__main__":
    if not in_sandbox():
        sys.exit("lab.network.sandbox: run through call_in_sandbox(), not directly")
    sys.exit(_call_main(*sys.argv[1:4]))
