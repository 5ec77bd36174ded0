"""edgeport's device-side runner: one self-contained file copied to a board and run by its own python.

It imports nothing of edgeport and no TensorFlow: the standard library, numpy, and the runtime it is asked for
(`ai_edge_litert` or `onnxruntime`). edgeport's host side copies it with an artifact and the samples into a
per-run folder on the device and runs it there:

    python runner.py facts                      the device's facts (JSON on stdout)
    python runner.py check request.json         outputs on every sample      -> check.npz
    python runner.py bench request.json         the timing protocol          -> bench.npz

The timing protocol is checks/timing.py's `time_session`, step for step (warm-up until the rolling median
settles, timed runs until the p50's 95 % interval is narrow enough, one deadline); the host's tests run both on
the same simulated clock and session to prove they agree. Raw times go back; statistics are the host's.

Wire format: one .npz (no pickles) whose `header` entry is UTF-8 JSON bytes (times, peak memory, the runtime's
version, the output names, or the failure) and whose `s<i>_o<j>` entries are sample i's output j.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

CONFIDENCE = 0.95
EXACT_RANKS_UP_TO = 1000
NORMAL_FROM = 100
CHECK_EVERY_RUN_UP_TO = 20
CHECK_GROWTH = 1.05
WARMUP_SLACK_MS = 0.005
RUNTIMES = {"litert": "ai_edge_litert", "onnxruntime": "onnxruntime"}  # runtime -> the module it imports
DISTRIBUTIONS = {"litert": "ai-edge-litert", "onnxruntime": "onnxruntime"}
ONNX_INPUT_PERMUTATIONS_KEY = "edgeport.input_permutations"  # formats/onnx/conventions.INPUT_PERMUTATIONS_KEY


class RunnerFailure(Exception):
    """The artifact could not be loaded or run; the message is the one line the report says."""


# ---- the timing protocol (checks/timing.py, in step) --------------------------------------------------------


def quantile_ranks(n, q, confidence=CONFIDENCE):
    if n < 1 or not 0 < q < 1:
        return None
    tail = (1 - confidence) / 2
    if n <= EXACT_RANKS_UP_TO or n * q * (1 - q) < NORMAL_FROM:
        cdf, total = [], 0.0
        log_q, log_p = math.log(q), math.log1p(-q)
        for k in range(n + 1):
            log_pmf = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_p
            total += math.exp(log_pmf)
            cdf.append(total)
        low = max((k for k in range(1, n + 1) if cdf[k - 1] <= tail), default=None)
        high = min((k for k in range(1, n + 1) if cdf[k - 1] >= 1 - tail), default=None)
    else:
        z = statistics.NormalDist().inv_cdf(1 - tail)
        mean, sd = n * q, math.sqrt(n * q * (1 - q))
        low = math.floor(mean + 0.5 - z * sd)
        high = math.ceil(mean + 0.5 + z * sd)
        low = low if low >= 1 else None
        high = high if high <= n else None
    if low is None or high is None:
        return None
    return low, high


def median_of_sorted(ordered):
    n = len(ordered)
    return float(ordered[n // 2]) if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def relative_half_width(ordered, confidence=CONFIDENCE):
    ranks = quantile_ranks(len(ordered), 0.5, confidence)
    if ranks is None:
        return math.inf
    low, high = float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])
    median = median_of_sorted(ordered)
    reach = max(median - low, high - median)
    if reach <= 0:
        return 0.0
    return reach / median if median > 0 else math.inf


def settled(times, window, tolerance):
    window = max(1, window)
    if len(times) < 2 * window:
        return False
    last = statistics.median(times[-window:])
    before = statistics.median(times[-2 * window : -window])
    return abs(last - before) <= tolerance * before + WARMUP_SLACK_MS


class StoppingRule:
    def __init__(self, protocol):
        self.protocol = protocol
        self.next_look = 0

    def done(self, times, elapsed_s):
        n, protocol = len(times), self.protocol
        if n < protocol["min_runs"] or elapsed_s < protocol["min_seconds"]:
            return False
        if protocol["ci_half_width"] <= 0:
            return True
        if n < self.next_look:
            return False
        self.next_look = n + 1 if n < CHECK_EVERY_RUN_UP_TO else math.ceil(n * CHECK_GROWTH)
        return relative_half_width(sorted(times)) <= protocol["ci_half_width"]


def time_session(open_session, feeds, protocol, clock=time.perf_counter):
    """The protocol on a session (`prepare`, `run_prepared`, `close`); `protocol` is data.TimingProtocol as a
    dict. Returns the raw times (load_ms, first_inference_ms, warmup_runs, run_ms)."""
    start = clock()
    session = open_session()
    load_ms = (clock() - start) * 1e3
    try:
        prepared = [session.prepare(feed) for feed in feeds]
        start = clock()
        session.run_prepared(prepared[0])
        first_ms = (clock() - start) * 1e3
        began = clock()
        deadline, warm_until = began + protocol["max_seconds"], began + protocol["max_seconds"] / 2
        warm_ms: list[float] = []
        while clock() < warm_until and not (
            len(warm_ms) >= protocol["warmup_runs"]
            and clock() - began >= protocol["warmup_seconds"]
            and settled(warm_ms, protocol["warmup_window"], protocol["warmup_tolerance"])
        ):
            t0 = clock()
            session.run_prepared(prepared[len(warm_ms) % len(prepared)])
            warm_ms.append((clock() - t0) * 1e3)
        times: list[float] = []
        rule = StoppingRule(protocol)
        timed_from = clock()
        while clock() < deadline:
            feed = prepared[len(times) % len(prepared)]
            t0 = clock()
            session.run_prepared(feed)
            t1 = clock()
            times.append((t1 - t0) * 1e3)
            if rule.done(times, t1 - timed_from):
                break
    finally:
        session.close()
    if not times:
        raise RunnerFailure(
            f"no timed run within max_seconds {protocol['max_seconds']:g}: the first run took {first_ms:.0f} ms and "
            f"{len(warm_ms)} warm-up run(s) {(timed_from - began) * 1e3:.0f} ms; raise --max-seconds"
        )
    return {"load_ms": load_ms, "first_inference_ms": first_ms, "warmup_runs": len(warm_ms), "run_ms": times}


# ---- sessions (targets/litert and targets/onnxruntime, without edgeport) ------------------------------------


def _quantize(values, detail):
    dtype = np.dtype(detail["dtype"])
    scales = detail["quantization_parameters"]["scales"]
    if not np.issubdtype(dtype, np.integer) or len(scales) == 0 or np.issubdtype(values.dtype, np.integer):
        return values.astype(dtype, copy=False)
    zero_points = detail["quantization_parameters"]["zero_points"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scales[0] + zero_points[0]), info.min, info.max).astype(dtype)


def _dequantize(values, detail):
    scales = detail["quantization_parameters"]["scales"]
    if not np.issubdtype(values.dtype, np.integer) or len(scales) == 0:
        return values
    zero_points = detail["quantization_parameters"]["zero_points"]
    return ((values.astype(np.float32) - zero_points[0]) * scales[0]).astype(np.float32)


class LiteRTSession:
    def __init__(self, path, threads):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=path, num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise RunnerFailure(f"LiteRT cannot load {os.path.basename(path)}: {_first_line(exc)}") from None
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            raise RunnerFailure(f"{os.path.basename(path)} has no signature")
        self._runner = self._interpreter.get_signature_runner(next(iter(signatures)))
        self._inputs = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()

    def prepare(self, feeds):
        if set(feeds) != set(self._inputs):
            raise RunnerFailure(f"the .tflite takes inputs {sorted(self._inputs)}; got {sorted(feeds)}")
        return {name: _quantize(np.asarray(feeds[name]), detail) for name, detail in self._inputs.items()}

    def run_prepared(self, prepared):
        return self._runner(**prepared)

    def run(self, feeds):
        outputs = self.run_prepared(self.prepare(feeds))
        return {name: _dequantize(value, self._outputs[name]) for name, value in outputs.items()}

    def close(self):
        pass


class ONNXRuntimeSession:
    def __init__(self, path, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail, InvalidGraph, NoSuchFile...
            raise RunnerFailure(f"onnxruntime cannot load {os.path.basename(path)}: {_first_line(exc)}") from None
        metadata = self._session.get_modelmeta().custom_metadata_map
        self._permutations = {
            name: tuple(perm) for name, perm in json.loads(metadata.get(ONNX_INPUT_PERMUTATIONS_KEY, "{}")).items()
        }
        self._types = {value.name: value.type for value in self._session.get_inputs()}
        self._names = [value.name for value in self._session.get_outputs()]

    def prepare(self, feeds):
        missing = sorted(set(self._types) - set(feeds))
        if missing:
            raise RunnerFailure(f"onnxruntime: feed lacks model inputs {', '.join(missing)}")
        prepared = {}
        for name, kind in self._types.items():
            value = np.asarray(feeds[name])
            if self._permutations.get(name):
                value = np.ascontiguousarray(np.transpose(value, self._permutations[name]))
            dtype = _ONNX_TYPES.get(kind)
            prepared[name] = value.astype(dtype) if dtype is not None and value.dtype != dtype else value
        return prepared

    def run_prepared(self, prepared):
        try:
            values = self._session.run(self._names, prepared)
        except Exception as exc:  # noqa: BLE001
            raise RunnerFailure(f"onnxruntime failed to run: {_first_line(exc)}") from None
        return dict(zip(self._names, values, strict=True))

    def run(self, feeds):
        return self.run_prepared(self.prepare(feeds))

    def close(self):
        self._session = None


_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
SESSIONS = {"litert": LiteRTSession, "onnxruntime": ONNXRuntimeSession}


def runtime_version(runtime):
    """As the host's runtime plug-in says it (Runtime.version), so the rows read alike."""
    from importlib.metadata import version

    said = f"{DISTRIBUTIONS[runtime]} {version(DISTRIBUTIONS[runtime])}"
    return f"{said} (CPUExecutionProvider)" if runtime == "onnxruntime" else said


