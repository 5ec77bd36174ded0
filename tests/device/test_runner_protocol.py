"""The device runner is one self-contained file (no edgeport import on the device); these prove it runs the
same timing protocol as checks/timing.py, step for step, and that its wire format round-trips."""

from __future__ import annotations

import ast
import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from edgeport.checks import timing
from edgeport.data import SampleSet, TimingProtocol
from edgeport.device import runner
from edgeport.device.remote import RUNNER


class SimulatedClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeSession(timing.Session):
    """Each run advances the clock by a seeded, noisy time that settles after a few runs."""

    def __init__(self, clock: SimulatedClock, seed: int):
        self.clock, self.rng, self.runs = clock, random.Random(seed), 0

    def prepare(self, feeds):
        return feeds

    def run(self, feeds):
        return self.run_prepared(feeds)

    def run_prepared(self, prepared):
        self.runs += 1
        base = 0.004 if self.runs > 6 else 0.012
        self.clock.now += base * (1 + 0.08 * self.rng.random())
        return prepared


PROTOCOLS = [
    TimingProtocol(),
    TimingProtocol(warmup_runs=1, min_runs=5, min_seconds=0.05, max_seconds=2.0),
    TimingProtocol(ci_half_width=0.0, min_runs=40, max_seconds=0.3),  # the deadline cuts it
    TimingProtocol(ci_half_width=0.005, min_runs=10, max_seconds=30.0),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_runner_times_exactly_as_checks_timing_does(protocol):
    samples = SampleSet({"x": np.zeros((3, 2), np.float32)}, "test", True)
    host_clock, device_clock = SimulatedClock(), SimulatedClock()
    host = timing.time_session(lambda: FakeSession(host_clock, 7), samples, protocol, "v", clock=host_clock)
    device = runner.time_session(
        lambda: FakeSession(device_clock, 7), samples.feeds(), dataclasses.asdict(protocol), clock=device_clock
    )
    assert host.run_ms and device["run_ms"] == list(host.run_ms)
    assert device["warmup_runs"] == host.warmup_runs
    assert device["first_inference_ms"] == host.first_inference_ms and device["load_ms"] == host.load_ms
    assert device_clock.now == host_clock.now


def test_the_interval_ranks_and_the_stopping_rule_agree():
    for n in (1, 5, 6, 36, 100, 368, 1001, 5000):
        for q in (0.5, 0.9, 0.99):
            assert runner.quantile_ranks(n, q) == timing.quantile_ranks(n, q), (n, q)
    rng = np.random.default_rng(3)
    for n in (3, 6, 20, 200):
        times = sorted(rng.uniform(1, 2, n).tolist())
        assert runner.relative_half_width(times) == timing.relative_half_width(times)
        assert runner.settled(times, 5, 0.05) == timing.settled(times, 5, 0.05)
    names = {"CONFIDENCE", "EXACT_RANKS_UP_TO", "NORMAL_FROM", "CHECK_EVERY_RUN_UP_TO", "CHECK_GROWTH"}
    assert {name: getattr(runner, name) for name in names} == {name: getattr(timing, name) for name in names}


def test_no_timed_run_fails_on_the_device_too():
    clock = SimulatedClock()

    class Slow(FakeSession):
        def run_prepared(self, prepared):
            self.clock.now += 5.0
            return prepared

    protocol = dataclasses.asdict(TimingProtocol(max_seconds=1.0))
    with pytest.raises(runner.RunnerFailure, match="no timed run within max_seconds 1"):
        runner.time_session(lambda: Slow(clock, 0), [{"x": np.zeros(2)}], protocol, clock=clock)


def test_the_runner_imports_only_the_standard_library_numpy_and_the_runtimes():
    tree = ast.parse(RUNNER.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    import sys

    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "__future__"}
    assert third_party == {"numpy", "ai_edge_litert", "onnxruntime"}, third_party  # never edgeport, never TF


def test_the_wire_format_round_trips(tmp_path: Path):
    outputs = [{"logits": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([1, 2], np.int64)}] * 2
    path = str(tmp_path / "check.npz")
    runner.write_result(path, {"runtime_version": "x 1", "peak_rss_bytes": 5}, outputs)
    header, back = runner.read_result(Path(path).read_bytes())
    assert header["runtime_version"] == "x 1" and header["outputs"] == ["logits", "ids"]
    assert len(back) == 2 and all(np.array_equal(back[1][k], outputs[1][k]) for k in outputs[1])
    runner.write_result(path, {"failure": "LiteRT cannot load model.tflite: bad"})
    assert runner.read_result(path) == ({"failure": "LiteRT cannot load model.tflite: bad", "outputs": []}, [])
