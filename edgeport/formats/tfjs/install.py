"""Install the pinned TF.js packages into edgeport's cache with `npm ci`, atomically, then verify them."""

from __future__ import annotations

from pathlib import Path

from edgeport.formats.tfjs import packages
from edgeport.run.npm_lock import InstallFailed, install_lockfile

__all__ = ["InstallFailed", "install_packages"]


def install_packages(npm: str) -> Path:
    """`npm ci` of the TF.js lockfile into its cache folder; the folder appears only when complete."""
    return install_lockfile(
        npm, packages.PACKAGE_JSON, packages.LOCKFILE, packages.lock_entries(), packages.project_dir()
    )
