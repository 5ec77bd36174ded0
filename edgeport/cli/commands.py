"""What the CLI commands do, kept out of cli.py so `edgeport --help` imports only click."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table

from edgeport.data import RuntimeSettings, StageTimeouts, TimingProtocol
from edgeport.errors import ExitCode, UsageError
from edgeport.model.samples import SampleRequest
from edgeport.report.files import Report, accuracy_cell, human_bytes, layer_lines, stage_cell, task_lines
from edgeport.run.request import RunRequest

DEFAULT_OUTPUT = Path("edgeport-out")
stderr = Console(stderr=True)
stdout = Console() if Console().is_terminal else Console(width=150)  # CI logs: wide lines, no wrapping


def build_request(
    *,
    model,
    targets,
    output,
    config_path,
    samples: SampleRequest,
    calibration,
    signature,
    threads,
    jobs,
    shared_options,
    backend,
    protocol_overrides,
    check,
    bench,
    baseline,
    strict,
    legacy,
    trust_model=False,
    config=None,
    stage_timeout=(),
    labels=None,
    layers=False,
    sequential=False,
    max_memory=None,
) -> RunRequest:
    """The RunRequest of a `convert`: flags merged with edgeport.toml (`config_path`, or an already validated
    `Config`, as a fleet manifest's entry is)."""
    from edgeport.cli.config import load_config
    from edgeport.model.samples import Preprocess, parse_input_ranges, parse_input_shapes
    from edgeport.run.request import build_request as build_run_request
    from edgeport.run.request import parse_stage_timeouts

    if config is None and config_path:
        config = load_config(config_path)
    get = config.get if config else (lambda key, default=None: default)
    model = model or (config.path_value("model") if config else None)
    if model is None:
        raise UsageError("no model: pass MODEL or set model in --config")
    data = samples.data or (config.path_value("data") if config else None)
    if config and samples.data is None:
        samples = dataclasses.replace(
            samples,
            data=data,
            preprocess=Preprocess.parse(get("preprocess")) if get("preprocess") else samples.preprocess,
            count=samples.count if samples.count_chosen else get("samples", samples.count),
            count_chosen=samples.count_chosen or get("samples") is not None,
            seed=get("seed", samples.seed),
            input_ranges={**parse_input_ranges(get("input_range", [])), **samples.input_ranges},
            input_shapes={**parse_input_shapes(get("input_shape", [])), **samples.input_shapes},
        )
    calibration = calibration or (config.path_value("calibration") if config else None)
    labels_spec = None
    if labels or get("labels"):
        from edgeport.checks.task import parse_labels_spec

        base = None if labels or config is None else config.path.parent  # config paths: relative to the file
        labels_spec = parse_labels_spec(str(labels or get("labels")), base, Path(data) if data else None)
    names = list(targets) or list(get("targets", []))
    tables = config.target_tables if config else {}
    if targets and tables:  # -t narrows the config's targets; their tables still apply
        tables = {name: table for name, table in tables.items() if name in targets}
    if not names and not tables:
        raise UsageError("no targets: pass -t TARGET (see `edgeport targets`)")
    protocol = TimingProtocol(
        **{**(config.protocol if config else {}), **{k: v for k, v in protocol_overrides.items() if v is not None}}
    )
    timeouts = StageTimeouts()
    if get("stage_timeout") is not None:
        timeouts = parse_stage_timeouts(get("stage_timeout"), "config stage_timeout")
    if stage_timeout:
        timeouts = parse_stage_timeouts(list(stage_timeout), base=timeouts)
    return build_run_request(
        model=Path(model),
        targets=names,
        target_settings=tables,
        shared_options=shared_options,
        output=Path(output or (config.path_value("output") if config and get("output") else None) or DEFAULT_OUTPUT),
        samples=samples,
        calibration=Path(calibration) if calibration else None,
        signature=signature or get("signature"),
        tags=tuple(get("tags")) if get("tags") else None,
        threads=threads or get("threads", 1),
        jobs=jobs or get("jobs", 1),
        protocol=protocol,
        backend=backend,
        check=check,
        bench=bench,
        baseline=baseline,
        strict=bool(strict if strict is not None else get("strict", False)),
        force_v1=legacy,
        trust_model=bool(trust_model or get("trust_model", False)),
        timeouts=timeouts,
        labels=labels_spec,
        layers=bool(layers or get("layers", False)),
        sequential=bool(sequential or get("sequential", False)),
        max_memory=max_memory if max_memory is not None else get("max_memory"),
    )


def run_with_progress(request: RunRequest, quiet: bool = False) -> Report:
    from edgeport.cli.progress import ProgressPrinter, RunShape
    from edgeport.run import pipeline

    shape = RunShape(
        targets=tuple(t.name for t in request.targets),
        check=request.check,
        bench=request.bench,
        protocol=request.protocol,
    )
    with ProgressPrinter(stderr, enabled=not quiet, shape=shape) as printer:
        return pipeline.run(request, printer.event)


def finish_run(
    report: Report, out: Path, *, baseline, history_path: Path | None, record_history: bool, as_json: bool
) -> int:
    """After a convert run: append it to the history, compare it with --baseline; returns the exit code."""
    from edgeport.report.history import record_run
    from edgeport.report.regression import check_against

    data = report.to_dict()
    if record_history:
        record_run(history_path, data, output=out, console=stderr)
    if baseline is None:
        return report.exit_code
    comparison = check_against(baseline, data, out=out, console=stderr if as_json else stdout)
    return report.exit_code or int(comparison.exit_code)


def print_report(report: Report, out: Path, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    table = Table(title=f"edgeport: {report.model['path']} ({report.model['mode']})", title_justify="left")
    for column in ("target", "convert", "check", "bench", "size", "accuracy", "p50 ms", "p90 ms", "runtime"):
        table.add_column(column, overflow="fold")
    if report.baseline:
        b = report.baseline
        table.add_row(
            "savedmodel",
            "–",
            "–",
            "–",
            human_bytes(report.model["size_bytes"]),
            "reference",
            f"{b.p50_ms:.3f}",
            f"{b.p90_ms:.3f}",
            b.runtime_version,
        )
    for t in report.targets:
        lat = t.latency
        table.add_row(
            t.name,
            _colored(stage_cell(t.stage("convert"))),
            _colored(stage_cell(t.stage("check"))),
            _colored(stage_cell(t.stage("bench"))),
            human_bytes(t.size_bytes),
            accuracy_cell(t),
            f"{lat.p50_ms:.3f}" if lat else "–",
            f"{lat.p90_ms:.3f}" if lat else "–",
            t.runtime,
        )
    stdout.print(table)
    for line in [*task_lines(report), *layer_lines(report)]:
        stdout.print(escape_markup(line))
    for warning in report.warnings:
        stdout.print(f"[yellow]warning:[/] {warning}")
    verdict = {0: "[green]all gates passed[/]", 1: "[red]a gate failed[/]", 3: "[red]a conversion failed[/]"}
    unchecked = [t.name for t in report.targets if t.verdict == "unchecked"]
    said = verdict.get(report.exit_code, str(report.exit_code))
    if unchecked and report.exit_code == 0:
        said = f"[yellow]all gates that ran passed; unchecked: {', '.join(unchecked)}[/]"
    stdout.print(f"{said} (exit {report.exit_code}); report: {out / 'report.json'}")


def _colored(cell: str) -> str:
    from rich.markup import escape

    head = cell.split(":")[0]
    color = {"pass": "green", "FAIL": "red", "ERROR": "red", "skip": "yellow"}.get(head)
    return f"[{color}]{escape(cell)}[/]" if color else escape(cell)


def scratch_log(stage: str) -> Path:
    """Where a worker's output goes for the single-artifact commands (TensorFlow and runtime chatter)."""
    folder = Path(tempfile.gettempdir()) / "edgeport-logs"
    folder.mkdir(exist_ok=True)
    return folder / f"{stage}-{os.getpid()}.log"


def runtime_for(artifact: Path, name: str | None):
    """(runtime, file): --runtime if given, else by the file's suffix (in a folder: the first file a runtime loads).

    Where several runtimes load a suffix, a converter's default runtime wins (model.json: tfjs-node).
    """
    from edgeport.run.registry import registry

    if not artifact.exists():
        raise UsageError(f"artifact {artifact} does not exist")
    files = sorted(p for p in artifact.iterdir() if p.is_file()) if artifact.is_dir() else [artifact]
    runtimes = registry().runtimes()
    if name:
        runtime = registry().runtime(name)
        suffixes = runtime.artifact_suffixes or ("",)
        return runtime, next((f for f in files if f.name.endswith(suffixes)), files[0] if files else artifact)
    defaults = {c.default_runtime for c in registry().converters().values()}
    ranked = sorted(runtimes.values(), key=lambda r: (r.name not in defaults, r.name))
    for file in files:
        for runtime in ranked:
            if runtime.artifact_suffixes and file.name.endswith(runtime.artifact_suffixes):
                return runtime, file
    raise UsageError(f"no runtime loads {artifact.name}; pass --runtime (see `edgeport targets`)")


def _model_samples(
    model: Path,
    signature,
    samples: SampleRequest,
    legacy: bool = False,
    trust_model: bool = False,
    timeouts: StageTimeouts | None = None,
):
    from edgeport.model.samples import load_samples
    from edgeport.model.savedmodel import check_saved_model_dir
    from edgeport.run.isolation import Worker
    from edgeport.run.service import ModelService

    check_saved_model_dir(model)
    worker = Worker(
        ModelService,
        str(model),
        signature,
        None,
        legacy,
        1,
        trust_model,
        log_path=scratch_log("model"),
        what="model loader",
        timeout=(timeouts or StageTimeouts()).load,
    )
    info = worker.description
    try:
        return worker, info, load_samples(info.signature, samples, info.vocabulary, info.input_ranges)
    except BaseException:
        worker.close()
        raise


def check_artifact(
    *,
    artifact: Path,
    model: Path,
    runtime_name,
    precision,
    backend,
    samples,
    signature,
    threads,
    as_json,
    trust_model: bool = False,
    timeouts: StageTimeouts | None = None,
) -> int:
    from edgeport.checks.accuracy import DEFAULT_TOLERANCES, compare, default_tolerance
    from edgeport.errors import RuntimeFailure, StageTimedOut, WorkerDied
    from edgeport.run.isolation import PluginCrash, call_isolated
    from edgeport.run.runtime_calls import run_check

    if precision not in DEFAULT_TOLERANCES:
        raise UsageError(
            f"--precision {precision!r} is not one edgeport has tolerances for; "
            f"use one of {', '.join(DEFAULT_TOLERANCES)}"
        )
    timeouts = timeouts or StageTimeouts()
    runtime, artifact = runtime_for(artifact, runtime_name)
    worker, info, sample_set = _model_samples(model, signature, samples, trust_model=trust_model, timeouts=timeouts)
    with worker:
        reference = worker.call_within(timeouts.check, "check", "reference", sample_set)
    settings = RuntimeSettings(threads=threads, backend=backend)
    try:
        result = call_isolated(
            run_check,
            runtime,
            str(artifact),
            sample_set,
            settings,
            read_layout=True,  # no converter's record here: the file says how it lays its outputs out
            log_path=scratch_log("check"),
            what=f"{runtime.name} runtime",
            timeout=timeouts.check,
            stage="check",
        )
    except (PluginCrash, WorkerDied, StageTimedOut) as exc:  # the runtime failed on this artifact: a failed check
        raise RuntimeFailure(exc.message) from None
    accuracy = compare(reference, result.outputs, default_tolerance(precision), result.output_permutations)
    code = ExitCode.OK if accuracy.passed else ExitCode.GATE_FAILED
    if as_json:
        sys.stdout.write(
            json.dumps(
                _plain(
                    {
                        "artifact": str(artifact),
                        "runtime": result.runtime_version,
                        "accuracy": dataclasses.asdict(accuracy),
                        "measurements": result.measurements,
                        "exit_code": int(code),
                    }
                ),
                indent=2,
            )
            + "\n"
        )
        return code
    table = Table(
        title=f"check {artifact} on {result.runtime_version} ({sample_set.count} samples)", title_justify="left"
    )
    for column in ("output", "max abs", "mean abs", "RMSE", "cosine", "SNR dB", "top-1", "top-5"):
        table.add_column(column)
    for o in accuracy.outputs:
        table.add_row(
            o.name,
            f"{o.max_abs_error:.3g}",
            f"{o.mean_abs_error:.3g}",
            f"{o.rmse:.3g}",
            f"{o.cosine:.6f}",
            f"{o.snr_db:.1f}",
            _pct(o.top1_agreement),
            _pct(o.top5_agreement),
        )
    stdout.print(table)
    for failure in accuracy.failures:
        stdout.print(f"[red]FAIL[/] {failure}")
    stdout.print("[green]passed[/]" if accuracy.passed else f"[red]failed[/] (exit {int(code)})")
    return code


def bench_artifact(
    *,
    artifact: Path,
    model,
    runtime_name,
    backend,
    samples: SampleRequest,
    signature,
    threads,
    as_json,
    protocol_overrides,
    trust_model: bool = False,
    timeouts: StageTimeouts | None = None,
) -> int:
    from edgeport.checks.latency import summarize
    from edgeport.data import SampleSet
    from edgeport.errors import RuntimeFailure, StageTimedOut
    from edgeport.model.samples import read_npz
    from edgeport.run.isolation import call_isolated
    from edgeport.run.request import check_limits
    from edgeport.run.runtime_calls import run_bench

    timeouts = timeouts or StageTimeouts()
    protocol = TimingProtocol(**{k: v for k, v in protocol_overrides.items() if v is not None})
    check_limits(protocol, timeouts)
    runtime, artifact = runtime_for(artifact, runtime_name)
    if model:
        worker, _, sample_set = _model_samples(model, signature, samples, trust_model=trust_model, timeouts=timeouts)
        worker.close()
    elif samples.data and samples.data.suffix == ".npz":
        sample_set = SampleSet(arrays=read_npz(samples.data), source=str(samples.data), synthetic=False)
    else:
        raise UsageError("bench needs inputs: pass --model (synthetic inputs from its signature) or --data FILE.npz")
    try:
        raw = call_isolated(
            run_bench,
            runtime,
            str(artifact),
            sample_set,
            RuntimeSettings(threads=threads, backend=backend),
            protocol,
            log_path=scratch_log("bench"),
            what=f"{runtime.name} benchmark",
            timeout=timeouts.bench,
            stage="bench",
        )
    except StageTimedOut as exc:  # the runtime did not finish on this artifact: a failed benchmark
        raise RuntimeFailure(exc.message) from None
    stats = summarize(raw, protocol)
    if as_json:
        sys.stdout.write(json.dumps(_plain(dataclasses.asdict(stats)), indent=2) + "\n")
        return ExitCode.OK
    stdout.print(
        f"{artifact} on {stats.runtime_version}, {threads} thread(s), {stats.runs} runs: p50 {stats.p50_ms:.3f} ms, "
        f"p90 {stats.p90_ms:.3f}, p99 {stats.p99_ms:.3f}, mean {stats.mean_ms:.3f} ± {stats.std_ms:.3f}, "
        f"min {stats.min_ms:.3f}, max {stats.max_ms:.3f}; load {stats.load_ms:.1f} ms, first "
        f"{stats.first_inference_ms:.1f} ms, peak RSS {stats.peak_rss_mb:.0f} MB"
    )
    for note in ((stats.describe_truncation(),) if stats.truncated else ()) + stats.notes:
        stdout.print(f"[yellow]note:[/] {note}")
    return ExitCode.OK


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _plain(value: Any) -> Any:
    from edgeport.report.files import jsonable

    return jsonable(value)


def list_targets(as_json: bool) -> None:
    from edgeport.run.registry import registry

    reg = registry()
    rows = []
    for name, converter in reg.converters().items():
        runtime = reg.runtimes().get(converter.default_runtime)
        availability = runtime.availability() if runtime else None
        for variant in converter.variants:
            rows.append(
                {
                    "target": f"{name}:{variant}" if variant else name,
                    "kind": "converter",
                    "runtime": converter.default_runtime,
                    "available": bool(
                        availability and availability.available and converter.variant_availability(variant).available
                    ),
                    "note": (availability.reason if availability and not availability.available else "")
                    or converter.variant_availability(variant).reason,
                    "origin": reg.origin("converter", name),
                }
            )
    for name, runtime in reg.runtimes().items():
        availability = runtime.availability()
        rows.append(
            {
                "target": name,
                "kind": "runtime",
                "runtime": name,
                "available": availability.available,
                "note": availability.reason or runtime.description,
                "origin": reg.origin("runtime", name),
            }
        )
    for (kind, name), error in reg.broken().items():
        rows.append(
            {"target": name, "kind": kind, "runtime": "", "available": False, "note": f"broken: {error}", "origin": ""}
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="edgeport targets and runtimes", title_justify="left")
    for column in ("name", "kind", "runtime", "available", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["target"]),
            str(row["kind"]),
            str(row["runtime"]),
            "[green]yes[/]" if row["available"] else "[red]no[/]",
            str(row["note"]),
        )
    stdout.print(table)


def print_doctor(targets, as_json: bool) -> int:
    from edgeport.cli.setup import doctor_rows

    rows = doctor_rows(targets)
    code = ExitCode.OK if all(row["available"] for row in rows if row["wanted"]) else ExitCode.GATE_FAILED
    if as_json:
        sys.stdout.write(json.dumps({"plugins": rows, "exit_code": int(code)}, indent=2) + "\n")
        return code
    table = Table(title="edgeport doctor", title_justify="left")
    for column in ("kind", "name", "available", "version", "missing", "fix"):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark = "[green]yes[/]" if row["available"] else ("[red]no[/]" if row["wanted"] else "[yellow]no[/]")
        table.add_row(
            str(row["kind"]), str(row["name"]), mark, str(row["version"]), str(row["missing"]), str(row["fix"])
        )
    stdout.print(table)
    stdout.print(
        "[green]everything asked for is available[/]"
        if code == ExitCode.OK
        else f"[red]something asked for is missing[/] (exit {int(code)})"
    )
    return code
