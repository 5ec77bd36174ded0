/*
 * What Node (runner.js) and the browser page (page.js) share: run one feed through a TF.js graph model by
 * its signature, and edgeport's timing protocol (edgeport/checks/timing.py) written once in JavaScript.
 *
 * A feed or a result is {signatureName: {dtype, shape, data: TypedArray}}. Inputs are fed and outputs
 * fetched by the graph tensor names the model.json `signature` section gives, then keyed back by the
 * signature's own names; string outputs come back length-prefixed (encodeStrings). Every run uploads the inputs, executes, and downloads every output (await data()),
 * so WebGL timings include the GPU work and the readback a web app would wait for. `fetchLayers` executes
 * to named intermediate nodes instead, for the per-layer comparison.
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.edgeportProtocol = api;
  }
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  const TYPED_ARRAYS = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};

  /** A tensor's data from its wire bytes: a typed array, or for strings one Uint8Array per element. */
  function typedArray(dtype, bytes) {
    if (dtype === 'string') {
      return decodeStrings(bytes);
    }
    const Type = TYPED_ARRAYS[dtype];
    if (!Type) {
      throw new Error(`tensor dtype ${dtype} cannot be fed to TF.js (float32, int32, bool and string can)`);
    }
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    return new Type(copy.buffer);
  }

  function signatureOf(model, where) {
    const signature = model.signature;
    if (!signature || !signature.inputs || !signature.outputs) {
      throw new Error(`${where} has no signature section (inputs/outputs); convert the model with edgeport`);
    }
    return signature;
  }

  function checkFeedNames(signature, feed, where) {
    const expected = Object.keys(signature.inputs).sort();
    const given = Object.keys(feed).sort();
    if (expected.join('\u0000') !== given.join('\u0000')) {
      throw new Error(`${where} signature inputs are [${expected}] but the samples hold [${given}]`);
    }
  }

  /**
   * A string tensor's elements (Uint8Array each, from tensor.bytes(): raw bytes, no UTF-8 decoding) as one
   * byte array: per element a little-endian uint32 length, then the bytes (tfjs_wire.py decodes it).
   */
  function encodeStrings(elements) {
    const total = elements.reduce((sum, bytes) => sum + 4 + bytes.length, 0);
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const bytes of elements) {
      view.setUint32(offset, bytes.length, true);
      out.set(bytes, offset + 4);
      offset += 4 + bytes.length;
    }
    return out;
  }

  /** The inverse of encodeStrings: length-prefixed elements back to one Uint8Array each (raw bytes). */
  function decodeStrings(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const elements = [];
    let offset = 0;
    while (offset < bytes.byteLength) {
      if (offset + 4 > bytes.byteLength) {
        throw new Error('a string tensor on the wire is truncated (length prefix cut off)');
      }
      const length = view.getUint32(offset, true);
      if (offset + 4 + length > bytes.byteLength) {
        throw new Error('a string tensor on the wire is truncated (element cut off)');
      }
      elements.push(bytes.slice(offset + 4, offset + 4 + length));
      offset += 4 + length;
    }
    return elements;
  }

  /** A feed's tensors, keyed by the graph tensor names the signature gives. */
  function inputTensors(tf, signature, feed) {
    const inputs = {};
    for (const [key, value] of Object.entries(feed)) {
      inputs[signature.inputs[key].name] = tf.tensor(value.data, value.shape, value.dtype);
    }
    return inputs;
  }

  /** The graph executed to `names` (node or tensor names), always as an array of tensors. */
  async function executeTo(model, inputs, names) {
    const results = await model.executeAsync(inputs, names);
    return Array.isArray(results) ? results : [results];
  }

  /** Disposes of a run's inputs and results (a result that is an input is disposed of once). */
  function disposeRun(tf, inputs, results) {
    const fed = new Set(Object.values(inputs).map(t => t.id));
    tf.dispose(results.filter(t => t && !fed.has(t.id)));
    tf.dispose(Object.values(inputs));
  }

  /** An async function feed -> result for one loaded GraphModel. */
  function makeRunner(tf, model, where) {
    const signature = signatureOf(model, where);
    const outputKeys = Object.keys(signature.outputs);
    const outputTensorNames = outputKeys.map(key => signature.outputs[key].name);
    let checked = false;
    return async function run(feed) {
      if (!checked) {
        checkFeedNames(signature, feed, where);
        checked = true;
      }
      const inputs = inputTensors(tf, signature, feed);
      const results = await executeTo(model, inputs, outputTensorNames);
      const outputs = {};
      for (let i = 0; i < outputKeys.length; i++) {
        const tensor = results[i];
        const data = tensor.dtype === 'string' ? encodeStrings(await tensor.bytes()) : await tensor.data();
        outputs[outputKeys[i]] = {dtype: tensor.dtype, shape: tensor.shape, data};
      }
      disposeRun(tf, inputs, results);
      return outputs;
    };
  }

  /**
   * The per-layer comparison's fetch (targets/tfjs/layers.py): per batch of node names, every feed executed to
   * those nodes and their float32 outputs downloaded; a batch's tensors are disposed of before the next one
   * runs, so at most one batch's outputs live in the backend. Stops after the batch that takes the downloaded
   * bytes past maxBytes. Returns {samples: [{name: {dtype, shape, data}}], fetched (names the batches run
   * covered), dropped {name: why} (not float32, or not computable on its own)}.
   */
  async function fetchLayers(tf, model, where, feeds, batches, maxBytes) {
    const signature = signatureOf(model, where);
    if (feeds.length) {
      checkFeedNames(signature, feeds[0], where);
    }
    const samples = feeds.map(() => ({}));
    const dropped = {};
    let bytes = 0;
    let fetched = 0;
    for (const batch of batches) {
      if (bytes > maxBytes) {
        break;
      }
      for (let i = 0; i < feeds.length; i++) {
        bytes += await fetchBatch(tf, model, signature, feeds[i], batch, samples[i], dropped);
      }
      fetched += batch.length;
    }
    return {samples, fetched, dropped};
  }

  /**
   * One feed executed to one batch of names, its float32 outputs put `into` the sample; the bytes downloaded.
   * A batch TF.js cannot compute as a whole (a node in a loop frame or an untaken branch) is fetched name by
   * name, and a name it cannot compute on its own is dropped with TF.js's message.
   */
  async function fetchBatch(tf, model, signature, feed, names, into, dropped) {
    const inputs = inputTensors(tf, signature, feed);
    let results;
    try {
      results = await executeTo(model, inputs, names);
    } catch (error) {
      tf.dispose(Object.values(inputs));
      if (names.length === 1) {
        dropped[names[0]] = String((error && error.message) || error).replace(/\s+/g, ' ').slice(0, 200);
        return 0;
      }
      let bytes = 0;
      for (const name of names) {
        bytes += await fetchBatch(tf, model, signature, feed, [name], into, dropped);
      }
      return bytes;
    }
    let bytes = 0;
    for (let i = 0; i < names.length; i++) {
      const tensor = results[i];
      if (!tensor || tensor.dtype !== 'float32') {
        dropped[names[i]] = tensor ? `${tensor.dtype} output, not float32` : 'no output';
        continue;
      }
      const data = await tensor.data();
      into[names[i]] = {dtype: 'float32', shape: tensor.shape, data};
      bytes += data.byteLength;
    }
    disposeRun(tf, inputs, results);
    return bytes;
  }

  /*
   * edgeport's timing protocol, in step with edgeport/checks/timing.py (its docstring is the one spec):
   * first inference; warm-up of at least warmup_runs and warmup_seconds, then until the median of the last
   * warmup_window runs is within warmup_tolerance (plus WARMUP_SLACK_MS) of the window's before (at half of
   * max_seconds at the latest); timed runs until the p50's distribution-free 95 % interval (order statistics
   * at the binomial ranks) is within ±ci_half_width of the median, with at least min_runs and min_seconds
   * (ci_half_width 0: stop there). The interval is looked at after every run up to 20 runs, then each time the count grew by
   * 5 %. One deadline, max_seconds after the first inference, caps warm-up and timed runs together. No timed
   * run within it is an error. Returns raw times (ms); the statistics are computed in Python.
   */
  const CONFIDENCE = 0.95;
  const EXACT_RANKS_UP_TO = 1000;
  const NORMAL_FROM = 100;
  const CHECK_EVERY_RUN_UP_TO = 20;
  const CHECK_GROWTH = 1.05;
  const WARMUP_SLACK_MS = 0.005;

  /** The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
  function normalQuantile(p) {
    const a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
      -3.066479806614716e+01, 2.506628277459239e+00];
    const b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
      -1.328068155288572e+01];
    const c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
      4.374664141464968e+00, 2.938163982698783e+00];
    const d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
    const low = 0.02425;
    if (p < low) {
      const q = Math.sqrt(-2 * Math.log(p));
      return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
          ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - low) {
      return -normalQuantile(1 - p);
    }
    const q = p - 0.5;
    const r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }

  const rankCache = new Map();

  /** 1-based ranks [l, u] whose sorted times bound the q-quantile at CONFIDENCE, or null (timing.quantile_ranks). */
  function quantileRanks(n, q, confidence = CONFIDENCE) {
    const key = `${n} ${q} ${confidence}`;
    if (rankCache.has(key)) {
      return rankCache.get(key);
    }
    let ranks = null;
    if (n >= 1 && q > 0 && q < 1) {
      const tail = (1 - confidence) / 2;
      let low = null;
      let high = null;
      if (n <= EXACT_RANKS_UP_TO || n * q * (1 - q) < NORMAL_FROM) {
        const logFactorial = [0];
        for (let k = 1; k <= n; k++) {
          logFactorial.push(logFactorial[k - 1] + Math.log(k));
        }
        const cdf = [];
        let total = 0;
        for (let k = 0; k <= n; k++) {
          total += Math.exp(logFactorial[n] - logFactorial[k] - logFactorial[n - k] + k * Math.log(q) +
              (n - k) * Math.log1p(-q));
          cdf.push(total);
        }
        for (let k = 1; k <= n; k++) {
          if (cdf[k - 1] <= tail) {
            low = k;
          }
          if (high === null && cdf[k - 1] >= 1 - tail) {
            high = k;
          }
        }
      } else {
        const z = normalQuantile(1 - tail);
        const mean = n * q;
        const sd = Math.sqrt(n * q * (1 - q));
        low = Math.floor(mean + 0.5 - z * sd);
        high = Math.ceil(mean + 0.5 + z * sd);
        low = low >= 1 ? low : null;
        high = high <= n ? high : null;
      }
      ranks = low !== null && high !== null ? [low, high] : null;
    }
    if (rankCache.size > 4096) {
      rankCache.clear();
    }
    rankCache.set(key, ranks);
    return ranks;
  }

  function medianOfSorted(sorted) {
    const n = sorted.length;
    return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }

  /** How far the p50's interval reaches from the median, relative (timing.relative_half_width). */
  function relativeHalfWidth(sorted) {
    const ranks = quantileRanks(sorted.length, 0.5);
    if (!ranks) {
      return Infinity;
    }
    const median = medianOfSorted(sorted);
    const reach = Math.max(median - sorted[ranks[0] - 1], sorted[ranks[1] - 1] - median);
    if (reach <= 0) {
      return 0;
    }
    return median > 0 ? reach / median : Infinity;
  }

  function medianOf(values) {
    return medianOfSorted(Float64Array.from(values).sort());
  }

  /** Warm-up is over: the last window's median within tolerance of the window's before (timing.settled). */
  function settled(times, window, tolerance) {
    window = Math.max(1, window);
    if (times.length < 2 * window) {
      return false;
    }
    const last = medianOf(times.slice(-window));
    const before = medianOf(times.slice(-2 * window, -window));
    return Math.abs(last - before) <= tolerance * before + WARMUP_SLACK_MS;
  }

  async function timeRuns(run, feeds, protocol, now) {
    let start = now();
    await run(feeds[0]);
    const firstInferenceMs = now() - start;
    const began = now();
    const deadline = began + protocol.max_seconds * 1e3;
    const warmUntil = began + protocol.max_seconds * 1e3 / 2;
    const warmMs = [];
    while (now() < warmUntil && !(warmMs.length >= protocol.warmup_runs &&
        now() - began >= protocol.warmup_seconds * 1e3 &&
        settled(warmMs, protocol.warmup_window, protocol.warmup_tolerance))) {
      start = now();
      await run(feeds[warmMs.length % feeds.length]);
      warmMs.push(now() - start);
    }
    const runMs = [];
    const timedFrom = now();
    let nextLook = 0;
    while (now() < deadline) {
      const feed = feeds[runMs.length % feeds.length];
      start = now();
      await run(feed);
      const end = now();
      runMs.push(end - start);
      const n = runMs.length;
      if (n < protocol.min_runs || end - timedFrom < protocol.min_seconds * 1e3) {
        continue;
      }
      if (!(protocol.ci_half_width > 0)) {
        break;
      }
      if (n >= nextLook) {
        nextLook = n < CHECK_EVERY_RUN_UP_TO ? n + 1 : Math.ceil(n * CHECK_GROWTH);
        if (relativeHalfWidth(Float64Array.from(runMs).sort()) <= protocol.ci_half_width) {
          break;
        }
      }
    }
    if (!runMs.length) {
      throw new Error(`no timed run within max_seconds ${protocol.max_seconds}: the first run took ` +
          `${firstInferenceMs.toFixed(0)} ms and ${warmMs.length} warm-up run(s) ` +
          `${(timedFrom - began).toFixed(0)} ms; raise --max-seconds`);
    }
    return {first_inference_ms: firstInferenceMs, warmup_runs: warmMs.length, run_ms: runMs};
  }

  /** Wraps console.warn/log/info so repeated library notices are kept once instead of printed every run. */
  function collectNotices(console) {
    const notices = [];
    const seen = new Set();
    const keep = (...args) => {
      const text = args.map(String).join(' ');
      if (!seen.has(text)) {
        seen.add(text);
        notices.push(text);
      }
    };
    console.warn = keep;
    console.log = keep;
    console.info = keep;
    return notices;
  }

  return {typedArray, encodeStrings, decodeStrings, makeRunner, fetchLayers, timeRuns, collectNotices, quantileRanks,
    relativeHalfWidth, settled};
});
