// Minimal numpy .npy/.npz reader for the ONNX Runtime test tools: the fixtures' inputs (tests/fixtures/onnx/
// *.io.npz) in the same {type, dims, data} form as safetensors.js. Little-endian C-order arrays of f4, f8,
// i1, u1, i4, i8; zip entries stored or deflated.
'use strict';
const fs = require('fs');
const zlib = require('zlib');

const kNpyTypes = {
  '<f4': [Float32Array, 'float32'], '<f8': [Float64Array, 'float64'], '|i1': [Int8Array, 'int8'],
  '|u1': [Uint8Array, 'uint8'], '<i4': [Int32Array, 'int32'], '<i8': [BigInt64Array, 'int64'],
};

function parse_npy(buf, what) {
  if (buf.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw new Error(`${what}: not a .npy array`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.subarray(hstart, hstart + hlen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${what}: Fortran order not supported here`);
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const kind = kNpyTypes[descr];
  if (!kind) throw new Error(`${what}: dtype ${descr} not supported here`);
  const bytes = buf.subarray(hstart + hlen);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  const n = dims.reduce((a, b) => a * b, 1);
  return { type: kind[1], dims, data: new kind[0](copy.buffer, 0, n) };
}

function read_npz(file) {
  const buf = fs.readFileSync(file);
  // End of central directory: the last "PK\5\6".
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) --eocd;
  if (eocd < 0) throw new Error(`${file}: not a zip file`);
  const entries = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out = {};
  for (let i = 0; i < entries; ++i) {
    const method = buf.readUInt16LE(p + 10), csize = buf.readUInt32LE(p + 20);
    const nlen = buf.readUInt16LE(p + 28), xlen = buf.readUInt16LE(p + 30), clen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nlen).toString('utf8');
    p += 46 + nlen + xlen + clen;
    const data_start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(data_start, data_start + csize);
    const bytes = method === 0 ? raw : zlib.inflateRawSync(raw);
    out[name.replace(/\.npy$/, '')] = parse_npy(bytes, `${file}:${name}`);
  }
  return out;
}

module.exports = { read_npz, parse_npy };
