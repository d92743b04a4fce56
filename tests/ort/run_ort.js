#!/usr/bin/env node
// Runs an ONNX model on ONNX Runtime's CPU build (the npm package onnxruntime-node, installed by
// tests/ort/install.sh; never used by qforge at run time) and exchanges tensors as .safetensors, so the
// integers ORT computes can be compared with `qforge run`'s.
//
//   node run_ort.js run   MODEL.onnx INPUTS.safetensors|.npz OUT.safetensors [--threads N]
//       feeds every tensor of INPUTS whose name is a model input; writes every model output (float32, int8,
//       uint8, int32 ... as ORT returns them, under the output's ONNX name).
//   node run_ort.js bench MODEL.onnx INPUTS.safetensors [--threads N] [--iters K]
//       prints one JSON line: {"threads", "batch", "iters", "ms_per_run" (median of K timed runs)}.
//   node run_ort.js info
//       prints ORT's version.
// Sessions use ORT's full graph optimisation (the QDQ -> QLinearConv/QLinearMatMul fusions), sequential
// execution, and exactly N intra-op threads (default 1).
'use strict';
const fs = require('fs');
const path = require('path');

function load_ort() {
  const dirs = [process.env.QFORGE_ORT_NODE_MODULES, path.join(__dirname, 'node_modules')].filter(Boolean);
  for (const d of dirs) {
    const p = path.join(d, 'onnxruntime-node');
    if (fs.existsSync(p)) return require(p);
  }
  return require('onnxruntime-node');
}

const { read_safetensors, write_safetensors } = require('./safetensors.js');
const { read_npz } = require('./npz.js');
const read_tensors = (file) => (file.endsWith('.npz') ? read_npz(file) : read_safetensors(file));

function option(args, name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : fallback;
}

async function session_and_feeds(ort, model, inputs_file, threads) {
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const inputs = read_tensors(inputs_file);
  const feeds = {};
  for (const name of session.inputNames) {
    const t = inputs[name] || (session.inputNames.length === 1 && Object.keys(inputs).length === 1
      ? Object.values(inputs)[0] : undefined);
    if (!t) throw new Error(`${inputs_file}: no tensor for model input ${name}`);
    feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
  }
  return { session, feeds };
}

async function main() {
  const [cmd, model, inputs_file, out_file, ...rest] = process.argv.slice(2);
  const ort = load_ort();
  if (cmd === 'info') {
    console.log(JSON.stringify({ onnxruntime: ort.env.versions || null }));
    return;
  }
  const args = cmd === 'bench' ? [out_file, ...rest] : rest;
  const threads = option(args, '--threads', 1);
  const { session, feeds } = await session_and_feeds(ort, model, inputs_file, threads);
  if (cmd === 'run') {
    const results = await session.run(feeds);
    const out = {};
    for (const name of session.outputNames) out[name] = results[name];
    write_safetensors(out_file, out);
  } else if (cmd === 'bench') {
    const iters = option(args, '--iters', 50);
    for (let i = 0; i < 5; ++i) await session.run(feeds);  // warm-up
    const times = [];
    for (let i = 0; i < iters; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const batch = Object.values(feeds)[0].dims[0];
    console.log(JSON.stringify({ threads, batch, iters, ms_per_run: times[Math.floor(iters / 2)] }));
  } else {
    throw new Error(`unknown command ${cmd} (run | bench | info)`);
  }
}

main().catch((e) => {
  console.error(`run_ort.js: ${e.message}`);
  process.exit(1);
});