# ---- what the device is -------------------------------------------------------------------------------------


def vm_hwm_bytes():
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


def facts():
    """Architecture, CPU, cores, memory, OS, python and numpy, each runtime's version (or why not)."""
    said: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, colon, value = line.partition(":")
                if colon and value.strip():
                    said.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    # x86 and most ARM: "model name"; MIPS: "cpu model"; a Raspberry Pi: the board's "Model" ("model" on x86 is
    # a number)
    cpu = next((said[key] for key in ("model name", "cpu model", "Model", "Hardware") if key in said), "")
    memory = None
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    os_name = platform.system()
    try:
        with open("/etc/os-release", encoding="utf-8", errors="replace") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    runtimes = {}
    for runtime, module in RUNTIMES.items():
        try:
            __import__(module)
            runtimes[runtime] = {"version": runtime_version(runtime)}
        except Exception as exc:  # noqa: BLE001 - any import failure: the runtime is not there
            runtimes[runtime] = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
    return {
        "arch": platform.machine(),
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtimes": runtimes,
    }


# ---- the wire format ----------------------------------------------------------------------------------------


def write_result(path, header, outputs=()):
    """One .npz: `header` (JSON as uint8) and each sample's outputs (`s<i>_o<j>`, names in the header)."""
    names = list(outputs[0]) if outputs else []
    arrays: dict[str, Any] = {
        "header": np.frombuffer(json.dumps({**header, "outputs": names}).encode("utf-8"), dtype=np.uint8)
    }
    for i, sample in enumerate(outputs):
        for j, name in enumerate(names):
            arrays[f"s{i}_o{j}"] = np.asarray(sample[name])
    tmp = path + ".part.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_result(data):
    """(header, outputs per sample) from the bytes or file of write_result's .npz (the host reads it so)."""
    import io

    with np.load(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data, allow_pickle=False) as npz:
        header = json.loads(bytes(npz["header"]).decode("utf-8"))
        names = header.get("outputs", [])
        count = sum(1 for key in npz.files if key.endswith("_o0"))
        outputs = [{name: npz[f"s{i}_o{j}"] for j, name in enumerate(names)} for i in range(count)]
    return header, outputs


