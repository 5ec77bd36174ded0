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
from functools import cache
from pathlib import Path

from edgeport.run import npm_lock
from edgeport.run.npm_lock import edgeport_home

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
LOCKFILE = HERE / "package-lock.json"
NODE_MODULES_ENV = "EDGEPORT_WEB_NODE_MODULES"
LITERTJS, ORT_WEB = "@litertjs/core", "onnxruntime-web"


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
    return npm_lock.lock_mismatches(_lock(), root)


def install_packages(npm: str) -> Path:
    """`npm ci` of the web runtimes' lockfile into its cache folder; the folder appears only when complete."""
    return npm_lock.install_lockfile(npm, PACKAGE_JSON, LOCKFILE, _lock(), project_dir())


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
