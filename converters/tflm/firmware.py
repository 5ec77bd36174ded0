"""The firmware's real flash: the generated model array compiled for the board's core, its sections measured.

`model_data.cc` is compiled with the Arm bare-metal GCC (`arm-none-eabi-g++`, Debian's gcc-arm-none-eabi)
for the board's core (`-mcpu=cortex-m55 -mthumb -Os`), and `arm-none-eabi-size` reads the object: text+data
is what goes to flash, bss what takes RAM. Only the model's own object is measured: the op resolver and the
TFLite Micro runtime library (kernels, interpreter) need TFLM's sources, which the tflite-micro wheel does not
ship, so their flash is not included. Independent of edgeport.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

COMPILER = "arm-none-eabi-g++"
SIZE = "arm-none-eabi-size"
APT_PACKAGE = "gcc-arm-none-eabi"
DEFAULT_CPU = "cortex-m4"  # when no board names a core: the array's size does not depend on it
COMPILE_TIMEOUT_S = 120
NOT_INCLUDED = "the op resolver and the TFLite Micro runtime library are not included (not built here)"


@dataclass(frozen=True)
class CompiledSize:
    text: int
    data: int
    bss: int
    cpu: str
    compiler: str  # "arm-none-eabi-gcc 12.2.1"

    @property
    def flash_bytes(self) -> int:
        return self.text + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def compiler_version() -> str | None:
    path = compiler_path()
    if path is None:
        return None
    done = subprocess.run([path, "-dumpversion"], capture_output=True, text=True, timeout=30, check=False)
    return f"arm-none-eabi-gcc {done.stdout.strip()}" if done.returncode == 0 else None


def compile_sources(folder: Path, sources: tuple[str, ...], *, cpu: str) -> CompiledSize:
    """Each of `sources` (files in `folder`) compiled to an object for `cpu`; their sections summed.

    Raises RuntimeError (one line) when the compiler is missing or refuses a file."""
    compiler, size = compiler_path(), shutil.which(SIZE)
    if compiler is None or size is None:
        raise RuntimeError(f"{COMPILER} is not installed: apt-get install -y --no-install-recommends {APT_PACKAGE}")
    version = compiler_version() or COMPILER
    totals = [0, 0, 0]
    with tempfile.TemporaryDirectory(prefix="edgeport-firmware-") as scratch:
        for source in sources:
            obj = Path(scratch) / (Path(source).stem + ".o")
            command = [
                compiler,
                f"-mcpu={cpu}",
                "-mthumb",
                "-Os",
                "-std=c++17",
                "-fno-exceptions",
                "-fno-rtti",
                "-ffunction-sections",
                "-fdata-sections",
                f"-I{folder}",
                "-c",
                str(folder / source),
                "-o",
                str(obj),
            ]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{COMPILER} did not compile {source} within {COMPILE_TIMEOUT_S} s") from None
            if done.returncode != 0:
                raise RuntimeError(f"{COMPILER} -mcpu={cpu} refused {source}: {_last_line(done.stderr)}")
            for index, value in enumerate(_berkeley_sizes(size, obj)):
                totals[index] += value
    return CompiledSize(text=totals[0], data=totals[1], bss=totals[2], cpu=cpu, compiler=version)


def _berkeley_sizes(size: str, obj: Path) -> tuple[int, int, int]:
    done = subprocess.run([size, "-B", str(obj)], capture_output=True, text=True, timeout=30, check=False)
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    if done.returncode != 0 or not rows or not all(re.fullmatch(r"\d+", v) for v in rows[0][:3]):
        raise RuntimeError(f"{SIZE} could not read {obj.name}: {_last_line(done.stderr or done.stdout)}")
    text, data, bss = (int(v) for v in rows[0][:3])
    return text, data, bss


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
