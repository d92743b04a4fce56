#!/usr/bin/env node
// Writes N MNIST test images, normalised as qforge's mnist data spec does ((x/255 − 0.1307)/0.3081, float32),
// as one [N,1,28,28] float32 tensor named "input" in a .safetensors file: the inputs both qforge run and
// ONNX Runtime get in the parity tests.
//   node mnist_inputs.js IMAGES(.gz) N OFFSET OUT.safetensors
'use strict';
const fs = require('fs');
const zlib = require('zlib');
const { write_safetensors } = require('./safetensors.js');

const [file, n_arg, offset_arg, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: mnist_inputs.js IMAGES(.gz) N OFFSET OUT.safetensors');
  process.exit(2);
}
let bytes = fs.readFileSync(file);
if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = zlib.gunzipSync(bytes);
if (bytes.readUInt32BE(0) !== 0x803) throw new Error(`${file}: not an IDX image file`);
const count = bytes.readUInt32BE(4), rows = bytes.readUInt32BE(8), cols = bytes.readUInt32BE(12);
const n = Number(n_arg), offset = Number(offset_arg);
if (offset + n > count) throw new Error(`${file}: has ${count} images, asked for ${offset}+${n}`);
const px = rows * cols;
const data = new Float32Array(n * px);
for (let i = 0; i < n * px; ++i) {
  const x = Math.fround(bytes[16 + offset * px + i] / 255);
  data[i] = Math.fround(Math.fround(x - 0.1307) / 0.3081);
}
write_safetensors(out, { input: { type: 'float32', dims: [n, 1, rows, cols], data } });
