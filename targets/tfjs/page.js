/*
 * The browser side of edgeport's tfjs-browser runtime. Python calls `edgeportRun(request)` through
 * Playwright; the page loads the model with tf.loadGraphModel(url) over HTTP, as a web app would, then runs
 * the samples (infer), edgeport's timing protocol (benchmark), or the samples to named intermediate nodes
 * (intermediates, for the per-layer comparison). Tensors arrive and leave as base64 of their
 * raw little-endian bytes: {dtype, shape, data}. When timing, the page is served cross-origin isolated, so
 * performance.now() is not coarsened to 100 µs; it reports `isolated` and the timer's measured step.
 */
'use strict';

const WASM_DIR = '/npm/tfjs-backend-wasm/dist/';
const BACKENDS = ['wasm', 'webgl', 'cpu'];
const notices = edgeportProtocol.collectNotices(console);

function fromBase64(record) {
  const text = atob(record.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    bytes[i] = text.charCodeAt(i);
  }
  return {dtype: record.dtype, shape: record.shape, data: edgeportProtocol.typedArray(record.dtype, bytes)};
}

function toBase64(tensor) {
  const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return {dtype: tensor.dtype, shape: tensor.shape, data: btoa(text)};
}

function mapRecord(record, convert) {
  return Object.fromEntries(Object.entries(record).map(([name, value]) => [name, convert(value)]));
}

function webglRenderer() {
  const gl = document.createElement('canvas').getContext('webgl2') ||
      document.createElement('canvas').getContext('webgl');
  if (!gl) {
    return 'no WebGL context';
  }
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
}

async function setBackend(name, threads) {
  if (!BACKENDS.includes(name)) {
    throw new Error(`unknown backend ${name} for tfjs-browser; use one of ${BACKENDS.join(', ')}`);
  }
  if (name === 'wasm') {
    tf.wasm.setWasmPaths(WASM_DIR);
    tf.wasm.setThreadsCount(threads);
    if (threads <= 1) {
      // One thread gets the plain SIMD build most sites get, also on a page isolated for precise timing.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    }
  }
  if (!(await tf.setBackend(name))) {
    const hint = name === 'webgl' ? ` (WebGL renderer: ${webglRenderer()})` : '';
    throw new Error(`TF.js backend ${name} failed to initialize in this browser${hint}`);
  }
  await tf.ready();
  const engine = {backend: name, threads: 1, simd: false, isolated: self.crossOriginIsolated, threaded: false};
  if (name === 'wasm') {
    engine.threads = tf.wasm.getThreadsCount();
    engine.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    engine.threaded = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
  }
  if (name === 'webgl') {
    engine.webgl_version = tf.env().getNumber('WEBGL_VERSION');
    engine.renderer = webglRenderer();
  }
  return engine;
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

function show(lines) {
  document.getElementById('status').textContent = lines.join('\n');
}

async function edgeportRun(request) {
  show([`backend ${request.backend}: loading ${request.model_url}`]);
  const engine = await setBackend(request.backend, request.threads);
  const started = performance.now();
  // streamed: each weight becomes a tensor as its shard arrives, not after every shard is held at once
  const model = await tf.loadGraphModel(request.model_url, {streamWeights: true});
  const loadMs = performance.now() - started;
  const run = edgeportProtocol.makeRunner(tf, model, request.model_url);
  const feeds = request.samples.map(record => mapRecord(record, fromBase64));
  const result = {...engine, tfjs: tf.version.tfjs, load_ms: loadMs, notices, outputs: []};
  const summary = [`TF.js ${tf.version.tfjs}, backend ${engine.backend}` +
      (engine.renderer ? ` on ${engine.renderer}` : '') + `, model loaded in ${loadMs.toFixed(1)} ms`];
  if (request.mode === 'infer') {
    for (const feed of feeds) {
      result.outputs.push(mapRecord(await run(feed), toBase64));
    }
    const shapes = Object.entries(request.samples.length ? result.outputs[0] : {})
        .map(([name, t]) => `${name} [${t.shape}] ${t.dtype}`);
    summary.push(`ran ${feeds.length} samples; outputs: ${shapes.join(', ')}`);
  } else if (request.mode === 'intermediates') {
    const {batches, max_bytes: maxBytes} = request.layers;
    const fetched = await edgeportProtocol.fetchLayers(tf, model, request.model_url, feeds, batches, maxBytes);
    result.outputs = fetched.samples.map(record => mapRecord(record, toBase64));
    result.layers = {fetched: fetched.fetched, dropped: fetched.dropped};
    summary.push(`fetched ${fetched.fetched} layer tensors on ${feeds.length} samples`);
  } else {
    result.timer_step_ms = timerStepMs();
    result.timings = await edgeportProtocol.timeRuns(run, feeds, request.protocol, () => performance.now());
    const times = [...result.timings.run_ms].sort((a, b) => a - b);
    summary.push(`${times.length} timed runs, median ${times[Math.floor(times.length / 2)].toFixed(3)} ms`);
  }
  model.dispose();
  show(summary);
  return result;
}

self.edgeportRun = edgeportRun;
