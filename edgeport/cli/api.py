"""The Python API, mirroring the CLI: `edgeport.convert(model, targets=[...], ...) -> Report`."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgeport.contracts import TargetSpec, TimingProtocol
from edgeport.errors import UsageError
from edgeport.report.files import Report
from edgeport.run.request import RunRequest, TargetConfig, split_target_settings
from edgeport.model.samples import Preprocess, SampleRequest


def target_configs(targets: Iterable[str], settings: Mapping[str, Mapping[str, Any]] | None = None,
                   shared_options: Mapping[str, Any] | None = None) -> tuple[TargetConfig, ...]:
    """Targets with their per-target settings (config tables) and options shared by all (CLI flags).

    A shared option goes to every target whose converter declares it; an option no target takes is an error.
    """
    from edgeport.run.options import option_names  # noqa: PLC0415
    from edgeport.run.registry import registry  # noqa: PLC0415

    settings = dict(settings or {})
    names = list(dict.fromkeys([*targets, *settings]))
    configs, used = [], set()
    for name in names:
        spec = TargetSpec.parse(name)
        converter = registry().resolve(spec)[0]
        known = option_names(converter.Options)
        config = split_target_settings(name, settings.get(name, {}), known)
        shared = {k: v for k, v in (shared_options or {}).items() if k in known and k not in config.options}
        used.update(k for k in (shared_options or {}) if k in known)
        configs.append(TargetConfig(spec=config.spec, options={**shared, **config.options},
                                    tolerance=config.tolerance, budgets=config.budgets, backend=config.backend))
    unused = sorted(set(shared_options or {}) - used)
    if unused and configs:
        flag = "--" + unused[0].replace("_", "-")
        raise UsageError(f"{flag} does not apply to any selected target ({', '.join(names)})")
    return tuple(configs)


def convert(
    model: str | Path,
    *,
    targets: Iterable[str],
    output: str | Path = "edgeport-out",
    data: str | Path | None = None,
    calibration: str | Path | None = None,
    signature: str | None = None,
    options: Mapping[str, Any] | None = None,
    target_settings: Mapping[str, Mapping[str, Any]] | None = None,
    threads: int = 1,
    jobs: int = 1,
    samples: int = 8,
    seed: int = 0,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    preprocess: Preprocess | None = None,
    protocol: TimingProtocol | None = None,
    check: bool = True,
    bench: bool = True,
    baseline: bool = True,
    strict: bool = False,
    baseline_report: str | Path | None = None,
    history: str | Path | None = None,
    progress=None,
) -> Report:
    """Convert, check and benchmark; returns the Report (also written to `output`).

    `baseline`: time the SavedModel on TensorFlow as the baseline row (CLI: --no-baseline turns it off).
    `baseline_report`: an earlier report.json; regressions against it are written to OUTPUT/comparison.json and make
    the returned report's exit_code 1, as `edgeport convert --baseline` does. `history`: a SQLite file the
    run's summary is appended to (the CLI's default is .edgeport/history.db).
    """
    from edgeport.run import pipeline  # noqa: PLC0415

    sample_request = SampleRequest(data=Path(data) if data else None, preprocess=preprocess or Preprocess(),
                                   count=samples, seed=seed, input_ranges=dict(input_ranges or {}),
                                   input_shapes=dict(input_shapes or {}))
    calibration_request = None
    if calibration:
        calibration_request = SampleRequest(data=Path(calibration), preprocess=sample_request.preprocess,
                                            input_shapes=sample_request.input_shapes)
    request = RunRequest(
        model=Path(model), targets=target_configs(targets, target_settings, options), out=Path(output),
        signature=signature, samples=sample_request, calibration=calibration_request, threads=threads, jobs=jobs,
        protocol=protocol or TimingProtocol(), check=check, bench=bench, baseline=baseline, strict=strict,
    )
    earlier = _load_baseline(baseline_report)
    report = pipeline.run(request, progress or pipeline._quiet)  # noqa: SLF001
    if history is not None:
        from edgeport.report.history import append_run  # noqa: PLC0415

        append_run(Path(history), report.to_dict(), output=request.out)
    if earlier is None:
        return report
    return _compared(report, earlier, request.out)


def _load_baseline(path: str | Path | None):
    if path is None:
        return None
    from edgeport.report.regression import load_baseline  # noqa: PLC0415

    return load_baseline(Path(path), {})


def _compared(report: Report, baseline, out: Path) -> Report:
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415

    from edgeport.report.regression import compare_reports  # noqa: PLC0415
    from edgeport.report.files import atomic_write  # noqa: PLC0415

    comparison = compare_reports(baseline.report, report.to_dict(), baseline.thresholds, old_name=str(baseline.path),
                                 new_name=str(out / "report.json"))
    atomic_write(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    return dataclasses.replace(report, exit_code=report.exit_code or int(comparison.exit_code))
