"""`edgeport setup` installs what the chosen targets need; `edgeport doctor` shows what is there.

Both read the plug-ins' `requirements()`. Setup installs, outside site-packages: Python extras with this
interpreter's pip, the TF.js npm packages from the shipped lockfile into edgeport's cache, and system
programs (Chromium, Node.js) through apt when run as root; otherwise it prints the exact command. Installed
requirements are left alone, so running it twice does nothing the second time.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from edgeport.contracts import Converter, Runtime
from edgeport.data import TargetSpec
from edgeport.errors import ExitCode
from edgeport.run.registry import registry
from edgeport.run.requirements import APT_OPTIONS, NPM, PYTHON, SYSTEM, Requirement

PIP_TIMEOUT_S = 1800
APT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Plugin:
    kind: str  # "converter" or "runtime"
    name: str
    plugin: Converter | Runtime


@dataclass(frozen=True)
class Outcome:
    requirement: Requirement
    action: str  # "present", "installed", "missing", "failed"
    detail: str = ""


def chosen_plugins(targets: Iterable[str]) -> list[Plugin]:
    """The converters and runtimes that `targets` name (target specs or runtime names); all when none."""
    reg = registry()
    names = list(targets)
    if not names:
        return [Plugin("converter", n, c) for n, c in reg.converters().items()] + [
            Plugin("runtime", n, r) for n, r in reg.runtimes().items()
        ]
    chosen: dict[tuple[str, str], Plugin] = {}
    for name in names:
        if name in reg.runtimes() and TargetSpec.parse(name).converter not in reg.converters():
            chosen[("runtime", name)] = Plugin("runtime", name, reg.runtime(name))
            continue
        converter, runtime = reg.resolve(TargetSpec.parse(name))
        chosen[("converter", converter.name)] = Plugin("converter", converter.name, converter)
        chosen[("runtime", runtime.name)] = Plugin("runtime", runtime.name, runtime)
    return list(chosen.values())


def requirements_of(plugins: list[Plugin], devices: bool = False) -> list[Requirement]:
    """`devices`: also the OpenSSH client --device needs (`edgeport setup` with no target installs everything)."""
    unique: dict[tuple[str, str], Requirement] = {}
    for plugin in plugins:
        for requirement in plugin.plugin.requirements():
            unique.setdefault((requirement.kind, requirement.name), requirement)
    for requirement in device_requirements() if devices else ():
        unique.setdefault((requirement.kind, requirement.name), requirement)
    return list(unique.values())


def run_setup(targets: Iterable[str], *, check_only: bool, echo) -> int:
    targets = list(targets)
    plugins = chosen_plugins(targets)
    devices = not targets  # everything: the OpenSSH client for --device too
    outcomes = []
    for requirement in requirements_of(plugins, devices):
        if requirement.present:
            outcomes.append(Outcome(requirement, "present", requirement.found or ""))
        elif check_only:
            outcomes.append(Outcome(requirement, "missing", requirement.fix))
        else:
            outcomes.append(_install(requirement, echo))
    if any(o.action == "installed" for o in outcomes):
        outcomes = _confirmed(outcomes, requirements_of(plugins, devices))
    for outcome in outcomes:
        r = outcome.requirement
        echo(f"{outcome.action:>9}  {r.name} ({r.kind}){': ' + outcome.detail if outcome.detail else ''}")
    missing = [o for o in outcomes if o.action in ("missing", "failed")]
    if not outcomes:
        echo("nothing to install for the chosen targets")
    return int(ExitCode.GATE_FAILED) if missing else int(ExitCode.OK)


def _confirmed(outcomes: list[Outcome], now: list[Requirement]) -> list[Outcome]:
    """An install counts only when the requirement is found afterwards (a PATH or an override can hide it)."""
    present = {(r.kind, r.name) for r in now if r.present}
    return [
        dataclasses.replace(o, action="failed", detail=f"installed, but still not found; {o.requirement.fix}")
        if o.action == "installed" and (o.requirement.kind, o.requirement.name) not in present
        else o
        for o in outcomes
    ]


def _install(requirement: Requirement, echo) -> Outcome:
    echo(f"installing {requirement.name} ({requirement.kind}) ...")
    try:
        if requirement.kind == PYTHON:
            _run([sys.executable, "-m", "pip", "install", "-q", *requirement.install], PIP_TIMEOUT_S)
        elif requirement.kind == SYSTEM:
            if os.geteuid() != 0:
                return Outcome(requirement, "missing", f"not root: run `sudo {requirement.fix}`")
            _apt_install(requirement.install)
        elif requirement.kind == NPM:
            return _install_tfjs(requirement, web=bool(requirement.install))
        else:
            return Outcome(requirement, "failed", f"unknown kind {requirement.kind!r}")
    except _CommandFailed as exc:
        return Outcome(requirement, "failed", f"{exc}; run it by hand: {requirement.fix}")
    return Outcome(requirement, "installed", requirement.fix)


def _install_tfjs(requirement: Requirement, web: bool = False) -> Outcome:
    """`npm ci` of the TF.js lockfile, or with `web` of edgeport.browser's (LiteRT.js, ONNX Runtime Web)."""
    from edgeport.browser import npm as web_npm
    from edgeport.formats.tfjs.install import InstallFailed, install_packages

    npm = shutil.which("npm")
    if npm is None and os.geteuid() == 0:
        try:
            _apt_install(("nodejs", "npm"))
        except _CommandFailed as exc:
            return Outcome(requirement, "failed", f"npm is missing and apt could not install it: {exc}")
        npm = shutil.which("npm")
    if npm is None:
        return Outcome(
            requirement,
            "missing",
            "npm is not on PATH: run `sudo apt-get install -y nodejs npm --no-install-recommends`, then "
            "edgeport setup --target tfjs again",
        )
    try:
        folder = web_npm.install_packages(npm) if web else install_packages(npm)
    except InstallFailed as exc:  # both lockfiles install through run/npm_lock
        return Outcome(requirement, "failed", str(exc))
    return Outcome(requirement, "installed", f"{folder} (verified against the lockfile)")


