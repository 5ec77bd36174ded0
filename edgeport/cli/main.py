"""The `edgeport` command. Exit codes: 0 all gates pass, 1 a gate failed, 2 usage error, 3 load/conversion failed;
130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP: each stops every process of the run first (run/signals).

Only click is imported at start-up; everything else is imported by the command that needs it.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from edgeport.cli.plugin_options import PluginOptionsCommand, plugin_values
from edgeport.data import DEFAULT_SYNTHETIC_COUNT, LARGE_MODEL_SYNTHETIC_COUNT
from edgeport.errors import EdgeportError, UsageError


def _fail(message: str, code: int) -> None:
    message = message.replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever a path holds
    click.echo(f"edgeport: error: {message}", err=True)
    sys.exit(code)


def _interrupted(exc: BaseException | None) -> None:
    """Ctrl-C: exit 130; SIGTERM or SIGHUP (run/signals.Terminated): exit 128 + its number."""
    from edgeport.run.signals import Terminated

    if isinstance(exc, Terminated):
        _fail(f"terminated by {exc.name}", exc.exit_code)
    _fail("interrupted", 130)


def handles_errors(command):
    """Every EdgeportError becomes one line on stderr and its exit code; no tracebacks for user mistakes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgeportError as exc:
            _fail(exc.message, int(exc.exit_code))
        except KeyboardInterrupt as exc:
            _interrupted(exc)

    return wrapper


