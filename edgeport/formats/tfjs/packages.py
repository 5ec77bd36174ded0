"""The pinned TF.js npm packages: the lockfile shipped with edgeport, and where `edgeport setup` installs them.

package.json and package-lock.json (beside this module, in the wheel) pin @tensorflow/tfjs and
@tensorflow/tfjs-backend-wasm. `edgeport setup --target tfjs` runs `npm ci` on a copy of them in a per-user
cache (`$EDGEPORT_HOME`, else `$XDG_CACHE_HOME/edgeport`, else `~/.cache/edgeport`), never inside
site-packages, and checks the installed tree against the lockfile's versions and integrity hashes.
`$EDGEPORT_TFJS_NODE_MODULES` points at a node_modules of your own instead. Nothing is downloaded at run time.
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
NODE_MODULES_ENV = "EDGEPORT_TFJS_NODE_MODULES"
REQUIRED_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")
SETUP_COMMAND = "edgeport setup --target tfjs"


@cache  # the lockfile is package data: it does not change while edgeport runs
def lock_digest() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()


def pinned_version(package: str = "@tensorflow/tfjs") -> str:
    """The version the lockfile pins for `package`."""
    return str(lock_entries()[f"node_modules/{package}"]["version"])


def lock_entries() -> dict[str, dict]:
    return dict(_lock_packages())


@cache
def _lock_packages() -> dict[str, dict]:
    return dict(json.loads(LOCKFILE.read_text(encoding="utf-8"))["packages"])


def project_dir() -> Path:
    """The installed npm project for this lockfile (its own folder: two edgeport versions never share one)."""
    return edgeport_home() / "tfjs" / f"{pinned_version()}-{lock_digest()[:12]}"


def node_modules() -> Path:
    configured = os.environ.get(NODE_MODULES_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return project_dir() / "node_modules"


def missing_packages() -> tuple[str, ...]:
    root = node_modules()
    return tuple(name for name in REQUIRED_PACKAGES if not (root / name / "package.json").is_file())


def packages_problem() -> str | None:
    """Why the npm packages cannot be used, with the command that installs them; None when they are there."""
    missing = missing_packages()
    if not missing:
        return None
    return f"{', '.join(missing)} not installed in {node_modules()}; run: {SETUP_COMMAND}"


def lock_mismatches(root: Path | None = None) -> list[str]:
    """Installed TF.js packages whose version or integrity differs from the shipped lockfile ([] = all match)."""
    return npm_lock.lock_mismatches(lock_entries(), root or node_modules())


def package_dir(name: str) -> Path:
    return node_modules() / name


def installed_version() -> str:
    """The installed @tensorflow/tfjs version, or "not installed"."""
    try:
        return json.loads((package_dir("@tensorflow/tfjs") / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"
