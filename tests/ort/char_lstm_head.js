#!/usr/bin/env node
// The recurrent part of a quantized char-lstm as a quantized model directory qforge's int8 runtime can run,
// for the ONNX Runtime parity test. The int8 program starts from a float input it quantizes, and char-lstm
// starts from integer token ids through an Embedding, which has no integer kernel; so the Embedding is applied
// here in float (the rows of its float weight, looked up as qforge's Embedding does) and the directory written
// is the rest of the quantized char-lstm: LSTM(64,256) -> Linear(256,vocab) with the trained weights and the
// encodings calibrated on the whole model (lstm.input_l0 quantizes the embedded characters, now the model
// input). Windows come from
// the text split as qforge's text data splits it (the last tenth of the file is validation; data/text.cpp
// make_text_splits), encoded with the model's vocabulary.
//   node char_lstm_head.js QUANTIZED_DIR TEXT SEQ_LEN N OUT_DIR
// writes the quantized head into OUT_DIR and OUT_DIR.inputs.safetensors: N validation windows [N, T, 64]
// ("input").
'use strict';
const fs = require('fs');
const path = require('path');
const { read_safetensors, write_safetensors } = require('./safetensors.js');

const [model_dir, text_file, seq_arg, n_arg, out_dir] = process.argv.slice(2);
if (!out_dir) {
  console.error('usage: char_lstm_head.js QUANTIZED_DIR TEXT SEQ_LEN N OUT_DIR');
  process.exit(2);
}
const T = Number(seq_arg), N = Number(n_arg);
const spec = JSON.parse(fs.readFileSync(path.join(model_dir, 'model.json'), 'utf8'));
const report = JSON.parse(fs.readFileSync(path.join(model_dir, 'report.json'), 'utf8'));
const weights = read_safetensors(path.join(model_dir, 'weights.safetensors'));
const embed = spec.nodes.find((n) => n.type === 'Embedding');
if (!embed || !report.vocab) throw new Error(`${model_dir}: not a char-lstm directory (no Embedding / vocab)`);
const table = weights[`${embed.name}.weight`];
const E = table.dims[1];

// The head: every node after the Embedding; the node reading the Embedding reads the model input instead.
const nodes = spec.nodes.filter((n) => n !== embed).map((n) => {
  const c = JSON.parse(JSON.stringify(n));
  if (c.inputs) c.inputs = c.inputs.map((i) => (i === embed.name ? 'input' : i));
  return c;
});
fs.mkdirSync(out_dir, { recursive: true });
const json = (f) => JSON.parse(fs.readFileSync(path.join(model_dir, f), 'utf8'));
const put = (f, v) => fs.writeFileSync(path.join(out_dir, f), JSON.stringify(v, null, 2));
const ours = (name) => !name.startsWith(`${embed.name}.`);
put('model.json', { ...spec, nodes, inputs: ['input'] });
const head = {};
for (const [k, t] of Object.entries(weights)) if (ours(k)) head[k] = t;
write_safetensors(path.join(out_dir, 'weights.safetensors'), head);
const enc = json('encodings.json');
for (const kind of ['activation_encodings', 'param_encodings']) {
  const e = enc[kind];
  if (Array.isArray(e)) enc[kind] = e.filter((x) => ours(x.name));
  else for (const k of Object.keys(e)) if (!ours(k)) delete e[k];
}
put('encodings.json', enc);
const sim = json('quantsim.json');
sim.quantizers = sim.quantizers.filter((q) => ours(q.name));
put('quantsim.json', sim);
fs.copyFileSync(path.join(model_dir, 'config.json'), path.join(out_dir, 'config.json'));
const { vocab, ...rest } = report;
put('report.json', { ...rest, model: 'char-lstm head', source: model_dir });

const text = fs.readFileSync(text_file);
const n_val = Math.floor(text.length / 10);
const code = new Map(report.vocab.map((b, i) => [b, i]));
// N windows of T characters spread evenly over the validation text (windows with a character outside the
// vocabulary are skipped).
const input = new Float32Array(N * T * E);
const begin = text.length - n_val, stride = Math.floor((n_val - T) / N);
if (stride < 1) throw new Error(`${text_file}: too short for ${N} windows of ${T}`);
let made = 0;
for (let start = begin; made < N && start + T <= text.length; start += stride) {
  const ids = Array.from(text.subarray(start, start + T), (b) => code.get(b));
  if (ids.some((i) => i === undefined)) continue;
  for (let t = 0; t < T; ++t) input.set(table.data.subarray(ids[t] * E, (ids[t] + 1) * E), (made * T + t) * E);
  ++made;
}
if (made < N) throw new Error(`${text_file}: only ${made} of ${N} windows inside the vocabulary`);
write_safetensors(`${out_dir}.inputs.safetensors`, { input: { type: 'float32', dims: [N, T, E], data: input } });