class OneLineErrors(click.Group):
    """click's own usage errors (a bad flag value, a missing argument) as one line too, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        from edgeport.run.signals import stop_on_signals  # light: the standard library

        stop_on_signals()  # SIGINT, SIGTERM, SIGHUP: every process of the run stopped, then the exception
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `edgeport` alone: its help
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
            _fail(f"{exc.format_message().rstrip('.')}{where}", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort as exc:  # a KeyboardInterrupt outside a command (click turns it into Abort)
            _interrupted(exc.__context__)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="edgeport")
def main() -> None:
    """Convert a TensorFlow SavedModel for the edge, check accuracy on the real runtime, benchmark latency.

    \b
    Exit codes: 0 every gate passed, 1 an accuracy or latency gate failed,
                2 usage error, 3 the model could not be loaded or a conversion failed.
    """


def sample_options(command):
    options = [
        click.option(
            "--data",
            type=click.Path(path_type=Path),
            help=".npz keyed by input name, .npy (one input), or an image folder.",
        ),
        click.option("--preprocess", help="Image folder recipe: scale=1/255,offset=0,channels=rgb|bgr."),
        click.option(
            "--samples",
            "sample_count",
            type=click.IntRange(1),
            default=None,
            help=f"Synthetic samples when no --data [default: {DEFAULT_SYNTHETIC_COUNT}; "
            f"{LARGE_MODEL_SYNTHETIC_COUNT} for a large model].",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of synthetic samples."),
        click.option("--input-range", multiple=True, metavar="NAME=LO:HI", help="Range of synthetic values."),
        click.option("--input-shape", multiple=True, metavar="NAME=D0,D1,..", help="Shape for dynamic dims."),
        click.option("--signature", help="Signature key (default serving_default, or the only one)."),
        click.option("--threads", type=click.IntRange(1), default=None, help="Runtime threads (default 1)."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON for scripts."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


stage_timeout_option = click.option(
    "--stage-timeout",
    "stage_timeout",
    multiple=True,
    metavar="[STAGE=]SECONDS",
    help="Time limit of every stage, or STAGE=SECONDS for one (load, convert, check, bench; repeatable); a stage "
    "past it fails its own target; check and bench also bound each call on a --device (stopped there too). "
    "[default: load 600, convert 900, check 600, bench 600]",
)


def _stage_timeouts(values):
    from edgeport.run.request import parse_stage_timeouts

    return parse_stage_timeouts(list(values))


trust_option = click.option(
    "--trust-model",
    is_flag=True,
    default=None,
    help="Run a model the pre-load scan flags (file system, writers, py_func, unknown ops); the report says so.",
)


def _sample_request(data, preprocess, sample_count, seed, input_range, input_shape):
    from edgeport.model.samples import Preprocess, SampleRequest, parse_input_ranges, parse_input_shapes

    return SampleRequest(
        data=data,
        preprocess=Preprocess.parse(preprocess),
        count=sample_count or DEFAULT_SYNTHETIC_COUNT,
        count_chosen=sample_count is not None,
        seed=seed,
        input_ranges=parse_input_ranges(input_range),
        input_shapes=parse_input_shapes(input_shape),
    )


def threshold_options(command):
    """Regression thresholds shared by `compare` and `convert --baseline`; passed on as `thresholds` (a dict)."""
    from edgeport.report.regression import Thresholds  # light: standard library only

    defaults = Thresholds()
    options = [
        ("--latency-threshold", "latency", "Allowed relative growth of p50/p90, on top of the noise allowance"),
        ("--noise-allowance", "noise", "Multiples of the runs' measured spread added to the latency threshold"),
        ("--latency-floor-ms", "latency_floor_ms", "Latency changes smaller than this (ms) are never a regression"),
        ("--accuracy-threshold", "accuracy", "Allowed absolute drop of the worst cosine similarity"),
        ("--agreement-threshold", "agreement", "Allowed absolute drop of top-1/top-5 agreement"),
        ("--snr-threshold", "snr_db", "Allowed SNR drop in dB"),
        ("--size-threshold", "size", "Allowed relative growth of the artifact size"),
    ]
    for flag, key, text in reversed(options):
        command = click.option(
            flag, f"threshold_{key}", type=float, default=None, help=f"{text} [default: {getattr(defaults, key):g}]."
        )(command)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        thresholds = {key[len("threshold_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("threshold_")}
        return command(*args, thresholds={k: v for k, v in thresholds.items() if v is not None}, **kwargs)

    return wrapper


@main.command(cls=PluginOptionsCommand)
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("-t", "--target", "targets", multiple=True, help="Target, e.g. tflite, tflite:int8, onnx, tfjs, tflm.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output folder [default: edgeport-out].")
@click.option(
    "--force",
    is_flag=True,
    help="Write into an -o folder of yours that is not empty: edgeport adds its own files beside yours and "
    "still touches nothing it did not make.",
)
@click.option("--config", type=click.Path(path_type=Path), help="edgeport.toml with model, data, targets, gates.")
@sample_options
@click.option(
    "--calibration", type=click.Path(path_type=Path), help="Calibration samples (default: the --data samples)."
)
@click.option(
    "--labels",
    metavar="FILE[:KEY]",
    help="Class labels of the --data samples (.npy of ints, FILE.npz:KEY, or a KEY of the --data .npz): top-1/top-5 "
    "accuracy of the SavedModel and every artifact; gate max_accuracy_drop per target.",
)
@click.option(
    "--layers",
    is_flag=True,
    help="Compare every layer's output on the runtime with the SavedModel's (also done when a check fails).",
)
@click.option("--jobs", type=click.IntRange(1), default=None, help="Convert this many targets in parallel.")
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="What any one edgeport process (a model service, a check, a benchmark, with what it starts) may hold, "
    "e.g. 8GB, or off; past it the stage is stopped and fails its target. Default: the machine's memory less 10% "
    "(at least 1 GB).",
)
@click.option(
    "--sequential",
    is_flag=True,
    help="Run every stage in turn (by default a target is checked on a free core while the next one converts; "
    "benchmarks always run alone).",
)
@click.option(
    "-O",
    "--option",
    "extra_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any converter option (see the sections per converter below).",
)
@click.option(
    "--gate",
    "gates",
    multiple=True,
    metavar="[TARGET.]KEY=VALUE",
    help="A gate or budget, for every target or one: min_cosine, min_snr_db, max_abs_error, min_top1_agreement, "
    "min_top5_agreement, max_accuracy_drop, max_p50_ms..., max_size_bytes, max_<measurement> (repeatable; over "
    "the config's), e.g. --gate min_cosine=0.999 --gate tflite:int8.min_top1_agreement=0.95.",
)
@click.option("--backend", help="Runtime backend (tfjs: wasm, cpu, webgl).")
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="NAME|ssh://USER@HOST[:PORT]",
    help="Also check and benchmark each artifact on this device over ssh: a [device.NAME] of the config, or "
    "ssh://user@host:port (repeatable; default: every [device.*] the config declares).",
)
@click.option("--min-runs", type=click.IntRange(1), help="Benchmark: minimum timed runs.")
@click.option("--min-seconds", type=float, help="Benchmark: minimum timed seconds.")
@click.option("--max-seconds", type=float, help="Benchmark: cap on warm-up and timed seconds together.")
@click.option("--warmup-runs", type=click.IntRange(0), help="Benchmark: warm-up runs.")
@click.option(
    "--ci-half-width",
    type=click.FloatRange(0, 1),
    help="Benchmark: stop once the p50's 95 % interval is within ± this fraction of it [default: 0.02]; 0: stop at "
    "--min-runs and --min-seconds.",
)
@stage_timeout_option
@click.option("--no-check", is_flag=True, help="Skip the accuracy check.")
@click.option("--no-bench", is_flag=True, help="Skip the latency benchmark.")
@click.option("--no-baseline", is_flag=True, help="Do not time the SavedModel on TensorFlow.")
@click.option("--strict", is_flag=True, default=None, help="A target that could not be checked fails the run.")
@click.option("--legacy", is_flag=True, help="Load the SavedModel in a v1 session (TF1 graphs).")
@trust_option
@click.option(
    "--baseline",
    "baseline_report",
    type=click.Path(path_type=Path),
    help="An earlier run's report.json: exit 1 on a regression against it (see `edgeport compare`).",
)
@click.option(
    "--history",
    "history_path",
    type=click.Path(path_type=Path),
    help="SQLite run history to append to [default: $EDGEPORT_HOME/history.db, else "
    "$XDG_DATA_HOME/edgeport/history.db, else ~/.local/share/edgeport/history.db].",
)
@click.option("--no-history", is_flag=True, help="Do not record this run in the history.")
@threshold_options
@handles_errors
def convert(
    model,
    targets,
    output,
    force,
    config,
    data,
    preprocess,
    sample_count,
    seed,
    input_range,
    input_shape,
    signature,
    threads,
    as_json,
    calibration,
    labels,
    layers,
    sequential,
    max_memory,
    jobs,
    extra_options,
    gates,
    backend,
    devices,
    min_runs,
    min_seconds,
    max_seconds,
    warmup_runs,
    ci_half_width,
    stage_timeout,
    no_check,
    no_bench,
    no_baseline,
    strict,
    legacy,
    trust_model,
    baseline_report,
    history_path,
    no_history,
    thresholds,
    **flag_options,
):
    """Convert MODEL for each target, check accuracy on its runtime, benchmark it, write the report."""
    from edgeport.cli.commands import build_request, finish_run, print_report, run_with_progress
    from edgeport.report.regression import load_baseline

    shared = plugin_values(flag_options)
    for item in extra_options:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"-O {item!r}: expected KEY=VALUE")
        shared[key.strip().replace("-", "_")] = value
    request = build_request(
        model=model,
        targets=targets,
        output=output,
        config_path=config,
        samples=_sample_request(data, preprocess, sample_count, seed, input_range, input_shape),
        calibration=calibration,
        signature=signature,
        threads=threads,
        jobs=jobs,
        shared_options=shared,
        backend=backend,
        protocol_overrides={
            "min_runs": min_runs,
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "warmup_runs": warmup_runs,
            "ci_half_width": ci_half_width,
        },
        check=not no_check,
        bench=not no_bench,
        baseline=not no_baseline,
        strict=strict,
        legacy=legacy,
        trust_model=trust_model,
        stage_timeout=stage_timeout,
        labels=labels,
        layers=layers,
        sequential=sequential,
        max_memory=max_memory,
        gates=gates,
    )
    if force:
        import dataclasses

        request = dataclasses.replace(request, force=True)
    from edgeport.cli.setup import devices_from

    if resolved_devices := devices_from(devices, config):  # --device, or the config's [device.*] (edgeport/device)
        import dataclasses

        request = dataclasses.replace(request, devices=resolved_devices)
    baseline = load_baseline(baseline_report, thresholds)  # a bad baseline fails before the run, not after
    if not no_history:  # so does a damaged history (read only: the file is left as it is)
        from edgeport.report.history import DEFAULT_HISTORY, check_history

        check_history(history_path or DEFAULT_HISTORY)
    report = run_with_progress(request, quiet=as_json)
    print_report(report, request.out, as_json=as_json)
    if report.devices and not as_json:
        from edgeport.cli.setup import print_device_rows

        print_device_rows(report)
    sys.exit(
        finish_run(
            report,
            request.out,
            baseline=baseline,
            history_path=history_path,
            record_history=not no_history,
            as_json=as_json,
        )
    )


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--signature", help="Signature key (default serving_default, or the only one).")
@click.option("-t", "--target", "targets", multiple=True, help="Pre-flight only these target families.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--legacy", is_flag=True, help="Load the SavedModel in a v1 session (TF1 graphs).")
@trust_option
@handles_errors
def inspect(model, signature, targets, as_json, legacy, trust_model):
    """Show MODEL's pre-load scan, signatures, tensors, size, ops and a per-target pre-flight (no conversion).

    A model the scan flags is not loaded (loading runs its initializers) unless --trust-model is given.
    """
    from edgeport.model.inspection import inspect_model, print_inspection

    result = inspect_model(model, signature=signature, families=targets, force_v1=legacy, trust_model=bool(trust_model))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_inspection(result)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--model", "model", required=True, type=click.Path(path_type=Path), help="The SavedModel it came from.")
@click.option("--runtime", help="Runtime (default: by the artifact's file type).")
@click.option(
    "--precision",
    default=None,
    help="Tolerance defaults: fp32, fp16, dynamic, int8... [default: the artifact's: its run's report.json or "
    "folder marker, else read from the file, else fp32]",
)
@click.option(
    "--gate",
    "gates",
    multiple=True,
    metavar="KEY=VALUE",
    help="A tolerance over the precision's defaults, e.g. min_cosine=0.99 (repeatable).",
)
@click.option("--backend", help="Runtime backend (tfjs: wasm, cpu, webgl).")
@sample_options
@stage_timeout_option
@trust_option
@handles_errors
def check(
    artifact,
    model,
    runtime,
    precision,
    gates,
    backend,
    data,
    preprocess,
    sample_count,
    seed,
    input_range,
    input_shape,
    signature,
    threads,
    as_json,
    stage_timeout,
    trust_model,
):
    """Check ARTIFACT's outputs against the SavedModel's on the same inputs."""
    from edgeport.cli.commands import check_artifact

    code = check_artifact(
        artifact=artifact,
        model=model,
        runtime_name=runtime,
        precision=precision,
        backend=backend,
        samples=_sample_request(data, preprocess, sample_count, seed, input_range, input_shape),
        signature=signature,
        threads=threads or 1,
        as_json=as_json,
        trust_model=bool(trust_model),
        timeouts=_stage_timeouts(stage_timeout),
        gates=gates,
    )
    sys.exit(code)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="The SavedModel (its signature, for synthetic inputs); with --data the artifact's own inputs suffice.",
)
@click.option("--runtime", help="Runtime (default: by the artifact's file type).")
@click.option("--backend", help="Runtime backend (tfjs: wasm, cpu, webgl).")
@click.option("--min-runs", type=click.IntRange(1), help="Minimum timed runs.")
@click.option("--min-seconds", type=float, help="Minimum timed seconds.")
@click.option("--max-seconds", type=float, help="Cap on warm-up and timed seconds.")
@click.option(
    "--ci-half-width",
    type=click.FloatRange(0, 1),
    help="Stop once the p50's 95 % interval is within ± this fraction of it [default: 0.02]; 0: at --min-runs.",
)
@sample_options
@stage_timeout_option
@trust_option
@handles_errors
def bench(
    artifact,
    model,
    runtime,
    backend,
    min_runs,
    min_seconds,
    max_seconds,
    ci_half_width,
    data,
    preprocess,
    sample_count,
    seed,
    input_range,
    input_shape,
    signature,
    threads,
    as_json,
    stage_timeout,
    trust_model,
):
    """Benchmark ARTIFACT on its runtime with the timing protocol (needs --data or --model for inputs).

    --data is conformed to the inputs ARTIFACT declares (names, dtypes, shapes: a batch axis added where a
    sample is one row), or to --model's signature when given."""
    from edgeport.cli.commands import bench_artifact

    code = bench_artifact(
        artifact=artifact,
        model=model,
        runtime_name=runtime,
        backend=backend,
        samples=_sample_request(data, preprocess, sample_count, seed, input_range, input_shape),
        signature=signature,
        threads=threads or 1,
        as_json=as_json,
        protocol_overrides={
            "min_runs": min_runs,
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "ci_half_width": ci_half_width,
        },
        trust_model=bool(trust_model),
        timeouts=_stage_timeouts(stage_timeout),
    )
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handles_errors
def targets(as_json):
    """List the registered converters (targets) and runtimes, and whether each is available here."""
    from edgeport.cli.commands import list_targets

    list_targets(as_json)


