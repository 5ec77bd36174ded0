/*
 * The browser side of ort-web. Python calls `edgeportRun(request)`; the page creates an InferenceSession for
 * the .onnx fetched from request.model_url with exactly one execution provider, request.backend (wasm or
 * webgpu; no adapter = unavailable, never wasm instead), the wasm binaries from the local install, then
 * infers or runs edgeport's timing protocol (protocol.js). Each run's outputs are read back to JavaScript.
 */
'use strict';

const ORT_WASM_DIR = '/npm/onnxruntime-web/dist/';
const notices = edgeportProtocol.collectNotices(console);
// ONNX Runtime's own warnings and infos (e.g. "[W:onnxruntime:, session_state.cc] VerifyEachNodeIsAssignedToAnEp:
// some nodes were not assigned to the preferred execution providers") arrive on console.error: said, not failed.
edgeportWire.keepLogLines(console, notices, /\[[WI]:onnxruntime:/);  // after its colour code and time

async function edgeportRun(request) {
  const result = {backend: request.backend, isolated: self.crossOriginIsolated, threads: 1, threaded: false, notices};
  if (request.backend === 'webgpu') {
    const gpu = await edgeportWire.webgpuAdapter();
    if (gpu.reason) {
      return {...result, unavailable: gpu.reason};
    }
    result.adapter = gpu.adapter;
  } else if (request.backend !== 'wasm') {
    throw new Error(`unknown backend ${request.backend} for ort-web; use wasm or webgpu`);
  }
  ort.env.wasm.wasmPaths = ORT_WASM_DIR;
  ort.env.wasm.proxy = false;
  ort.env.wasm.numThreads = Math.max(1, request.threads);
  ort.env.logLevel = 'error';
  const started = performance.now();
  const session = await ort.InferenceSession.create(request.model_url, {
    executionProviders: [request.backend],
    graphOptimizationLevel: 'all',
  });
  result.load_ms = performance.now() - started;
  result.threads = self.crossOriginIsolated ? ort.env.wasm.numThreads : 1;
  result.threaded = result.threads > 1;
  const run = async feed => {
    const inputs = {};
    for (const [name, value] of Object.entries(feed)) {
      inputs[name] = new ort.Tensor(value.dtype, value.data, value.shape);
    }
    const outputs = await session.run(inputs);
    const fetched = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      const data = await tensor.getData(true);  // from the GPU too; releases the tensor
      fetched[name] = {dtype: tensor.type, shape: tensor.dims, data: data.slice()};
    }
    return fetched;
  };
  try {
    return await edgeportWire.answer(request, run, result);
  } finally {
    await session.release();
  }
}

self.edgeportRun = edgeportRun;
