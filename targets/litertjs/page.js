/*
 * The browser side of litertjs-browser. Python calls `edgeportRun(request)`; the page loads LiteRT.js's wasm
 * from the local install, compiles the .tflite fetched from request.model_url on request.backend (wasm or
 * webgpu; no adapter = unavailable, never wasm instead), then infers or runs edgeport's timing protocol
 * (protocol.js). Each run copies its inputs in and its outputs back to JavaScript (from the GPU too).
 */
import {Tensor, loadAndCompile, loadLiteRt} from '/npm/@litertjs/core/dist/index.js';

const notices = edgeportProtocol.collectNotices(console);
edgeportWire.keepLogLines(console, notices, /^(INFO|WARNING|VERBOSE): /);
let loaded = null;

async function edgeportRun(request) {
  const result = {backend: request.backend, isolated: self.crossOriginIsolated, threads: 1, threaded: false, notices};
  if (request.backend === 'webgpu') {
    const gpu = await edgeportWire.webgpuAdapter();
    if (gpu.reason) {
      return {...result, unavailable: gpu.reason};
    }
    result.adapter = gpu.adapter;
  } else if (request.backend !== 'wasm') {
    throw new Error(`unknown backend ${request.backend} for litertjs-browser; use wasm or webgpu`);
  }
  const threaded = request.threads > 1 && self.crossOriginIsolated;
  if (!loaded) {
    loaded = loadLiteRt('/npm/@litertjs/core/wasm/', {threads: threaded});
  }
  await loaded;
  result.threaded = threaded;
  result.threads = threaded ? Math.min(request.threads, navigator.hardwareConcurrency || 1) : 1;
  const started = performance.now();
  const model = await loadAndCompile(request.model_url, {accelerator: request.backend});
  result.load_ms = performance.now() - started;
  const run = async feed => {
    const inputs = {};
    for (const [name, value] of Object.entries(feed)) {
      inputs[name] = new Tensor(value.data, value.shape);
    }
    const outputs = await model.run(inputs);
    const fetched = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      const host = tensor.accelerator === 'wasm' ? tensor : await tensor.moveTo('wasm');
      fetched[name] = {dtype: host.type.dtype, shape: host.type.layout.dimensions, data: host.toTypedArray().slice()};
      host.delete();
    }
    Object.values(inputs).forEach(tensor => tensor.delete());
    return fetched;
  };
  try {
    return await edgeportWire.answer(request, run, result);
  } finally {
    model.delete();
  }
}

self.edgeportRun = edgeportRun;