class _CommandFailed(Exception):
    pass


def _apt_install(packages: tuple[str, ...]) -> None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], APT_TIMEOUT_S, environment)
    _run(["apt-get", "install", "-y", "-qq", *APT_OPTIONS, *packages], APT_TIMEOUT_S, environment)


def _run(command: list[str], timeout: float, environment: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, check=False)
    except subprocess.TimeoutExpired:
        raise _CommandFailed(f"`{' '.join(command)}` did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise _CommandFailed(f"`{command[0]}` cannot run ({exc.strerror})") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise _CommandFailed(f"`{' '.join(command)}` failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def doctor_rows(targets: Iterable[str]) -> list[dict[str, object]]:
    """One row per registered converter and runtime; `wanted` marks those the targets need. Variants that need
    more than their converter's plain target (`tflm:ethos-u*`: Vela) get a row of their own after it."""
    targets = list(targets)
    wanted = {(p.kind, p.name) for p in chosen_plugins(targets)}
    rows: list[dict[str, object]] = []
    for plugin in chosen_plugins(()):
        availability = plugin.plugin.availability()
        missing = [r for r in _own_requirements(plugin) if not r.present]
        rows.append(
            {
                "kind": plugin.kind,
                "name": plugin.name,
                "available": availability.available,
                "version": _version(plugin) if availability.available else "",
                "missing": ", ".join(r.name for r in missing)
                or ("" if availability.available else availability.reason),
                "fix": "" if availability.available else f"edgeport setup --target {plugin.name}",
                "wanted": (plugin.kind, plugin.name) in wanted,
                "origin": registry().origin(plugin.kind, plugin.name),
            }
        )
        rows.extend(_variant_rows(plugin, targets))
    for (kind, name), error in registry().broken().items():
        rows.append(
            {
                "kind": kind,
                "name": name,
                "available": False,
                "version": "",
                "missing": f"broken: {error}",
                "fix": "reinstall or uninstall the plug-in",
                "wanted": True,
                "origin": "",
            }
        )
    return rows


def _own_requirements(plugin: Plugin) -> tuple[Requirement, ...]:
    """What the plug-in's plain target needs: a converter's `variant_requirements("")` (its `requirements()` also
    hold what only some variants need, for `edgeport setup`)."""
    if isinstance(plugin.plugin, Converter):
        return tuple(plugin.plugin.variant_requirements(""))
    return plugin.plugin.requirements()


def _variant_rows(plugin: Plugin, targets: list[str]) -> list[dict[str, object]]:
    """One row per group of variants that need more than the plain target (`Converter.variant_requirements`):
    each of their requirements found, or missing with its install command. Wanted when no target is named
    (everything) or a named target is one of those variants."""
    converter = plugin.plugin
    if not isinstance(converter, Converter):
        return []
    hook = converter.variant_requirements
    plain = {(r.kind, r.name) for r in hook("")}
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    needs: dict[tuple[tuple[str, str], ...], tuple[Requirement, ...]] = {}
    for variant in converter.variants:
        requirements = tuple(hook(variant)) if variant else ()
        key = tuple(sorted((r.kind, r.name) for r in requirements))
        if variant and set(key) - plain:
            groups.setdefault(key, []).append(variant)
            needs[key] = requirements
    named = [TargetSpec.parse(t) for t in targets]
    rows: list[dict[str, object]] = []
    for key, variants in groups.items():
        requirements = needs[key]
        prefix = os.path.commonprefix(variants)
        name = f"{plugin.name}:{variants[0]}" if len(variants) == 1 else f"{plugin.name}:{prefix}*"
        missing = [r for r in requirements if not r.present]
        available = not missing and converter.variant_availability(variants[0]).available
        rows.append(
            {
                "kind": "converter variant",
                "name": name,
                "available": available,
                "version": ", ".join(f"{r.name} {r.found}" for r in requirements if r.present),
                "missing": "; ".join(f"{r.name} ({r.why})" if r.why else r.name for r in missing)
                or ("" if available else converter.variant_availability(variants[0]).reason),
                "fix": "" if available else _variant_fix(plugin.name, missing),
                "wanted": not targets
                or any(spec.converter == plugin.name and spec.variant in variants for spec in named),
                "origin": registry().origin(plugin.kind, plugin.name),
            }
        )
    return rows


def _variant_fix(converter: str, missing: list[Requirement]) -> str:
    commands = [r.fix for r in missing if r.fix]
    by_hand = f" (or: {'; '.join(commands)})" if commands else ""
    return f"edgeport setup --target {converter}{by_hand}"


def _version(plugin: Plugin) -> str:
    if isinstance(plugin.plugin, Runtime):
        try:
            return str(plugin.plugin.version())
        except Exception as exc:  # noqa: BLE001 - a plug-in's version probe must not break the table
            return f"? ({type(exc).__name__})"
    tools = [f"{r.name} {r.found}" for r in _own_requirements(plugin) if r.kind == PYTHON and r.found]
    return ", ".join(tools) or f"edgeport {_edgeport_version()}"


def _edgeport_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeport")
    except PackageNotFoundError:
        return "0+unknown"


# ---- devices (edgeport/device): what ssh needs here, `doctor --device`, the --device flag ---------------------


def device_requirements() -> list[Requirement]:
    """The OpenSSH client: --device reaches every device with it (the tests' loopback sshd is `make test`'s)."""
    from edgeport.run.requirements import system_program

    return [system_program("ssh", apt_packages=("openssh-client",), why="--device: reaches each device")]


def devices_from(flags, config_path):
    """--device NAME|ssh://... resolved against the config's [device.*] tables (every one of them when no flag)."""
    from pathlib import Path

    from edgeport.cli.config import load_config
    from edgeport.device.config import resolve_devices

    config = load_config(Path(config_path)) if config_path else None
    tables = config.device_tables if config else {}
    base = config.path.parent if config else Path(".")
    return resolve_devices(flags, tables, base, f"config {config_path}")


def run_device_doctor(name: str, config_path, as_json: bool, echo) -> int:
    """`edgeport doctor --device NAME`: one table of what the device is and has; exit 0 when it can run, else 1."""
    import json
    from pathlib import Path

    from edgeport.device.doctor import healthy, probe

    if config_path is None and Path("edgeport.toml").is_file() and not name.startswith("ssh://"):
        config_path = Path("edgeport.toml")
    (device,) = devices_from([name], config_path)
    rows = probe(device)
    code = int(ExitCode.OK if healthy(rows) else ExitCode.GATE_FAILED)
    if as_json:
        data = {"device": device.name, "rows": [dataclasses.asdict(r) for r in rows], "exit_code": code}
        echo(json.dumps(data, indent=2))
        return code
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"edgeport doctor --device {escape(device.describe())}", title_justify="left")
    for column in ("", "what", "found"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row("[green]ok[/]" if row.ok else "[red]no[/]", row.what, escape(row.found))
    console = Console() if Console().is_terminal else Console(width=150)
    console.print(table)
    console.print("[green]the device can run edgeport's checks[/]" if code == 0 else f"[red]not ready[/] (exit {code})")
    return code


def print_device_rows(report) -> None:
    """The CLI's table of the device rows, after the run's own table."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from edgeport.report.device_rows import HEADERS, cells, device_label, devices_of

    console = Console() if Console().is_terminal else Console(width=150)
    table = Table(title="on the device", title_justify="left")
    for column in HEADERS:
        table.add_column(column, overflow="fold")
    colors = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for row in report.devices:
        said = cells(row)
        said[2] = f"[{colors.get(row.status, 'white')}]{escape(said[2])}[/]"
        table.add_row(*[said[0], said[1], said[2], *map(escape, said[3:])])
    console.print(table)
    for name, facts in devices_of(report.devices).items():
        console.print(escape(f"{name}: {device_label(facts)}"))
