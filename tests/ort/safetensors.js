// Minimal safetensors reader/writer for the ONNX Runtime test tools (tests/ort/*.js).
'use strict';
const fs = require('fs');

// safetensors: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, data.
const kDtypes = {
  F32: [Float32Array, 'float32'], F64: [Float64Array, 'float64'], I8: [Int8Array, 'int8'],
  U8: [Uint8Array, 'uint8'], I16: [Int16Array, 'int16'], U16: [Uint16Array, 'uint16'],
  I32: [Int32Array, 'int32'], I64: [BigInt64Array, 'int64'], BOOL: [Uint8Array, 'bool'],
};

function read_safetensors(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: too short for a safetensors header`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new Error(`${file}: header length ${n} past the end`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const kind = kDtypes[e.dtype];
    if (!kind) throw new Error(`${file}: tensor ${name}: dtype ${e.dtype} not supported here`);
    const [begin, end] = e.data_offsets;
    const bytes = buf.subarray(base + begin, base + end);
    const copy = new Uint8Array(bytes.length);  // aligned copy for the typed-array view
    copy.set(bytes);
    const data = new kind[0](copy.buffer, 0, bytes.length / kind[0].BYTES_PER_ELEMENT);
    out[name] = { type: kind[1], dims: e.shape, data };
  }
  return out;
}

function write_safetensors(file, tensors) {
  const names = Object.keys(tensors).sort();
  const header = {};
  const chunks = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const entry = Object.entries(kDtypes).find(([, k]) => k[1] === t.type);
    if (!entry) throw new Error(`output ${name}: ORT type ${t.type} has no safetensors dtype here`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: entry[0], shape: t.dims.map(Number), data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]));
  fs.renameSync(tmp, file);
}

module.exports = { read_safetensors, write_safetensors, kDtypes };
