"""`edgeport fleet MANIFEST -o OUT`: what the command does, kept out of cli/main.py (which imports click only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from edgeport.errors import UsageError

stderr = Console(stderr=True)


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("edgeport fleet needs Ray: pip install 'edgeport[fleet]'") from None


def fleet_command(
    *,
    manifest: Path,
    output: Path,
    address: str | None,
    resume: bool,
    max_parallel: int | None,
    retries: int,
    bench: bool,
    check: bool,
    history_path: Path | None,
    record_history: bool,
    as_json: bool,
) -> int:
    from edgeport.fleet.driver import ModelRecord, run_fleet
    from edgeport.fleet.manifest import load_manifest
    from edgeport.fleet.outputs import claim_outputs, fleet_dict, write_outputs
    from edgeport.fleet.progress import FleetProgress
    from edgeport.report.history import DEFAULT_HISTORY, record_run
    from edgeport.run.pipeline import prepare_output

    require_ray()
    out = Path(output).resolve()
    fleet = load_manifest(Path(manifest).resolve(), out, bench=bench, check=check)
    prepare_output(out)
    claim_outputs(fleet, out)  # OUT and each OUT/<model> new, empty or edgeport's: the user's files stay
    history = history_path or fleet.history or DEFAULT_HISTORY

    def record(item: ModelRecord) -> None:
        if record_history and item.report is not None:
            record_run(history, item.report, output=out / item.name, console=stderr)

    with FleetProgress(stderr, enabled=not as_json) as progress:
        result = run_fleet(
            fleet,
            out,
            address=address,
            resume=resume,
            max_parallel=max_parallel,
            retries=retries,
            bench=bench,
            progress=progress,
            record=record,
        )
    written = write_outputs(result)
    if as_json:
        sys.stdout.write(json.dumps(fleet_dict(result), indent=2) + "\n")
    else:
        sys.stdout.write(written["summary"].read_text(encoding="utf-8"))
        sys.stdout.write(f"fleet: {written['json']}, {written['html']} (exit {result.exit_code})\n")
    return result.exit_code
