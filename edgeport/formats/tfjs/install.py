"""Install the pinned TF.js packages into edgeport's cache with `npm ci`, atomically, then verify them."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from edgeport.formats.tfjs import packages

NPM_TIMEOUT_S = 900


class InstallFailed(Exception):
    """npm is missing, failed, or installed something other than the lockfile says."""


def install_packages(npm: str) -> Path:
    """`npm ci` on a copy of the shipped package.json + lockfile; the project folder appears only when complete."""
    final = packages.project_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        shutil.copy2(packages.PACKAGE_JSON, staging / "package.json")
        shutil.copy2(packages.LOCKFILE, staging / "package-lock.json")
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
        problems = packages.lock_mismatches(staging / "node_modules")
        if problems:
            raise InstallFailed(f"the installed packages do not match the lockfile: {'; '.join(problems[:3])}")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
