"""What a plug-in needs installed, said as data: `edgeport setup` installs it, `edgeport doctor` shows it.

A plug-in's `requirements()` returns `Requirement`s built with the helpers here: a Python distribution (one
of edgeport's extras), a program from the system's package manager, or the pinned TF.js npm packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
from dataclasses import dataclass

PYTHON, SYSTEM, NPM = "python", "system", "npm"
# What a headless run needs and nothing more: Debian's chromium recommends chromium-sandbox (edgeport runs it
# with --no-sandbox) and its dependencies recommend udev, avahi-daemon, samba-libs, upower, printer helpers
# (174 packages instead of 324 onto a minimal bookworm; npm 387 instead of 669). fonts-dejavu-core still comes
# with chromium (fontconfig depends on it), so the report's text renders; tfjs-browser needs no font at all.
APT_OPTIONS = ("--no-install-recommends",)


@dataclass(frozen=True)
class Requirement:
    name: str  # "tflite-micro", "chromium", "@tensorflow/tfjs"
    kind: str  # PYTHON (pip specifiers in `install`), SYSTEM (apt packages in `install`), NPM (the TF.js lockfile)
    found: str | None  # what is installed (a version or a path); None when missing
    install: tuple[str, ...] = ()
    fix: str = ""  # the one command that installs it
    why: str = ""  # what needs it

    @property
    def present(self) -> bool:
        return self.found is not None


def find_program(env_var: str | None, *names: str) -> str | None:
    """The program named by `env_var` if set (it must be an executable file), else the first of `names` on PATH."""
    override = os.environ.get(env_var) if env_var else None
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    return next((found for found in map(shutil.which, names) if found), None)


def extra_specifiers(extra: str) -> tuple[str, ...]:
    """The pip specifiers of one of edgeport's extras, from the installed distribution's own metadata."""
    try:
        requires = importlib.metadata.requires("edgeport") or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return tuple(line.split(";")[0].strip() for line in requires if marker.search(line))


def python_package(distribution: str, *, extra: str, why: str = "") -> Requirement:
    try:
        found: str | None = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        found = None
    specifiers = tuple(s for s in extra_specifiers(extra) if _distribution_name(s) == _normal(distribution))
    return Requirement(
        name=distribution,
        kind=PYTHON,
        found=found,
        install=specifiers or (distribution,),
        fix=f"pip install 'edgeport[{extra}]'",
        why=why,
    )


def system_program(
    program: str,
    *,
    apt_packages: tuple[str, ...],
    env_var: str | None = None,
    aliases: tuple[str, ...] = (),
    why: str = "",
) -> Requirement:
    found = find_program(env_var, program, *aliases)
    fix = f"apt-get install -y {' '.join(apt_packages)} {' '.join(APT_OPTIONS)}"  # apt reads options anywhere
    return Requirement(name=program, kind=SYSTEM, found=found, install=apt_packages, fix=fix, why=why)


def tfjs_packages(*, why: str = "") -> Requirement:
    from edgeport.formats.tfjs import packages  # light: standard library only

    problem = packages.packages_problem()
    found = None if problem else f"{packages.installed_version()} in {packages.node_modules()}"
    return Requirement(
        name="@tensorflow/tfjs " + packages.pinned_version(), kind=NPM, found=found, fix=packages.SETUP_COMMAND, why=why
    )


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_name(specifier: str) -> str:
    return _normal(re.split(r"[<>=!~\[ ;]", specifier, maxsplit=1)[0])
