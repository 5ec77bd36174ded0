"""A pinned npm lockfile installed into edgeport's per-user cache: `npm ci` on a copy, verified against the
lockfile, moved into place only when complete. What the TF.js packages (formats/tfjs) and the web runtimes'
packages (edgeport/browser) share; each says which lockfile and which cache folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "EDGEPORT_HOME"
NPM_TIMEOUT_S = 900


class InstallFailed(Exception):
    """npm is missing, failed, or installed something other than the lockfile says."""


def edgeport_home() -> Path:
    """Where edgeport keeps what it installs for the user: $EDGEPORT_HOME, else the XDG cache folder."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "edgeport"


def lock_mismatches(lock_entries: Mapping[str, dict], root: Path) -> list[str]:
    """Installed packages under `root` (a node_modules) whose version or integrity hash differs from the
    lockfile's entries ([] = all match). `npm ci` checks every tarball against the lockfile's integrity hash as
    it installs and records what it installed in node_modules/.package-lock.json, compared here entry by entry."""
    import json

    installed_lock = root / ".package-lock.json"
    if not installed_lock.is_file():
        return [f"{installed_lock} is missing (not installed by npm ci)"]
    installed = json.loads(installed_lock.read_text(encoding="utf-8")).get("packages", {})
    problems = []
    for key, entry in lock_entries.items():
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


def install_lockfile(
    npm: str, package_json: Path, lockfile: Path, lock_entries: Mapping[str, dict], final: Path
) -> Path:
    """`npm ci` on a copy of `package_json` + `lockfile` in a staging folder beside `final` (a folder of edgeport's
    cache, named by the lockfile's hash); `final` appears only when the install is complete and verified."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        shutil.copy2(package_json, staging / "package.json")
        shutil.copy2(lockfile, staging / "package-lock.json")
        command = [npm, "ci", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InstallFailed(
                f"npm ci did not finish within {NPM_TIMEOUT_S} s; check the npm registry is reachable and run it again"
            ) from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise InstallFailed(f"npm ci failed ({lines[-1].strip() if lines else f'exit {done.returncode}'})")
        problems = lock_mismatches(lock_entries, staging / "node_modules")
        if problems:
            raise InstallFailed(f"the installed packages do not match the lockfile: {'; '.join(problems[:3])}")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
