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
from edgeport.report import wording
from edgeport.report.files import (
    Report,
    accuracy_cell,
    latency_cell,
    layer_lines,
    noise_line,
    size_cell,
    speed_line,
    stage_cell,
    task_lines,
)
from edgeport.run.request import RunRequest

DEFAULT_OUTPUT = Path("edgeport-out")
LOG_WIDTH = 100_000  # off a terminal (CI logs, a pipe): no line is ever hard-wrapped, so grep finds whole names
CELL_REASON = 40  # on a terminal, a table cell says a stage's reason this short (progress printed it whole)


def console(stderr: bool = False) -> Console:
    """Rich's console for stdout or stderr: the terminal's width on a terminal; elsewhere lines as long as they
    are (a table at its natural width, text never wrapped)."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


stderr = console(stderr=True)
stdout = console()


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
    gates=(),
) -> RunRequest:
    """The RunRequest of a `convert`: flags merged with edgeport.toml (`config_path`, or an already validated
    `Config`, as a fleet manifest's entry is); `gates`: --gate [TARGET.]KEY=VALUE, over the config's tables."""
    from edgeport.cli.config import load_config
    from edgeport.model.samples import Preprocess, parse_input_ranges, parse_input_shapes
    from edgeport.run.request import build_request as build_run_request
    from edgeport.run.request import check_jobs, check_threads, parse_stage_timeouts

    if threads is not None:  # the flags, named as given (the config's own are checked where it is read)
        check_threads(threads, "--threads")
    if jobs is not None:
        check_jobs(jobs, "--jobs")
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
        gates=gates,
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
    short = stdout.is_terminal  # the reasons were printed whole above, by the progress lines
    table = Table(title=f"edgeport: {report.model['path']} ({report.model['mode']})", title_justify="left")
    for column in ("target", "convert", "check", "bench", "size", "accuracy", "p50", "p90", "runtime"):
        table.add_column(column, overflow="fold")
    if report.baseline:
        b = report.baseline
        table.add_row(
            "savedmodel",
            "–",
            "–",
            "–",
            wording.size(report.model["size_bytes"]),
            "reference",
            latency_cell(b),
            latency_cell(b, "p90_ms"),
            b.runtime_version,
        )
    cut = False
    for t in report.targets:
        lat = t.latency
        cells = [stage_cell(t.stage(stage)) for stage in ("convert", "check", "bench")]
        if short:
            shortened = [short_cell(cell) for cell in cells]
            cut = cut or shortened != cells
            cells = shortened
        table.add_row(
            escape_markup(t.name),
            *(_colored(cell) for cell in cells),
            escape_markup(size_cell(t)),
            accuracy_cell(t),
            latency_cell(lat),
            latency_cell(lat, "p90_ms"),
            escape_markup(runtime_cell(t)),
        )
    stdout.print(table)
    if cut:
        said = escape_markup(f"(reasons cut short in the table: whole above, and in {out / 'summary.md'})")
        stdout.print(said, highlight=False)
    for line in [*filter(None, [speed_line(report), noise_line(report)]), *task_lines(report), *layer_lines(report)]:
        stdout.print(escape_markup(line))
    for warning in report.warnings:
        stdout.print(f"[yellow]warning:[/] {escape_markup(warning)}")
    for line in next_steps(report):
        stdout.print(f"[cyan]next:[/] {escape_markup(line)}")
    verdict = {0: "[green]all gates passed[/]", 1: "[red]a gate failed[/]", 3: "[red]a conversion failed[/]"}
    said = verdict.get(report.exit_code, str(report.exit_code))
    unsure = {kind: [t.name for t in report.targets if t.verdict == kind] for kind in ("unchecked", "inconclusive")}
    if report.exit_code == 0 and any(unsure.values()):  # never "all gates passed" for what was not judged
        named = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in unsure.items() if names)
        said = f"[yellow]all gates that ran passed; {escape_markup(named)}[/]"
    where = escape_markup(f"{out / 'report.json'}, {out / 'report.html'}")
    stdout.print(f"{said} (exit {report.exit_code}); report: {where}")


def short_cell(cell: str) -> str:
    """A stage cell ('FAIL: reason; reason') with its first reason cut to CELL_REASON characters and a count
    of the others, for a table on a terminal."""
    mark, sep, reason = cell.partition(": ")
    if not sep or len(reason) <= CELL_REASON:
        return cell
    reasons = reason.split("; ")
    first = reasons[0] if len(reasons[0]) <= CELL_REASON else reasons[0][: CELL_REASON - 1].rstrip() + "…"
    return f"{mark}: {first}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")


def runtime_cell(target) -> str:
    """The runtime and, where it has backends, the one used: the one chosen, else the one its benchmark names
    (tfjs-browser on webgl must not look like wasm)."""
    backend = target.backend
    if backend is None and target.latency is not None:
        from edgeport.run.registry import registry

        runtime = registry().runtimes().get(target.runtime)
        words = str(target.latency.runtime_version).replace("(", " ").replace(",", " ").split()
        backend = next((b for b in (runtime.backends if runtime else ()) if b in words), None)
    return f"{target.runtime} ({backend})" if backend else target.runtime


QUANTIZED = ("int8", "int16x8")


def next_steps(report: Report) -> list[str]:
    """What to try after an integer-quantized target failed its accuracy gates: real samples, quant_fallback,
    the per-layer comparison (each said only where it was not already done)."""
    from edgeport.run.registry import registry

    failed = [
        t
        for t in report.targets
        if t.precision in QUANTIZED
        and t.accuracy is not None
        and not t.accuracy.passed
        and (check := t.stage("check")) is not None
        and check.status == "failed"
    ]
    if not failed:
        return []
    names = ", ".join(t.name for t in failed)
    steps = []
    if (report.samples or {}).get("synthetic") or (report.calibration or {}).get("synthetic"):
        steps.append(
            f"{names}: pass --data (and --calibration) with real samples: calibrated or checked on synthetic "
            "inputs, a quantized model is judged on values it will never see"
        )
    fallback = []
    for t in failed:
        converter = registry().converters().get(t.converter)
        if t.quant_fallback is None and converter is not None and converter.float_fallback(t.variant) is None:
            fallback.append(t.name)
    if fallback:
        steps.append(
            f"{', '.join(fallback)}: -O quant_fallback=auto keeps the layers adding the most error in float until "
            "the gates pass (the report says what it costs)"
        )
    compared = [t.name for t in failed if t.layers and not t.layers.get("error")]
    if compared:
        steps.append(f"{', '.join(compared)}: the per-layer comparison (where the error starts) is in report.html")
    else:
        steps.append(f"{names}: --layers compares every layer with the SavedModel's, to find where the error starts")
    return steps


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
    gates=(),
) -> int:
    """`edgeport check`: precision None = the artifact's own (its run's record, else its file, else fp32);
    `gates`: --gate KEY=VALUE tolerances over that precision's defaults."""
    from edgeport.checks.accuracy import DEFAULT_TOLERANCES, compare, default_tolerance
    from edgeport.cli.artifacts import Inferred, artifact_precision
    from edgeport.errors import RuntimeFailure, RuntimeUnavailable, StageTimedOut, WorkerDied
    from edgeport.run.isolation import PluginCrash, call_isolated
    from edgeport.run.runtime_calls import run_check

    if precision is not None and precision not in DEFAULT_TOLERANCES:
        raise UsageError(
            f"--precision {precision!r} is not one edgeport has tolerances for; "
            f"use one of {', '.join(DEFAULT_TOLERANCES)}"
        )
    overrides = check_gates(gates)
    from edgeport.run.request import check_path, check_threads

    check_threads(threads, "--threads")
    for what, path in (("the artifact", artifact), ("--model", model), ("--data", samples.data)):
        if path is not None:
            check_path(path, what)
    timeouts = timeouts or StageTimeouts()
    runtime, artifact = runtime_for(artifact, runtime_name)
    refused = runtime.cannot_run(artifact)
    if refused:  # before the model loads: the same words a run's check gives, exit 1 (not checked)
        raise RuntimeUnavailable(f"runtime {runtime.name} cannot run {artifact}: {refused}")
    inferred = Inferred(precision, "--precision") if precision else artifact_precision(artifact)
    if inferred.precision not in DEFAULT_TOLERANCES:
        inferred = Inferred("fp32", f"{inferred.source} says {inferred.precision}, which has no defaults of its own")
    tolerance = default_tolerance(inferred.precision).replace(**overrides)
    worker, info, sample_set = _model_samples(model, signature, samples, trust_model=trust_model, timeouts=timeouts)
    with worker:
        _refuse_misfit(artifact, model, info.signature, declared_inputs(artifact))  # before the reference is run
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
    _refuse_misfit(artifact, model, info.signature, None, result.outputs, reference)
    accuracy = compare(reference, result.outputs, tolerance, result.output_permutations)
    code = ExitCode.OK if accuracy.passed else ExitCode.GATE_FAILED
    if as_json:
        sys.stdout.write(
            json.dumps(
                _plain(
                    {
                        "artifact": str(artifact),
                        "runtime": result.runtime_version,
                        "precision": inferred.precision,
                        "precision_source": inferred.source,
                        "tolerance": dataclasses.asdict(tolerance),
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
    gates_said = f"gates{' (with --gate)' if overrides else ''} {tolerance_text(tolerance)}"
    stdout.print(escape_markup(f"precision {inferred.precision} (from {inferred.source}); {gates_said}"))
    for failure in accuracy.failures:
        stdout.print(f"[red]FAIL[/] {escape_markup(failure)}")
    if not accuracy.passed and precision is None and inferred.precision == "fp32":
        stdout.print("next: an artifact of another precision? pass --precision (fp16, dynamic, int8...)")
    stdout.print("[green]passed[/]" if accuracy.passed else f"[red]failed[/] (exit {int(code)})")
    return code


def check_gates(gates) -> dict[str, float]:
    """`edgeport check --gate KEY=VALUE`: accuracy tolerances over the precision's defaults, checked as a
    convert's are; one artifact, so no TARGET. prefix, and no budget (the check measures no latency)."""
    from edgeport.run.request import TOLERANCE_KEYS, parse_gates

    parsed = parse_gates(gates)
    named = [target for target in parsed if target is not None]
    if named:
        raise UsageError(
            f"--gate {named[0]}.{next(iter(parsed[named[0]]))}: `edgeport check` judges one artifact; pass the "
            "gate without a target (--gate KEY=VALUE)"
        )
    values = parsed.get(None, {})
    other = [key for key in values if key not in TOLERANCE_KEYS]
    if other:
        raise UsageError(
            f"--gate {other[0]}: `edgeport check` judges accuracy only; its gates: {', '.join(TOLERANCE_KEYS)}"
        )
    return values


def tolerance_text(tolerance) -> str:
    """A precision's gates in words: 'min_cosine 0.95, min_top1_agreement 90.0%'."""
    said = []
    for key, value in dataclasses.asdict(tolerance).items():
        if value is None:
            continue
        if key.endswith("_agreement"):
            said.append(f"{key} {wording.percent(value)}")
        elif key == "min_snr_db":
            said.append(f"{key} {value:g} dB")
        else:
            said.append(f"{key} {value:g}")
    return ", ".join(said) or "none"


def declared_inputs(artifact: Path) -> list[str] | None:
    """The input names the artifact's own file declares, for the formats edgeport writes (a .tflite signature,
    an .onnx graph, a TF.js model.json signature); None where the file does not say (the runtime decides)."""
    from edgeport.cli.artifacts import artifact_inputs

    specs = artifact_inputs(artifact)
    return None if specs is None else [spec.name for spec in specs]


def _refuse_misfit(artifact, model, signature, inputs=None, outputs=None, reference=None) -> None:
    """`edgeport check` of an artifact that does not fit the model (converted from another model or signature)
    is a usage error (exit 2), not a failed check: its inputs (as its file declares them) or its outputs (names
    and per-sample shapes, as the runtime returned them) differ from the signature's."""
    wanted = [spec.name for spec in signature.inputs]
    problem = ""
    if inputs is not None and sorted(inputs) != sorted(wanted):
        problem = f"it takes inputs {', '.join(sorted(inputs)) or '(none)'}, the signature {', '.join(sorted(wanted))}"
    elif outputs and reference:
        import numpy as np

        names, got = sorted(reference[0]), sorted(outputs[0])
        sizes = [(n, np.shape(reference[0][n]), np.shape(outputs[0][n])) for n in names if n in outputs[0]]
        wrong = [(n, want, have) for n, want, have in sizes if np.prod(want) != np.prod(have)]  # a layout may differ
        if not set(names) <= set(got):
            problem = f"it returns outputs {', '.join(got) or '(none)'}, the signature {', '.join(names)}"
        elif wrong:
            name, want, have = wrong[0]
            problem = f"its output {name!r} has shape {list(have)} per sample, the signature's {list(want)}"
    if problem:
        raise UsageError(
            f"{artifact} does not fit {model} (signature {signature.key!r}): {problem}; check it against the model "
            "and signature it was converted from"
        )


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
    from edgeport.errors import RuntimeFailure, StageTimedOut
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
    elif samples.data is not None:
        sample_set = _artifact_samples(artifact, samples)
    else:
        raise UsageError(
            "bench needs inputs: pass --data FILE (.npz keyed by input name, .npy, or an image folder) or --model "
            "(synthetic inputs from its signature)"
        )
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
        f"{artifact} on {stats.runtime_version}, {threads} thread(s), {stats.runs} runs: "
        f"p50 {wording.latency_ms(stats.p50_ms)}, p90 {wording.latency_ms(stats.p90_ms)}, "
        f"p99 {wording.latency_ms(stats.p99_ms)}, mean {wording.latency_ms(stats.mean_ms)} ± "
        f"{wording.latency_ms(stats.std_ms)}, min {wording.latency_ms(stats.min_ms)}, "
        f"max {wording.latency_ms(stats.max_ms)}; load {wording.latency_ms(stats.load_ms)}, "
        f"first {wording.latency_ms(stats.first_inference_ms)}, peak RSS {wording.size(stats.peak_rss_mb * (1 << 20))}"
    )
    stdout.print(
        f"95 % intervals: p50 {latency_cell(stats)}, p90 {latency_cell(stats, 'p90_ms')}, "
        f"p99 {latency_cell(stats, 'p99_ms')}"
    )
    for note in ((stats.describe_truncation(),) if stats.truncated else ()) + stats.notes:
        stdout.print(f"[yellow]note:[/] {note}")
    return ExitCode.OK


def _artifact_samples(artifact: Path, samples: SampleRequest):
    """`bench --data` without --model: the data conformed to the inputs the artifact itself declares (names,
    dtypes, shapes: axis 0 indexes samples, a batch axis added where a sample is one row), as a check conforms
    them to the SavedModel's signature."""
    from edgeport.cli.artifacts import artifact_inputs
    from edgeport.data import SampleSet, Signature
    from edgeport.model.samples import load_samples, read_npz
    from edgeport.run.request import check_path

    data = check_path(samples.data, "--data")
    if not data.exists():
        raise UsageError(f"--data {data} does not exist; pass an .npz, .npy or a folder of images")
    inputs = artifact_inputs(artifact)
    if inputs is None:  # a format edgeport cannot read: each array's rows are whole feeds, as given
        if data.suffix != ".npz":
            raise UsageError(
                f"{artifact.name} does not say what inputs it takes; pass --model (the SavedModel it came from), "
                "or --data as an .npz of whole feeds keyed by input name"
            )
        return SampleSet(arrays=read_npz(data), source=str(data), synthetic=False)
    return load_samples(Signature(artifact.name, inputs, ()), samples)


def _pct(value: float | None) -> str:
    return wording.percent(value)


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
