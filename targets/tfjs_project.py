"""The npm project next to this module (targets/tfjs): where TF.js, its wasm binaries and our JS live.

package.json and package-lock.json pin @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm; `npm ci` installs
them into targets/tfjs/node_modules once (make setup). Nothing is downloaded at run time.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().with_name("tfjs")
NODE_MODULES = PROJECT_DIR / "node_modules"
REQUIRED_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")


def setup_command() -> str:
    return f"make setup (or: npm ci --prefix {PROJECT_DIR})"


def missing_packages() -> tuple[str, ...]:
    return tuple(name for name in REQUIRED_PACKAGES if not (NODE_MODULES / name / "package.json").is_file())


def packages_problem() -> str | None:
    """Why the npm packages cannot be used, with the command that installs them; None when they are there."""
    missing = missing_packages()
    if not missing:
        return None
    return f"{', '.join(missing)} not installed in {NODE_MODULES}; run {setup_command()}"


def package_dir(name: str) -> Path:
    return NODE_MODULES / name


@cache
def tfjs_version() -> str:
    try:
        return json.loads((NODE_MODULES / "@tensorflow/tfjs/package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def executable(env_var: str, *names: str) -> str | None:
    """The program named by `env_var` if set (it must exist), else the first of `names` on PATH."""
    override = os.environ.get(env_var)
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    return next((found for found in map(shutil.which, names) if found), None)


@cache
def program_version(program: str) -> str:
    """`program --version`, first line of stdout ("" if it does not answer)."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else ""
