/*
 * Tensors on a browser page (edgeport/browser/wire.py's other end): {dtype, shape, data: base64 of raw
 * little-endian bytes} <-> {dtype, shape, data: TypedArray}, dtype in numpy's names. Also the timer's step.
 */
(function (root) {
  'use strict';

  const TYPED_ARRAYS = {
    float32: Float32Array, float64: Float64Array, float16: Uint16Array, int64: BigInt64Array, uint64: BigUint64Array,
    int32: Int32Array, uint32: Uint32Array, int16: Int16Array, uint16: Uint16Array, int8: Int8Array,
    uint8: Uint8Array, bool: Uint8Array,
  };

  function fromBase64(record) {
    const text = atob(record.data);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      bytes[i] = text.charCodeAt(i);
    }
    const Type = TYPED_ARRAYS[record.dtype];
    if (!Type) {
      throw new Error(`tensor dtype ${record.dtype} cannot cross to the page`);
    }
    return {dtype: record.dtype, shape: record.shape, data: new Type(bytes.buffer)};
  }

  function toBase64(dtype, shape, data) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return {dtype, shape: Array.from(shape, Number), data: btoa(text)};
  }

  function mapRecord(record, convert) {
    return Object.fromEntries(Object.entries(record).map(([name, value]) => [name, convert(value)]));
  }

  /** The smallest step performance.now() takes here, in ms (100 µs when the page is not cross-origin isolated). */
  function timerStepMs() {
    let step = Infinity;
    for (let i = 0; i < 20; i++) {
      const before = performance.now();
      let after = before;
      while (after === before) {
        after = performance.now();
      }
      step = Math.min(step, after - before);
    }
    return step;
  }

  /** {adapter: "vendor architecture"} or {reason} when this browser exposes no WebGPU adapter. */
  async function webgpuAdapter() {
    if (!navigator.gpu) {
      return {reason: 'navigator.gpu is missing: this browser exposes no WebGPU'};
    }
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      return {reason: 'navigator.gpu.requestAdapter() found no WebGPU adapter'};
    }
    const info = adapter.info || {};
    return {adapter: [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown'};
  }

  /** Runs the request's mode with `run` (feed -> {name: {dtype, shape, data}}): outputs or raw timings. */
  async function answer(request, run, result) {
    const feeds = request.samples.map(record => mapRecord(record, fromBase64));
    if (request.mode === 'infer') {
      result.outputs = [];
      for (const feed of feeds) {
        result.outputs.push(mapRecord(await run(feed), t => toBase64(t.dtype, t.shape, t.data)));
      }
    } else {
      result.timer_step_ms = timerStepMs();
      result.timings = await root.edgeportProtocol.timeRuns(run, feeds, request.protocol, () => performance.now());
    }
    const status = document.getElementById('status');
    if (status) {
      status.textContent = JSON.stringify({...result, outputs: undefined, timings: undefined}, null, 1);
    }
    return result;
  }

  /**
   * A wasm runtime's log lines that arrive on console.error (Emscripten's stderr: "INFO: ...", "WARNING: ...")
   * kept as notices; every other console error still fails the run.
   */
  function keepLogLines(console, notices, pattern) {
    const error = console.error.bind(console);
    console.error = (...args) => {
      const text = args.map(String).join(' ').replace(/\x1b\[[0-9;]*m/g, '');  // no terminal colour codes
      if (pattern.test(text)) {
        if (!notices.includes(text)) {
          notices.push(text);
        }
      } else {
        error(...args);
      }
    };
  }

  root.edgeportWire = {fromBase64, toBase64, mapRecord, timerStepMs, webgpuAdapter, answer, keepLogLines};
})(globalThis);
