#!/usr/bin/env node
// Compares the output integers of qforge and ONNX Runtime: qforge's int8 codes (tensor A in FILE_A) against
// ORT's codes (tensor B in FILE_B; uint8 codes are int8 codes + 128, Note [QDQ layout] in
// quant/export/export_qdq.cpp). Prints one JSON line {total, differing, max_lsb, top1_agreement};
// exits 1 when codes differ and --exact is given.
//   node compare_codes.js FILE_A A FILE_B B [--exact] [--label NAME]
'use strict';
const { read_safetensors } = require('./safetensors.js');

const args = process.argv.slice(2);
const [fa, na, fb, nb] = args;
const exact = args.includes('--exact');
const li = args.indexOf('--label');
const label = li >= 0 ? args[li + 1] : '';
const a = read_safetensors(fa)[na], b = read_safetensors(fb)[nb];
if (!a) throw new Error(`${fa}: no tensor ${na}`);
if (!b) throw new Error(`${fb}: no tensor ${nb}`);
const codes = (t) => Array.from(t.data, (v) => Number(v) - (t.type === 'uint8' ? 128 : 0));
const ca = codes(a), cb = codes(b);
if (ca.length !== cb.length) throw new Error(`sizes differ: ${ca.length} vs ${cb.length}`);
let differing = 0, max_lsb = 0;
for (let i = 0; i < ca.length; ++i) {
  const d = Math.abs(ca[i] - cb[i]);
  if (d) ++differing;
  max_lsb = Math.max(max_lsb, d);
}
// Top-1 agreement over rows of the last dimension.
const cols = a.dims[a.dims.length - 1], rows = ca.length / cols;
let agree = 0;
const argmax = (v, r) => { let k = 0; for (let j = 1; j < cols; ++j) if (v[r * cols + j] > v[r * cols + k]) k = j; return k; };
for (let r = 0; r < rows; ++r) if (argmax(ca, r) === argmax(cb, r)) ++agree;
console.log(JSON.stringify({ label, total: ca.length, differing, max_lsb, rows, top1_agreement: agree / rows }));
if (exact && differing) process.exit(1);