@main.command()
@click.option(
    "-t", "--target", "targets", multiple=True, help="Only what these targets (or runtimes) need [default: all]."
)
@click.option("--check", "check_only", is_flag=True, help="Only report what is missing; install nothing.")
@handles_errors
def setup(targets, check_only):
    """Install what the targets need, outside site-packages: Python extras, the TF.js npm packages, Chromium.

    \b
    TF.js packages go to $EDGEPORT_HOME (default: ~/.cache/edgeport), installed with npm ci from the lockfile
    shipped with edgeport. System packages (chromium, nodejs; with no --target also openssh-client and
    openssh-server, for --device and its tests) are installed with apt when run as root;
    otherwise the command to run is printed. Exit 0 when everything asked for is installed, 1 otherwise.
    """
    from edgeport.cli.setup import run_setup

    sys.exit(run_setup(targets, check_only=check_only, echo=click.echo))


@main.command()
@click.option("-t", "--target", "targets", multiple=True, help="The targets (or runtimes) that must be available.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--device",
    metavar="NAME|ssh://USER@HOST[:PORT]",
    help="Probe this device over ssh instead: architecture, CPU, memory, OS, its runtimes, the workdir.",
)
@click.option(
    "--config", type=click.Path(path_type=Path), help="edgeport.toml declaring the device [default: ./edgeport.toml]."
)
@handles_errors
def doctor(targets, as_json, device, config):
    """One table of every converter and runtime: available, version, what is missing, the command that fixes it.

    Exit 0 when everything the --target options need is available (default: every registered plug-in). With
    --device: one table of the device; exit 0 when it can run edgeport's checks, 1 otherwise.
    """
    if device:
        from edgeport.cli.setup import run_device_doctor

        sys.exit(run_device_doctor(device, config, as_json, click.echo))
    from edgeport.cli.commands import print_doctor

    sys.exit(print_doctor(targets, as_json))


