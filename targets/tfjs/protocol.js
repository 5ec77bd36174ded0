/*
 * What Node (runner.js) and the browser page (page.js) share: run one feed through a TF.js graph model by
 * its signature, and edgeport's timing protocol (edgeport/checks/latency.py) written once in JavaScript.
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

  /**
   * edgeport's timing protocol (edgeport/checks/latency.py): first inference, warm-up (runs and seconds), then
   * timed runs over the samples until both a minimum count and a minimum time are met. One deadline,
   * max_seconds after the first inference, caps warm-up and timed runs together; warm-up ends at half of it at
   * the latest. No timed run within it is an error. Returns raw times (ms).
   */
  async function timeRuns(run, feeds, protocol, now) {
    let start = now();
    await run(feeds[0]);
    const firstInferenceMs = now() - start;
    const began = now();
    const deadline = began + protocol.max_seconds * 1e3;
    const warmUntil = began + protocol.max_seconds * 1e3 / 2;
    let warm = 0;
    while ((warm < protocol.warmup_runs || now() - began < protocol.warmup_seconds * 1e3) && now() < warmUntil) {
      await run(feeds[warm % feeds.length]);
      warm += 1;
    }
    const runMs = [];
    const timedFrom = now();
    while (now() < deadline) {
      const feed = feeds[runMs.length % feeds.length];
      start = now();
      await run(feed);
      runMs.push(now() - start);
      if (runMs.length >= protocol.min_runs && now() - timedFrom >= protocol.min_seconds * 1e3) {
        break;
      }
    }
    if (!runMs.length) {
      throw new Error(`no timed run within max_seconds ${protocol.max_seconds}: the first run took ` +
          `${firstInferenceMs.toFixed(0)} ms and ${warm} warm-up run(s) ${(timedFrom - began).toFixed(0)} ms; ` +
          'raise --max-seconds');
    }
    return {first_inference_ms: firstInferenceMs, warmup_runs: warm, run_ms: runMs};
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

  return {typedArray, encodeStrings, decodeStrings, makeRunner, fetchLayers, timeRuns, collectNotices};
});
