"""Every process edgeport starts ends with the run (issue 21): SIGTERM and SIGHUP stop the whole tree as Ctrl-C
does (exit 143, 129), and after SIGKILL of edgeport itself its workers die with it (PR_SET_PDEATHSIG), Node.js
and Chromium with them, and nothing is written into OUT after.

Real processes throughout: the CLI, its model service, a Node.js benchmark, a Chromium benchmark through
Playwright. A run's processes are found twice over: by ancestry (everything below the CLI while it runs) and by
environment (EDGEPORT_RUN_ID, set by the test, which every worker and what it starts inherit; Chromium's crashpad
handlers are re-parented to init at once and are found this way). Every wait is for an event (a progress line,
a process, a file), never a fixed sleep; "gone" is polled against a deadline of one second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from edgeport.run.isolation import descendants
from edgeport_testing import PLUGIN_ENV, assert_one_line_error, save_tiny

GONE_WITHIN_S = 1.0  # after edgeport exited (or was killed), no process of its run may remain past this
LONG_BENCH = ("--min-seconds", "300", "--max-seconds", "300")  # a benchmark still running when the signal comes
COMMON = ("--no-baseline", "--no-history")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("signals") / "tiny", seed=3)


def wait_until(predicate, what: str, timeout: float = 180.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out ({timeout:g} s) waiting for {what}"
        time.sleep(step)


# ---- the run's processes, from /proc ---------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of `pid`, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tagged(run_id: str) -> set[int]:
    """Every process whose environment holds EDGEPORT_RUN_ID=run_id."""
    needle = f"EDGEPORT_RUN_ID={run_id}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


class Run:
    """`edgeport convert ...` with its own EDGEPORT_RUN_ID, in its own session, stderr collected line by line."""

    def __init__(self, *args, env: dict[str, str] | None = None):
        self.run_id = f"test-signals-{uuid.uuid4().hex}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgeport", "convert", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **PLUGIN_ENV, **(env or {}), "EDGEPORT_RUN_ID": self.run_id},
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self.seen: dict[int, int] = {}  # pid -> start time: every process of the run seen so far
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def processes(self) -> dict[int, str]:
        """The run's live processes now (pid -> command line), zombies left out; remembered in `seen`."""
        pids = tagged(self.run_id) | (set(descendants(self.pid)) if self.process.poll() is None else set())
        alive = {}
        for pid in pids - {os.getpid()}:
            stat = _stat(pid)
            if stat is not None and stat[0] != "Z":
                self.seen.setdefault(pid, stat[1])
                alive[pid] = _cmdline(pid)
        return alive

    def remaining(self) -> dict[int, str]:
        """Processes of the run still running: tagged ones, and every one seen before that is still the same."""
        left = {pid: cmd for pid, cmd in self.processes().items() if pid != self.pid}
        for pid, started in self.seen.items():
            stat = _stat(pid)
            if pid != self.pid and stat is not None and stat[0] != "Z" and stat[1] == started:
                left[pid] = _cmdline(pid)
        return left

    def wait_for_line(self, text: str, timeout: float = 300.0) -> None:
        def seen() -> bool:
            found = any(text in line for line in self.lines)
            assert found or self.process.poll() is None, f"the run ended before {text!r}:\n{self.stderr}"
            return found

        wait_until(seen, repr(text), timeout)

    def wait_for_process(self, what: str, match, timeout: float = 120.0) -> None:
        def running() -> bool:
            assert self.process.poll() is None, f"the run ended before {what}:\n{self.stderr}"
            return any(match(cmd) for cmd in self.processes().values())

        wait_until(running, what, timeout)

    def wait(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return subprocess.CompletedProcess(self.process.args, code, "", self.stderr)

    def cleanup(self) -> None:
        """Whatever happened in the test: nothing of this run is left for the next test."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(60)
        for pid in {*self.remaining(), *tagged(self.run_id)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`: (size, mtime in ns)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.lstat()
        except OSError:
            continue
        found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


def assert_all_gone(run: Run, since: float) -> None:
    """No process of the run runs `GONE_WITHIN_S` after `since` (polled; fails at the deadline)."""
    deadline = since + GONE_WITHIN_S
    while (left := run.remaining()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"{len(left)} process(es) of the run still running {GONE_WITHIN_S:g} s later: {left}"


def is_node_runner(cmd: str) -> bool:
    return "runner.js" in cmd and "node" in cmd


def is_renderer(cmd: str) -> bool:
    return "--type=renderer" in cmd


# Where the signal comes: (targets and flags, the progress line that says the stage runs, the process that
# shows it is under way).
WHERE = {
    "node-bench": (("-t", "tfjs", *LONG_BENCH), "tfjs: bench", ("the Node.js runner", is_node_runner)),
    "chromium-bench": (
        ("-t", "tfjs@tfjs-browser", *LONG_BENCH),
        "tfjs@tfjs-browser: bench",
        ("a Chromium renderer", is_renderer),
    ),
    "conversion": (("-t", "frozengraph", "-O", "hold_convert=300"), "frozengraph: convert", None),
}


def start_inside(model: Path, out: Path, where: str) -> Run:
    flags, line, process = WHERE[where]
    run = Run(model, *flags, "-o", out, *COMMON)
    try:
        run.wait_for_line(line)
        if process is not None:
            run.wait_for_process(*process)
        else:  # the converter wrote its files into staging and holds: the model service is inside convert
            wait_until(lambda: list(out.glob(".staging-frozengraph-*/model.pb")), "the staged artifact")
        run.processes()  # every process of the run, remembered: each must be gone afterwards
    except BaseException:
        run.cleanup()
        raise
    return run


# ---- SIGTERM, SIGHUP: the whole tree stopped, OUT cleaned, exit 128 + N ------------------------------------------


@pytest.mark.parametrize(
    ("signum", "where"),
    [(signal.SIGTERM, "node-bench"), (signal.SIGTERM, "chromium-bench"), (signal.SIGHUP, "conversion")],
    ids=["sigterm-node-bench", "sigterm-chromium-bench", "sighup-conversion"],
)
def test_sigterm_and_sighup_stop_every_process_of_the_run(model, tmp_path, signum, where):
    out = tmp_path / "out"
    run = start_inside(model, out, where)
    try:
        assert len(run.seen) >= (2 if where == "conversion" else 3), run.seen  # edgeport, its worker(s), Node...
        os.kill(run.pid, signum)  # edgeport alone, as `timeout`, `docker stop` or a CI cancellation send it
        result = run.wait(120)
        exited = time.monotonic()
        assert_all_gone(run, exited)
        after = snapshot(out)
    finally:
        run.cleanup()
    name = signal.Signals(signum).name
    assert_one_line_error(result, 128 + signum, f"terminated by {name}")
    assert snapshot(out) == after  # nothing written into OUT once the run ended
    report = (out / "report.json").read_text()
    assert '"status": "interrupted"' in report and "artifacts were removed" in report
    assert not list(out.glob(".staging-*")) and not (out / "tfjs").exists() and not (out / "frozengraph").exists()


# ---- SIGKILL of edgeport: its workers die with it, and what they started ------------------------------------------


@pytest.mark.parametrize("where", ["conversion", "node-bench", "chromium-bench"])
def test_after_sigkill_of_edgeport_nothing_of_its_run_goes_on(model, tmp_path, where):
    out = tmp_path / "out"
    run = start_inside(model, out, where)
    try:
        workers = [pid for pid, cmd in run.processes().items() if "edgeport.run.worker_main" in cmd]
        assert workers, run.processes()
        os.kill(run.pid, signal.SIGKILL)  # edgeport alone: its process group is left to itself
        killed = time.monotonic()
        assert run.wait(30).returncode == -signal.SIGKILL
        at_death = snapshot(out)  # edgeport is reaped: its workers have had their SIGKILL (PR_SET_PDEATHSIG)
        assert_all_gone(run, killed)
    finally:
        run.cleanup()
    assert snapshot(out) == at_death  # nothing written into OUT after edgeport died
    if where == "conversion":  # killed inside the conversion: what kill -9 leaves, for the next run to clear
        assert list(out.glob(".staging-frozengraph-*/model.pb"))


def test_a_worker_whose_parent_is_gone_before_it_starts_does_not_run(tmp_path):
    """The window between fork and PR_SET_PDEATHSIG: a worker started for a parent that already died exits."""
    marker = tmp_path / "ran"
    code = (
        "import sys; from edgeport.run.worker_main import die_with_parent; die_with_parent(1); "
        f"open({str(marker)!r}, 'w').write('ran')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 70, done.stderr
    assert not marker.exists()
