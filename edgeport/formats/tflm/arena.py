"""The smallest tensor arena a model needs on TFLite Micro, found by search, not guessed.

Each probe builds the TFLM interpreter with a given `arena_size`, feeds zeros and invokes once, in a forked
child: TFLM can crash on an arena that is just too small, and a crash must only fail that probe. The search
doubles the arena until a probe passes, then bisects down to 16-byte steps (TFLM aligns arena buffers to
16 bytes). A model that fails even at the cap without an allocation message was rejected by a kernel
(e.g. an op version or type the kernel does not support): that is reported, not searched.

Run it in a process without TensorFlow (`python -m edgeport.formats.tflm.arena MODEL.tflite` prints JSON);
`search_in_subprocess` does that. Independent of edgeport.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ALIGNMENT = 16
START_BYTES = 4096
CAP_BYTES = 1 << 30
_ALLOCATION_FAILURE = re.compile(r"Failed to (allocate|resize)|too small|Failed starting model allocation", re.I)
_NODE_FAILURE = re.compile(r"Node (\w+) \(number (\d+)f?\) failed to (prepare|invoke)")


@dataclass(frozen=True)
class Probe:
    arena_size: int
    ok: bool
    crashed: bool
    messages: tuple[str, ...]

    @property
    def out_of_memory(self) -> bool:
        return self.crashed or any(_ALLOCATION_FAILURE.search(line) for line in self.messages)


@dataclass(frozen=True)
class ArenaSearch:
    arena_bytes: int | None  # None when the model does not run at any size up to the cap
    probes: int
    failure: str | None = None  # the kernel's complaint when it does not run
    failed_op: str | None = None  # "CONV_2D" from "Node CONV_2D (number 3) failed to prepare"
    failed_node: int | None = None


def _zeros_for_inputs(interpreter, count: int):
    import numpy as np

    for index in range(count):
        detail = interpreter.get_input_details(index)
        interpreter.set_input(np.zeros(tuple(detail["shape"]), dtype=detail["dtype"]), index)


def _input_count(model: bytes) -> int:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema.Model.GetRootAsModel(model, 0).Subgraphs(0).InputsLength()


def probe(model: bytes, arena_size: int) -> Probe:
    """Allocate and invoke once with `arena_size` bytes, in a forked child; collect what TFLM printed."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            from tflite_micro.python.tflite_micro import runtime

            interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
            _zeros_for_inputs(interpreter, _input_count(model))
            interpreter.invoke()
            status = 0
        except BaseException as exc:  # noqa: BLE001 - the parent reads the reason from the pipe
            print(f"{type(exc).__name__}: {exc}", flush=True)
        finally:
            sys.stdout.flush()
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode("utf-8", "replace")
    _, wait_status = os.waitpid(pid, 0)
    crashed = os.WIFSIGNALED(wait_status)
    ok = os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0
    messages = tuple(line.strip() for line in output.splitlines() if line.strip())
    if crashed:
        messages += (f"crashed with signal {os.WTERMSIG(wait_status)}",)
    return Probe(arena_size=arena_size, ok=ok, crashed=crashed, messages=messages)


def _kernel_failure(result: Probe) -> ArenaSearch:
    node = next((m for line in result.messages if (m := _NODE_FAILURE.search(line))), None)
    useful = [line for line in result.messages if not line.startswith("RuntimeError")]
    reason = "; ".join(useful[-3:]) or "; ".join(result.messages[-2:]) or "unknown failure"
    return ArenaSearch(
        arena_bytes=None,
        probes=0,
        failure=reason[:500],
        failed_op=node.group(1) if node else None,
        failed_node=int(node.group(2)) if node else None,
    )


def search_minimum_arena(model: bytes, *, start: int = START_BYTES, cap: int = CAP_BYTES) -> ArenaSearch:
    import tflite_micro.python.tflite_micro.runtime  # noqa: F401 - imported once, before the forks

    probes = 0
    low, high = 0, max(ALIGNMENT, start - start % ALIGNMENT)
    while True:
        result = probe(model, high)
        probes += 1
        if result.ok:
            break
        if not result.out_of_memory:  # a kernel refused the model: no arena size will help
            return _replace_probes(_kernel_failure(result), probes)
        if high >= cap:
            return ArenaSearch(
                arena_bytes=None,
                probes=probes,
                failure=f"does not fit in a {cap:,}-byte arena: {'; '.join(result.messages[-2:])}",
            )
        low, high = high, min(high * 2, cap)
    while high - low > ALIGNMENT:  # invariant: `low` fails (or is 0), `high` passes
        middle = (low + high) // 2
        middle -= middle % ALIGNMENT
        if middle <= low:
            break
        probes += 1
        if probe(model, middle).ok:
            high = middle
        else:
            low = middle
    return ArenaSearch(arena_bytes=high, probes=probes)


def _replace_probes(search: ArenaSearch, probes: int) -> ArenaSearch:
    return ArenaSearch(
        arena_bytes=search.arena_bytes,
        probes=probes,
        failure=search.failure,
        failed_op=search.failed_op,
        failed_node=search.failed_node,
    )


def search_in_subprocess(model_path: Path, *, timeout: float = 600.0) -> ArenaSearch:
    """Run the search in a fresh Python (no TensorFlow loaded, safe to fork) and read its JSON answer."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", __name__, str(model_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"TFLM arena search took more than {timeout:.0f} s") from None
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"TFLM arena search failed (exit {completed.returncode}): {tail}")
    return ArenaSearch(**json.loads(completed.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    result = search_minimum_arena(Path(argv[0]).read_bytes())
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
