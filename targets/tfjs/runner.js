#!/usr/bin/env node
/*
 * edgeport's TF.js runner for Node.js: `node runner.js REQUEST RESPONSE`.
 *
 * REQUEST and RESPONSE are tensor bundles (see targets/tfjs_wire.py): a JSON header then raw little-endian
 * tensor bytes. The request's meta says what to do ({mode: "infer"|"benchmark"|"intermediates", model, backend,
 * threads, protocol, layers}); its samples are the feeds. The response holds the outputs (infer), raw timings
 * (benchmark), or per sample the named intermediate nodes' float32 values (intermediates: layers {batches,
 * max_bytes}; the meta's `layers` says how many names were fetched and which were dropped).
 * The model is read from disk by a custom IOHandler (model.json + weight shards, no network); the wasm
 * binaries come from the packages `edgeport setup` installed (NODE_PATH). On failure one line `edgeport-tfjs-error: ...` goes to
 * stderr and the exit code is 2.
 *
 * Test hook: EDGEPORT_TFJS_KILL_AFTER_RUNS=N makes the runner SIGKILL itself after N inferences.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const protocol = require('./protocol.js');

const notices = protocol.collectNotices(console);
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');

const MAGIC = 'EPTFJS1\n';
const ALIGN = 8;
const BACKENDS = ['wasm', 'cpu'];
const WASM_DIR = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), path.sep);

const pad = size => Math.ceil(size / ALIGN) * ALIGN;

function readBundle(file) {
  const blob = fs.readFileSync(file);
  if (blob.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    throw new Error(`${file} is not an edgeport tensor bundle`);
  }
  const length = blob.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  const header = JSON.parse(blob.toString('utf8', start, start + length));
  const data = blob.subarray(pad(start + length));
  const samples = header.samples.map(record => Object.fromEntries(Object.entries(record).map(([name, t]) => {
    const bytes = data.subarray(t.offset, t.offset + t.nbytes);
    return [name, {dtype: t.dtype, shape: t.shape, data: protocol.typedArray(t.dtype, bytes)}];
  })));
  return {meta: header.meta, samples};
}

function writeBundle(file, meta, samples) {
  const chunks = [];
  let offset = 0;
  const records = samples.map(result => Object.fromEntries(Object.entries(result).map(([name, t]) => {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    chunks.push(bytes, Buffer.alloc(pad(bytes.length) - bytes.length));
    const record = {dtype: t.dtype, shape: t.shape, offset, nbytes: bytes.length};
    offset += pad(bytes.length);
    return [name, record];
  })));
  const header = Buffer.from(JSON.stringify({meta, samples: records}), 'utf8');
  const preamble = Buffer.concat([Buffer.from(MAGIC, 'latin1'), Buffer.alloc(4), header]);
  preamble.writeUInt32LE(header.length, MAGIC.length);
  const padding = Buffer.alloc(pad(preamble.length) - preamble.length);
  fs.writeFileSync(file, Buffer.concat([preamble, padding, ...chunks]));
}

/** An IOHandler that reads model.json, then streams its weight shards from disk one file at a time
 * (TF.js's own streaming load, `getWeightStream`): TF.js makes each weight's tensor as its bytes arrive, so a
 * model's weights are not also held whole in one buffer (reading, slicing and concatenating them took three
 * copies: 2.8x the weights at 1.1 GB). */
function fileHandler(modelJsonPath) {
  const folder = path.dirname(modelJsonPath);
  return {
    load: async () => {
      const modelJson = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8'));
      const manifest = modelJson.weightsManifest || [];
      const files = manifest.flatMap(group => group.paths.map(shard => path.join(folder, shard)));
      const weightSpecs = manifest.flatMap(group => group.weights);
      return {...modelJson, weightSpecs, getWeightStream: () => shardStream(files)};
    },
  };
}

function shardStream(files) {
  let next = 0;
  return new ReadableStream({
    pull(controller) {
      if (next < files.length) {
        controller.enqueue(new Uint8Array(fs.readFileSync(files[next++])));
      } else {
        controller.close();
      }
    },
  });
}

async function setBackend(name, threads) {
  if (!BACKENDS.includes(name)) {
    throw new Error(`unknown backend ${name} for tfjs-node; use one of ${BACKENDS.join(', ')}`);
  }
  if (name === 'wasm') {
    wasm.setWasmPaths(WASM_DIR);
    wasm.setThreadsCount(threads);
  }
  if (!(await tf.setBackend(name))) {
    throw new Error(`TF.js backend ${name} failed to initialize in Node ${process.version}`);
  }
  await tf.ready();
  if (name !== 'wasm') {
    return {backend: name, threads: 1, simd: false};
  }
  return {backend: name, threads: wasm.getThreadsCount(), simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')};
}

/**
 * This process's peak RSS. On Linux VmHWM, because getrusage's maxRSS survives execve and would report the
 * Python parent's peak (TensorFlow loaded) instead of Node's; elsewhere process.resourceUsage().maxRSS.
 */
function peakRssBytes() {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) {
      return Number(match[1]) * 1024;
    }
  } catch (error) {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

function withKillSwitch(run) {
  const limit = Number(process.env.EDGEPORT_TFJS_KILL_AFTER_RUNS || 0);
  if (!limit) {
    return run;
  }
  let count = 0;
  return async feed => {
    const result = await run(feed);
    count += 1;
    if (count >= limit) {
      process.kill(process.pid, 'SIGKILL');
    }
    return result;
  };
}

async function main(requestPath, responsePath) {
  const {meta: request, samples} = readBundle(requestPath);
  const engine = await setBackend(request.backend, request.threads);
  const started = performance.now();
  const model = await tf.loadGraphModel(fileHandler(request.model));
  const loadMs = performance.now() - started;
  const run = withKillSwitch(protocol.makeRunner(tf, model, request.model));
  const meta = {...engine, tfjs: tf.version.tfjs, node: process.version, load_ms: loadMs, notices};
  let outputs = [];
  if (request.mode === 'infer') {
    for (const feed of samples) {
      outputs.push(await run(feed));
    }
  } else if (request.mode === 'intermediates') {
    const {batches, max_bytes: maxBytes} = request.layers;
    const fetched = await protocol.fetchLayers(tf, model, request.model, samples, batches, maxBytes);
    outputs = fetched.samples;
    meta.layers = {fetched: fetched.fetched, dropped: fetched.dropped};
  } else {
    meta.timings = await protocol.timeRuns(run, samples, request.protocol, () => performance.now());
  }
  meta.peak_rss_bytes = peakRssBytes();
  writeBundle(responsePath, meta, outputs);
}

main(process.argv[2], process.argv[3]).catch(error => {
  const message = String((error && error.message) || error).replace(/\s+/g, ' ').trim();
  process.stderr.write(`edgeport-tfjs-error: ${message}\n`);
  process.exit(2);
});
