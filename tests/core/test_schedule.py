"""Stage scheduling inside one run (run/pipeline._CheckLane): a target is checked on a free core while the next
one converts; benchmarks run after, one at a time, with nothing else running; `--sequential` runs every
stage in turn. Real conversions, checks and benchmarks; the stages' intervals come from the progress events,
timed as they arrive."""

from __future__ import annotations

import os
import time

import pytest

TARGETS = ["tflite", "tflite:fp16", "onnx", "tflite:dynamic"]


def _intervals(models, out, **options):
    import edgeport
    from edgeport.contracts import TimingProtocol

    started: dict[tuple[str, str], float] = {}
    spans: list[tuple[str, str, float, float]] = []

    def progress(event):
        key = (event.target, event.stage)
        if event.status == "started":
            started[key] = time.monotonic()
        elif key in started:
            spans.append((event.target, event.stage, started.pop(key), time.monotonic()))

    report = edgeport.convert(
        models["cnn"],
        targets=TARGETS,
        output=out,
        protocol=TimingProtocol(min_runs=20, min_seconds=0.3, warmup_runs=2),
        baseline=False,
        progress=progress,
        **options,
    )
    assert report.exit_code == 0, [t.stages for t in report.targets]
    return report, spans


def _overlap(a, b) -> bool:
    return a[2] < b[3] and b[2] < a[3]


@pytest.fixture(scope="module")
def scheduled(models, tmp_path_factory):
    return _intervals(models, tmp_path_factory.mktemp("scheduled"))


def test_benchmarks_run_alone_after_every_conversion_and_check(scheduled):
    report, spans = scheduled
    benches = [s for s in spans if s[1] == "bench"]
    others = [s for s in spans if s[1] in ("convert", "check")]
    assert len(benches) == len(TARGETS) and len([s for s in others if s[1] == "check"]) == len(TARGETS)
    for bench in benches:
        assert not [other for other in others if _overlap(bench, other)], bench
        assert not [b for b in benches if b is not bench and _overlap(bench, b)]
    assert min(b[2] for b in benches) >= max(o[3] for o in others)
    assert all(t.latency is not None and t.latency.p50_ms > 0 for t in report.targets)


def test_checks_overlap_the_next_conversions_on_a_free_core(scheduled):
    _, spans = scheduled
    checks = [s for s in spans if s[1] == "check"]
    converts = [s for s in spans if s[1] == "convert"]
    overlapping = [c for c in checks if any(c[0] != v[0] and _overlap(c, v) for v in converts)]
    if (os.cpu_count() or 1) >= 2:
        assert overlapping, "no check ran beside a conversion"
    else:  # one core: nothing is free beside a conversion
        assert not overlapping
    for check in checks:  # a target is checked after its own conversion, never before
        convert = next(v for v in converts if v[0] == check[0])
        assert check[2] >= convert[3]


def test_sequential_runs_every_stage_in_turn(models, tmp_path):
    report, spans = _intervals(models, tmp_path, sequential=True)
    work = sorted((s for s in spans if s[1] in ("convert", "check", "bench")), key=lambda s: s[2])
    for first, second in zip(work, work[1:], strict=False):
        assert first[3] <= second[2], (first, second)
    assert [t.name for t in report.targets] == TARGETS  # the report keeps the order asked for
