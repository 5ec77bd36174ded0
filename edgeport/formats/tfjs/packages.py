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

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
LOCKFILE = HERE / "package-lock.json"
HOME_ENV = "EDGEPORT_HOME"
NODE_MODULES_ENV = "EDGEPORT_TFJS_NODE_MODULES"
REQUIRED_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")
SETUP_COMMAND = "edgeport setup --target tfjs"


def edgeport_home() -> Path:
    """Where edgeport keeps what it installs for the user: $EDGEPORT_HOME, else the XDG cache folder."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "edgeport"


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
    """Installed packages whose version or integrity hash differs from the shipped lockfile ([] = all match).

    `npm ci` checks every tarball against the lockfile's integrity hash as it installs; npm records what it
    installed in node_modules/.package-lock.json, which is compared here entry by entry.
    """
    root = root or node_modules()
    installed_lock = root / ".package-lock.json"
    if not installed_lock.is_file():
        return [f"{installed_lock} is missing (not installed by npm ci)"]
    installed = json.loads(installed_lock.read_text(encoding="utf-8")).get("packages", {})
    problems = []
    for key, entry in lock_entries().items():
        if not key.startswith("node_modules/") or entry.get("optional") or entry.get("dev"):
            continue
        got = installed.get(key)
        if got is None:
            problems.append(f"{key.removeprefix('node_modules/')} is not installed")
        elif got.get("version") != entry.get("version") or got.get("integrity") != entry.get("integrity"):
            problems.append(
                f"{key.removeprefix('node_modules/')} {got.get('version')} does not match the lockfile's "
                f"{entry.get('version')}"
            )
    return problems


def package_dir(name: str) -> Path:
    return node_modules() / name


def installed_version() -> str:
    """The installed @tensorflow/tfjs version, or "not installed"."""
    try:
        return json.loads((package_dir("@tensorflow/tfjs") / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"
