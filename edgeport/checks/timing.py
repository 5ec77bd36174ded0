"""The timing protocol for a runtime that runs in Python: the `Session` it times and `time_session`.

Runtimes outside Python (Node.js, a browser) implement the same protocol in their own language
(targets/tfjs/protocol.js) and hand back raw times; checks/latency computes the statistics of both.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from edgeport.data import Feeds, RawTimings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure


class Session(ABC):
    """One loaded artifact on a runtime.

    The timing protocol prepares every feed once, before the clock starts (`prepare`), and times
    `run_prepared` only: a session whose `run` converts feeds (quantizes int8 inputs, dequantizes outputs)
    overrides both, so that the conversion is not timed. `run` must equal `run_prepared(prepare(feeds))` in
    real values.
    """

    @abstractmethod
    def run(self, feeds: Feeds) -> Feeds: ...

    def prepare(self, feeds: Feeds) -> Any:
        """Feeds as the timed call takes them (default: as they are)."""
        return feeds

    def run_prepared(self, prepared: Any) -> Any:
        """The timed call: one inference on prepared feeds; its outputs may stay in the model's own dtypes."""
        return self.run(prepared)

    def close(self) -> None:
        pass


def time_session(
    open_session: Callable[[], Session], samples: SampleSet, protocol: TimingProtocol, version: str
) -> RawTimings:
    """Run the protocol on a Python session. Call it in a fresh process (the pipeline does)."""
    from edgeport.checks.latency import peak_rss_bytes  # numpy: not on the plug-ins' import path

    clock = time.perf_counter
    start = clock()
    session = open_session()
    load_ms = (clock() - start) * 1e3
    try:
        feeds = [session.prepare(feed) for feed in samples.feeds()]  # int8 I/O: quantized here, not timed
        start = clock()
        session.run_prepared(feeds[0])
        first_ms = (clock() - start) * 1e3
        began = clock()
        deadline, warm_until = began + protocol.max_seconds, began + protocol.max_seconds / 2
        warm = 0
        while (warm < protocol.warmup_runs or clock() - began < protocol.warmup_seconds) and clock() < warm_until:
            session.run_prepared(feeds[warm % len(feeds)])
            warm += 1
        times: list[float] = []
        timed_from = clock()
        while clock() < deadline:
            feed = feeds[len(times) % len(feeds)]
            t0 = clock()
            session.run_prepared(feed)
            times.append((clock() - t0) * 1e3)
            if len(times) >= protocol.min_runs and clock() - timed_from >= protocol.min_seconds:
                break
    finally:
        session.close()
    if not times:
        raise RuntimeFailure(
            f"no timed run within max_seconds {protocol.max_seconds:g}: the first run took {first_ms:.0f} ms and "
            f"{warm} warm-up run(s) {(timed_from - began) * 1e3:.0f} ms; raise --max-seconds"
        )
    return RawTimings(
        load_ms=load_ms,
        first_inference_ms=first_ms,
        warmup_runs=warm,
        run_ms=tuple(times),
        peak_rss_bytes=peak_rss_bytes(),
        runtime_version=version,
    )
