"""Model services kept warm between runs in one process (a fleet's Ray worker): the next model loads into the
process that served the last one, TensorFlow already imported; a failed load, a different thread count or a
dead service gets a fresh process, and every run's verdicts are those of a cold run. The workers of checks and
benchmarks are kept the same way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from edgeport_testing import save_multi_io, save_small_cnn

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from edgeport.cli.api import convert
    from edgeport.errors import EdgeportError
    from edgeport.run import isolation
    from edgeport.run.warm import keep_services_warm

    def main():
        warm = keep_services_warm()
        cnn, multi, bad, out = (Path(p) for p in sys.argv[1:5])
        rows = []
        for model, threads in ((cnn, 1), (multi, 1), (bad, 1), (cnn, 1), (multi, 2)):
            try:
                report = convert(model, targets=["tflite"], output=out / f"{model.name}-{len(rows)}", bench=False,
                                 threads=threads)
                verdict = [t.accuracy.passed for t in report.targets]
            except EdgeportError as exc:
                verdict = type(exc).__name__
            rows.append({"model": model.name, "verdict": verdict,
                         "idle": [(entry.worker.pid, entry.threads, entry.uses) for entry in warm._idle],
                         "calls": [(worker.pid, uses) for worker, uses in isolation._WARM_CALLS[0]._idle]})
        warm.close()
        isolation._WARM_CALLS[0].close()
        print(json.dumps(rows))

    if __name__ == "__main__":
        main()
    """
)


def test_the_next_model_loads_into_the_warm_service_and_a_failed_one_starts_afresh(tmp_path):
    cnn, multi = save_small_cnn(tmp_path / "cnn"), save_multi_io(tmp_path / "multi")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"not a protobuf")
    script = tmp_path / "warm.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(cnn), str(multi), str(tmp_path / "bad"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["verdict"] for row in rows] == [[True], [True], rows[2]["verdict"], [True], [True]]
    assert isinstance(rows[2]["verdict"], str)  # the unreadable model fails as it would cold
    first, second, after_bad, again, other_threads = (row["idle"] for row in rows)
    assert len(first) == 1 and first[0][2] == 1
    assert second == [[first[0][0], 1, 2]]  # the same process served the second model
    assert after_bad == []  # the failed load ended that process
    assert len(again) == 1 and again[0][0] != first[0][0]  # a fresh one, kept in turn
    assert sorted(entry[1] for entry in other_threads) == [1, 2]  # another thread count: another process
    assert Path(tmp_path / "out" / "multi-1" / "report.json").is_file()
    # each check ran in the one warm call worker, which answered every model's check in turn
    calls = [row["calls"] for row in rows]
    assert calls[0] == [[calls[0][0][0], 1]] and calls[-1][0][0] == calls[0][0][0] and calls[-1][0][1] == 4


CALLS = textwrap.dedent(
    """
    import json, os
    from edgeport.errors import StageTimedOut, WorkerDied
    from edgeport.run import isolation

    def main():
        isolation.keep_calls_warm()
        pids = [isolation.call_isolated(os.getpid), isolation.call_isolated(os.getpid)]
        outcomes = []
        for crash in ((os._exit, 3), (__import__("time").sleep, 30)):
            try:
                isolation.call_isolated(*crash, timeout=5, stage="check")
            except (WorkerDied, StageTimedOut) as exc:
                outcomes.append(type(exc).__name__)
            pids.append(isolation.call_isolated(os.getpid))
        isolation._WARM_CALLS[0].close()
        print(json.dumps({"pids": pids, "outcomes": outcomes}))

    if __name__ == "__main__":
        main()
    """
)


def test_a_warm_call_worker_that_dies_or_hangs_is_replaced(tmp_path):
    script = tmp_path / "calls.py"
    script.write_text(CALLS)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, second, after_crash, after_hang = result["pids"]
    assert first == second  # the second call ran in the first call's worker
    assert result["outcomes"] == ["WorkerDied", "StageTimedOut"]
    assert len({first, after_crash, after_hang}) == 3  # each loss replaced by a fresh worker
