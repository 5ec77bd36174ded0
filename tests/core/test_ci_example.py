"""The GitHub Actions example (examples/github-actions/edgeport.yml) run here, step by step, as written.

Two pushes to the default branch, each in a fresh workspace (a copy of the example's files): the first has no
baseline (the convert step converts without --baseline and says so, exit 0) and saves its report to the cache;
the second restores it and converts with --baseline (exit 0, comparison.json written). Each `run:` step is
run by bash from the workflow's own text, in order, with `if:` honoured (always(), success(), the default
branch).

Not run here, and why:
- the GitHub-only actions (`uses:`): checkout (the workspace is a copy of the checkout's examples/),
  setup-python and setup-node (this venv and this machine's Node.js), upload-artifact, action-junit-report;
  cache/restore and cache/save are stood in for by a folder that outlives the workspaces (the same paths and
  the same "newest baseline, or none" behaviour);
- the install step's `apt-get` and `pip install` lines (`make test` installed the same extras into this venv:
  checked below against pyproject.toml); its `edgeport setup` and `edgeport doctor` lines are run;
- the Train step: the session's `digits` fixture is the same `train_digits.train` output, copied to where the
  step writes it (training takes a minute on 2 cores; it runs once per session for every digits test).
The workspace's copy of examples/edgeport.toml (the part a user adapts) keeps its gates and tables but
converts two of its targets with a short timing protocol (`FAST_CONFIG`): all eight, twice, took 7 minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml  # PyYAML: in [dev]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github-actions" / "edgeport.yml"
STEP_TIMEOUT_S = 600
GITHUB_ONLY_ACTIONS = (
    "actions/checkout",
    "actions/setup-python",
    "actions/setup-node",
    "actions/upload-artifact",
    "mikepenz/action-junit-report",
)
CACHE_ACTIONS = ("actions/cache/restore", "actions/cache/save")
NOT_RUN_LINES = re.compile(r"^\s*(sudo\s+)?(apt-get|pip)\s")
TRAIN_STEP = "python examples/train_digits.py --out examples/digits"
FAST_CONFIG = {
    r"(?m)^targets = \[.*\]$": 'targets = ["tflite:int8", "onnx"]',
    r"(?m)^min_runs = \d+$": "min_runs = 20",
    r"(?m)^min_seconds = [\d.]+$": "min_seconds = 0.2",
    r"(?m)^max_seconds = [\d.]+$": "max_seconds = 2.0",
}


def fast_config(path: Path) -> None:
    text = path.read_text()
    for pattern, replacement in FAST_CONFIG.items():
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{path}: {pattern} matched {count} times"
    path.write_text(text)


def steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return job["steps"]


def step_runs(step: dict, succeeded: bool) -> bool:
    """The step's `if:` on a push to the default branch (github.ref_name == the default branch)."""
    condition = str(step.get("if", "success()"))
    if condition == "always()":
        return True
    assert condition in ("success()", "success() && github.ref_name == github.event.repository.default_branch"), (
        f"an `if:` this test does not understand: {condition}"
    )
    return succeeded  # both pushes are to the default branch


def action_of(step: dict) -> str:
    return str(step["uses"]).split("@")[0]


def run_workflow(workspace: Path, cache: Path, digits: Path) -> list[tuple[str, int, str]]:
    """Run every step in `workspace`; returns (step name, exit code, output) of the steps that ran."""
    shutil.copytree(ROOT / "examples", workspace / "examples", ignore=shutil.ignore_patterns("digits"))
    fast_config(workspace / "examples" / "edgeport.toml")
    summary = workspace.parent / f"{workspace.name}-step-summary.md"
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    ran: list[tuple[str, int, str]] = []
    succeeded = True
    for step in steps():
        if not step_runs(step, succeeded):
            continue
        if "uses" in step:
            action = action_of(step)
            if action == "actions/cache/restore" and (cache / "baseline").is_dir():
                shutil.copytree(cache / "baseline", workspace / step["with"]["path"])
            elif action == "actions/cache/save":
                shutil.rmtree(cache / "baseline", ignore_errors=True)
                shutil.copytree(workspace / step["with"]["path"], cache / "baseline")
            else:
                assert action in GITHUB_ONLY_ACTIONS + CACHE_ACTIONS, (
                    f"an action this test does not stand in for: {action}"
                )
            continue
        script = step["run"]
        if script.strip() == TRAIN_STEP:
            shutil.copytree(digits, workspace / "examples" / "digits")
            continue
        script = "\n".join(line for line in script.splitlines() if not NOT_RUN_LINES.match(line))
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=workspace,
            env=environment,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        ran.append((step.get("name", script.splitlines()[0]), done.returncode, done.stdout + done.stderr))
        succeeded = succeeded and done.returncode == 0
    return ran


def by_name(ran, start: str) -> tuple[int, str]:
    (found,) = [(code, output) for name, code, output in ran if name.startswith(start)]
    return found


def test_workflow_runs_as_written_first_without_then_with_a_baseline(digits, tmp_path):
    cache = tmp_path / "actions-cache"
    cache.mkdir()

    first = run_workflow(tmp_path / "push-1", cache, digits)
    assert [code for _, code, _ in first] == [0] * len(first), first
    code, output = by_name(first, "Convert, check, benchmark")
    assert "::notice title=edgeport::no baseline yet" in output
    assert not (tmp_path / "push-1" / "edgeport-out" / "comparison.json").exists()
    assert (cache / "baseline" / "report.json").is_file()  # saved for the next run
    assert "edgeport" in (tmp_path / "push-1-step-summary.md").read_text()
    assert [name for name, _, _ in first] == [
        "Install edgeport and its runtimes",
        "Convert, check, benchmark (exit 1 on a failed gate or a regression, 3 on a failed conversion)",
        "Job summary",
        "Keep this report as the baseline (default branch, passing runs only)",
    ]

    second = run_workflow(tmp_path / "push-2", cache, digits)
    assert [code for _, code, _ in second] == [0] * len(second), second
    code, output = by_name(second, "Convert, check, benchmark")
    assert "no baseline yet" not in output
    comparison = tmp_path / "push-2" / "edgeport-out" / "comparison.json"
    assert comparison.is_file(), output
    assert "compared with the baseline baseline/report.json" in output and "no regression" in output, output
    # the cache now holds the second push's report, for the next run
    assert (tmp_path / "push-2" / "baseline" / "report.json").read_bytes() == (
        tmp_path / "push-2" / "edgeport-out" / "report.json"
    ).read_bytes()


def test_the_workflow_installs_from_the_checkout_with_real_extras_after_apt_update():
    (install,) = [step["run"] for step in steps() if step.get("name") == "Install edgeport and its runtimes"]
    lines = [line.split("#")[0].strip() for line in install.splitlines() if line.strip()]
    assert lines[0] == "sudo apt-get update -qq"
    apt = [line for line in lines if "apt-get install" in line]
    assert apt and all("--no-install-recommends" in line for line in apt)
    (pip,) = [line for line in lines if line.startswith("pip install")]
    extras = re.fullmatch(r'pip install "\.\[([a-z,]+)\]"', pip)
    assert extras, pip  # edgeport from the checkout itself, never a placeholder repository
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.group(1).split(",")) <= set(declared)


def test_make_test_installs_every_extra_and_dev_only_the_tools():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (line,) = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("TEST_EXTRAS :=")]
    installed = set(line.split(":=")[1].strip().split(","))
    assert installed == set(declared) - {"all"}, "make test must install every extra: the suite fails without one"
    assert not any(spec.startswith("edgeport[") for spec in declared["dev"]), declared["dev"]
