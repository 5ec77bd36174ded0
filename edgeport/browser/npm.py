"""The pinned npm packages of the web runtimes beside TF.js: @litertjs/core (LiteRT.js) and onnxruntime-web.

package.json and package-lock.json (beside this module, in the wheel) pin them. `edgeport setup --target
litertjs-browser` (or ort-web) runs `npm ci` on a copy in edgeport's per-user cache
(`$EDGEPORT_HOME/web/<lock hash>`), never inside site-packages, and checks the installed tree against the
lockfile's versions and integrity hashes. The page server serves their bundles and wasm binaries from there:
nothing is fetched at run time. `$EDGEPORT_WEB_NODE_MODULES` points at a node_modules of your own instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
LOCKFILE = HERE / "package-lock.json"
NODE_MODULES_ENV = "EDGEPORT_WEB_NODE_MODULES"
LITERTJS, ORT_WEB = "@litertjs/core", "onnxruntime-web"
NPM_TIMEOUT_S = 900


class InstallFailed(Exception):
    """npm is missing, failed, or installed something other than the lockfile says."""


def edgeport_home() -> Path:
    configured = os.environ.get("EDGEPORT_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeport"


@cache
def _lock() -> dict[str, dict]:
    return dict(json.loads(LOCKFILE.read_text(encoding="utf-8"))["packages"])


def pinned_version(package: str) -> str:
    return str(_lock()[f"node_modules/{package}"]["version"])


def project_dir() -> Path:
    digest = hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()[:12]
    return edgeport_home() / "web" / digest


def node_modules() -> Path:
    configured = os.environ.get(NODE_MODULES_ENV)
    return Path(configured).expanduser().resolve() if configured else project_dir() / "node_modules"


def installed_version(package: str) -> str | None:
    try:
        return str(json.loads((node_modules() / package / "package.json").read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def setup_command(runtime: str) -> str:
    return f"edgeport setup --target {runtime}"


def package_problem(package: str, runtime: str) -> str | None:
    """Why `package` cannot be served, with the command that installs it; None when it is installed."""
    if installed_version(package) is None:
        return f"{package} is not installed in {node_modules()}; run: {setup_command(runtime)}"
    return None


def lock_mismatches(root: Path) -> list[str]:
    """Installed packages whose version or integrity differs from the shipped lockfile ([] = all match)."""
    installed_lock = root / ".package-lock.json"
    if not installed_lock.is_file():
        return [f"{installed_lock} is missing (not installed by npm ci)"]
    installed = json.loads(installed_lock.read_text(encoding="utf-8")).get("packages", {})
    problems = []
    for key, entry in _lock().items():
        if not key.startswith("node_modules/") or entry.get("optional") or entry.get("dev"):
            continue
        got = installed.get(key) or {}
        if got.get("version") != entry.get("version") or got.get("integrity") != entry.get("integrity"):
            problems.append(f"{key.removeprefix('node_modules/')} {got.get('version')} is not {entry.get('version')}")
    return problems


def install_packages(npm: str) -> Path:
    """`npm ci` on a copy of the shipped package.json + lockfile; the project folder appears only when complete."""
    final = project_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        shutil.copy2(PACKAGE_JSON, staging / "package.json")
        shutil.copy2(LOCKFILE, staging / "package-lock.json")
        command = [npm, "ci", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InstallFailed(
                f"npm ci did not finish within {NPM_TIMEOUT_S} s; is the npm registry reachable?"
            ) from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise InstallFailed(f"npm ci failed ({lines[-1].strip() if lines else f'exit {done.returncode}'})")
        problems = lock_mismatches(staging / "node_modules")
        if problems:
            raise InstallFailed(f"the installed packages do not match the lockfile: {'; '.join(problems[:3])}")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def requirement(package: str, runtime: str, why: str):
    """The npm Requirement of one web package (kind NPM; `install` names this lockfile, so setup runs it)."""
    from edgeport.run.requirements import NPM, Requirement

    version = installed_version(package)
    found = f"{version} in {node_modules()}" if version and not package_problem(package, runtime) else None
    return Requirement(
        name=f"{package} {pinned_version(package)}",
        kind=NPM,
        found=found,
        install=("edgeport.browser.npm",),
        fix=setup_command(runtime),
        why=why,
    )