@main.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@threshold_options
@click.option("--all", "show_all", is_flag=True, help="List every compared metric, not only what moved.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@handles_errors
def compare(old, new, thresholds, show_all, as_json):
    """Compare two runs' report.json (OLD is the baseline): exit 1 if accuracy, latency or size regressed."""
    from edgeport.report.regression import compare_command

    sys.exit(compare_command(old, new, thresholds=thresholds, show_all=show_all, as_json=as_json))


@main.command()
@click.option(
    "--history",
    "history_path",
    type=click.Path(path_type=Path),
    help="History database [default: $EDGEPORT_HOME/history.db, else $XDG_DATA_HOME/edgeport/history.db, else "
    "~/.local/share/edgeport/history.db].",
)
@click.option("--model", help="Only this SavedModel (its path, or part of it).")
@click.option("-t", "--target", help="Only this target.")
@click.option("-n", "--last", type=click.IntRange(1), help="Only the last N runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@handles_errors
def history(history_path, model, target, last, as_json):
    """Show the trend of size, accuracy and p50 per target over the recorded `convert` runs."""
    from edgeport.report.history import history_command

    history_command(history_path, model=model, target=target, last=last, as_json=as_json)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output folder all nodes reach.")
@click.option("--address", help="Ray cluster: HOST:PORT of the head, or auto [default: Ray started in-process].")
@click.option("--resume", is_flag=True, help="Reuse models whose report is complete and whose inputs are unchanged.")
@click.option("--max-parallel", type=click.IntRange(1), help="Models in flight [default: the cluster's CPUs].")
@click.option("--retries", type=click.IntRange(0), default=2, show_default=True, help="Retries of a lost task.")
@click.option("--no-check", is_flag=True, help="Skip the accuracy checks.")
@click.option("--no-bench", is_flag=True, help="Skip the latency benchmarks.")
@click.option("--history", "history_path", type=click.Path(path_type=Path), help="SQLite run history to append to.")
@click.option("--no-history", is_flag=True, help="Do not record the runs in the history.")
@click.option("--json", "as_json", is_flag=True, help="Print fleet.json for scripts.")
@handles_errors
def fleet(
    manifest, output, address, resume, max_parallel, retries, no_check, no_bench, history_path, no_history, as_json
):
    """Convert, check and benchmark every model of MANIFEST (TOML) on Ray; exit 4 on an infrastructure failure."""
    from edgeport.fleet.command import fleet_command

    sys.exit(
        fleet_command(
            manifest=manifest,
            output=output,
            address=address,
            resume=resume,
            max_parallel=max_parallel,
            retries=retries,
            bench=not no_bench,
            check=not no_check,
            history_path=history_path,
            record_history=not no_history,
            as_json=as_json,
        )
    )


if __name__ == "__main__":  # pragma: no cover
    main()