def load_feeds(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    count = len(next(iter(arrays.values()))) if arrays else 0
    return [{name: array[i] for name, array in arrays.items()} for i in range(count)]


def _first_line(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:400]


def main(argv):
    """facts | check REQUEST | bench REQUEST; a failure is written into the result's header (exit 3)."""
    if argv[:1] == ["facts"]:
        sys.stdout.write(json.dumps(facts()) + "\n")
        return 0
    if len(argv) != 2 or argv[0] not in ("check", "bench"):
        sys.stderr.write("usage: runner.py facts | check REQUEST.json | bench REQUEST.json\n")
        return 2
    mode = argv[0]
    with open(argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    result = f"{mode}.npz"
    runtime = request["runtime"]
    try:
        if runtime not in SESSIONS:
            raise RunnerFailure(f"runtime {runtime!r} is not one the device runner has ({', '.join(SESSIONS)})")
        feeds = load_feeds(request["samples"] if mode == "check" else request["bench_samples"])
        if not feeds:
            raise RunnerFailure("no samples")

        def open_session():
            return SESSIONS[runtime](request["artifact"], int(request["threads"]))

        header = {"runtime_version": runtime_version(runtime)}
        if mode == "check":
            session = open_session()
            try:
                outputs = [session.run(feed) for feed in feeds]
            finally:
                session.close()
            write_result(result, {**header, "peak_rss_bytes": vm_hwm_bytes()}, outputs)
        else:
            raw = time_session(open_session, feeds, request["protocol"])
            write_result(result, {**header, **raw, "peak_rss_bytes": vm_hwm_bytes()})
    except Exception as exc:  # noqa: BLE001 - said in the result, one line, for the host's report
        said = str(exc) if isinstance(exc, RunnerFailure) else f"{type(exc).__name__}: {_first_line(exc)}"
        write_result(result, {"failure": said})
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
