"""`edgeport fleet` on real Ray: a two-node cluster on this machine, the embedded default, resume, bad manifests.

The cluster is started with `ray start --block` in a session of its own per node, so a node is stopped (or
killed, in the node-loss test) by its process group, never with `ray stop` (which stops every Ray on the
machine). The node-loss test kills the worker node and so runs last in this file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray  # the fleet needs Ray: without it these tests fail, they do not skip

from edgeport_testing import assert_one_line_error, run_cli, tf

RAY = Path(sys.executable).parent / "ray"
assert ray.__version__ >= "2.40"
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a loopback test cluster: no token
# the head notices a dead node within seconds rather than the default ~30 s
HEAD_ENV = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "2000",
    "RAY_health_check_failure_threshold": "4",
}
QUICK_BENCH = "[bench]\nmin_runs = 5\nmin_seconds = 0.05\nwarmup_runs = 1\n"


def save_dense(path: Path, seed: int) -> Path:
    t = tf()

    class Dense(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(t.random.stateless_normal([4, 3], seed=[seed, 1]))

        @t.function(input_signature=[t.TensorSpec([None, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.nn.softmax(t.matmul(x, self.w))}

    module = Dense()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    """Six tiny SavedModels under models/, and a manifest taking them by glob (tflite, tiny benchmark)."""
    base = tmp_path_factory.mktemp("fleet")
    for i in range(6):
        save_dense(base / "models" / f"dense{i}", seed=i + 1)
    (base / "fleet.toml").write_text(f'targets = ["tflite"]\nsamples = 8\nmodels = ["models/*"]\n{QUICK_BENCH}')
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        self.temp = Path(tempfile.mkdtemp(prefix="ray-ep-", dir="/tmp"))  # Ray's socket paths must stay short
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def start_node(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = (self.temp / f"node{len(self.nodes)}.log").open("w")
        process = subprocess.Popen(
            [str(RAY), "start", "--num-cpus=1", '--resources={"edgeport_bench": 1}', "--block", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV, **(env or {})},
            start_new_session=True,  # its own process group: stopped alone, with every process it started
        )
        self.nodes.append(process)
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in Path(log.name).read_text():
            assert process.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()[-2000:]
            time.sleep(0.3)
        return process

    def node_ids(self) -> list[str]:
        script = (
            f"import ray, json; ray.init(address={self.address!r}, log_to_driver=False); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, **ENV},
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    @staticmethod
    def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for process in reversed(self.nodes):
            self.kill(process, signal.SIGTERM)
        for process in reversed(self.nodes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.kill(process)
            process.wait(timeout=15)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """A head with one CPU and one benchmark slot on 127.0.0.1, and a second node joined to it."""
    cluster = Cluster()
    try:
        head_args = (f"--port={cluster.port}", "--include-dashboard=false", f"--temp-dir={cluster.temp}")
        cluster.start_node("--head", *head_args, env=HEAD_ENV)
        head = cluster.node_ids()
        cluster.start_node(f"--address={cluster.address}", f"--dashboard-agent-listen-port={_free_port()}")
        cluster.head_id = head[0]
        yield cluster
    finally:
        cluster.stop()


def fleet(*args, cwd: Path, history: Path | None = None) -> subprocess.CompletedProcess:
    where = ("--history", str(history)) if history else ("--no-history",)
    return run_cli("fleet", *args, *where, cwd=cwd, env=ENV)


def read_fleet(out: Path) -> dict:
    return json.loads((out / "fleet.json").read_text())


def attempts(out: Path, name: str) -> list[str]:
    return (out / name / "fleet-attempts.txt").read_text().splitlines()


def test_two_node_cluster_runs_every_model_once_on_both_nodes(fleet_dir, cluster):
    out = fleet_dir / "out-cluster"
    result = fleet("fleet.toml", "-o", out, "--address", cluster.address, "--json", cwd=fleet_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data == read_fleet(out)
    assert [m["name"] for m in data["models"]] == [f"dense{i}" for i in range(6)]
    assert data["exit_code"] == 0 and data["address"] == cluster.address
    for model in data["models"]:
        assert model["verdicts"] == {"tflite": "passed"} and model["exit_code"] == 0 and not model["reused"]
        assert len(attempts(out, model["name"])) == 1 and model["attempts"] == 1  # exactly once
        report = json.loads((out / model["name"] / "report.json").read_text())
        assert report["machine"]["node"]["id"] == model["node"]["id"]
        assert any("exclusive benchmark slot" in n for n in report["targets"][0]["notes"])
        assert report["targets"][0]["latency"]["p50_ms"] > 0
        for name in ("junit.xml", "summary.md", "report.html"):
            assert (out / model["name"] / name).is_file()
    used = {m["node"]["id"] for m in data["models"]}
    assert len(used) == 2 and cluster.head_id in used
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testsuite ") == 6 and 'name="dense3"' in junit
    page = (out / "fleet.html").read_text()
    assert 'href="dense0/report.html"' in page and "<svg" in page and "p50 latency" in page
    assert "| dense5 |" in (out / "summary.md").read_text()


def test_embedded_default_and_failure_isolation(fleet_dir, tmp_path):
    """No address: Ray starts in-process. A broken model fails alone, with its own exit code."""
    broken = fleet_dir / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    manifest = fleet_dir / "embedded.toml"
    manifest.write_text(
        'targets = ["tflite"]\nsamples = 8\nmodels = ["models/*"]\n' + QUICK_BENCH + '[[model]]\npath = "broken"\n'
    )
    out = tmp_path / "out"
    result = fleet(manifest.name, "-o", out, "--max-parallel", "2", "--no-bench", cwd=fleet_dir)
    data = read_fleet(out)
    assert data["address"] == "embedded"
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["broken"]["exit_code"] in (2, 3) and by_name["broken"]["error"]
    assert not by_name["broken"]["infrastructure_failure"]
    assert all(by_name[f"dense{i}"]["verdicts"] == {"tflite": "passed"} for i in range(6))
    assert result.returncode == data["exit_code"] == by_name["broken"]["exit_code"], result.stderr[-2000:]
    assert '<testsuite name="broken"' in (out / "junit.xml").read_text()


def test_resume_reuses_unchanged_models_and_reruns_a_changed_one(tmp_path):
    for i in range(2):
        save_dense(tmp_path / "models" / f"m{i}", seed=10 + i)
    (tmp_path / "fleet.toml").write_text('targets = ["tflite"]\nsamples = 8\nmodels = ["models/*"]\n')
    out = tmp_path / "out"
    first = fleet("fleet.toml", "-o", out, "--no-bench", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]

    again = fleet("fleet.toml", "-o", out, "--no-bench", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [m["reused"] for m in read_fleet(out)["models"]] == [True, True]
    assert len(attempts(out, "m0")) == 1 and len(attempts(out, "m1")) == 1  # nothing ran

    shutil.rmtree(tmp_path / "models" / "m1")
    save_dense(tmp_path / "models" / "m1", seed=99)  # a changed SavedModel
    history = tmp_path / "history.db"
    third = fleet("fleet.toml", "-o", out, "--no-bench", "--resume", cwd=tmp_path, history=history)
    assert third.returncode == 0, third.stderr[-2000:]
    models = {m["name"]: m for m in read_fleet(out)["models"]}
    assert models["m0"]["reused"] and not models["m1"]["reused"]
    assert len(attempts(out, "m0")) == 1 and len(attempts(out, "m1")) == 2
    assert models["m0"]["verdicts"] == {"tflite": "passed"}  # a reused model keeps its verdicts
    with sqlite3.connect(history) as db:  # the driver recorded the model that ran, once, and not the reused one
        runs = db.execute("SELECT model, output FROM runs").fetchall()
    assert [Path(output).name for _, output in runs] == ["m1"]


@pytest.mark.parametrize(
    ("manifest", "fragments"),
    [
        ('targets = ["tflite"]\ntragets = 1\nmodels = ["models/*"]\n', ["unknown key 'tragets'"]),
        ('targets = ["tflite"]\n[[model]]\npath = "models/dense0"\nsamples = 4\nbogus = 1\n', ["[[model]] 1", "bogus"]),
        ('targets = ["tflite"]\n[[model]]\npath = "models/nothere"\n', ["[[model]] 1", "nothere", "does not exist"]),
        (
            'targets = ["tflite"]\n[[model]]\npath = "models/dense0"\n'
            '[[model]]\npath = "models/dense1"\nname = "dense0"\n',
            ["two models are named 'dense0'"],
        ),
        (
            'targets = ["tflite"]\n[[model]]\npath = "models/dense0"\n[model.target.tflite]\nmin_cosin = 1\n',
            ["[[model]] 1", "min_cosin"],
        ),
    ],
    ids=["unknown-key", "unknown-model-key", "missing-path", "duplicate-name", "unknown-target-key"],
)
def test_bad_manifest_is_one_line_exit_2(fleet_dir, tmp_path, manifest, fragments):
    path = fleet_dir / f"bad-{abs(hash(manifest))}.toml"
    path.write_text(manifest)
    result = fleet(path.name, "-o", tmp_path / "out", cwd=fleet_dir)
    assert_one_line_error(result, 2, *fragments)
    assert not (tmp_path / "out" / "fleet.json").exists()


def test_unreachable_address_is_one_line_exit_2(fleet_dir, tmp_path):
    result = fleet("fleet.toml", "-o", tmp_path / "out", "--address", f"127.0.0.1:{_free_port()}", cwd=fleet_dir)
    assert_one_line_error(result, 2, "cannot reach Ray at 127.0.0.1:")


def test_worker_node_killed_mid_run_is_retried_on_the_head(fleet_dir, cluster):
    """Runs last: it kills the cluster's worker node while it runs a model."""
    out = fleet_dir / "out-kill"
    worker_ids = set(cluster.node_ids()) - {cluster.head_id}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeport",
            "fleet",
            "fleet.toml",
            "-o",
            str(out),
            "--address",
            cluster.address,
            "--no-bench",
        ],
        cwd=fleet_dir,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and process.poll() is None:
        for file in out.glob("*/fleet-attempts.txt"):
            if any(line.split()[0] in worker_ids for line in file.read_text().splitlines()):
                victim = file.parent.name
        time.sleep(0.2)
    assert victim, "no model started on the worker node"
    time.sleep(1.0)  # mid-run: its model service is loading or converting
    cluster.kill(cluster.nodes[1])
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    data = read_fleet(out)
    assert all(m["verdicts"] == {"tflite": "passed"} for m in data["models"])
    retried = [m for m in data["models"] if m["attempts"] > 1]
    assert retried, data
    for model in retried:
        assert model["node"]["id"] == cluster.head_id
        assert attempts(out, model["name"])[0].split()[0] in worker_ids
