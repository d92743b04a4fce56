// Builds a com.microsoft QLinearAdd model per config, runs all 256x256 uint8 pairs through ONNX Runtime.
const ort = require(process.env.ORT_NODE || 'onnxruntime-node');
function varint(n) { const b = []; n = BigInt(n); while (n > 127n) { b.push(Number(n & 127n) | 128); n >>= 7n; } b.push(Number(n)); return b; }
function key(f, w) { return varint((f << 3) | w); }
function bytesField(f, arr) { return [...key(f, 2), ...varint(arr.length), ...arr]; }
function strField(f, s) { return bytesField(f, [...Buffer.from(s, 'utf8')]); }
function intField(f, v) { return [...key(f, 0), ...varint(v)]; }
function f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); return [...b]; }
function tensorInit(name, type, raw) { return [...intField(2, type), ...strField(8, name), ...bytesField(9, raw)]; }
function valueInfo(name, type, n) {
  const dim = bytesField(1, intField(1, n));
  const shape = bytesField(2, dim);
  const tt = bytesField(1, [...intField(1, type), ...shape]);
  return [...strField(1, name), ...bytesField(2, tt)];
}
function model(sa, za, sb, zb, sc, zc, n) {
  const ins = ['A', 'As', 'Az', 'B', 'Bs', 'Bz', 'Cs', 'Cz'];
  let node = [];
  for (const i of ins) node.push(...strField(1, i));
  node.push(...strField(2, 'C'), ...strField(3, 'add'), ...strField(4, 'QLinearAdd'), ...strField(7, 'com.microsoft'));
  let g = [...bytesField(1, node), ...strField(2, 'g')];
  g.push(...bytesField(5, tensorInit('As', 1, f32(sa))), ...bytesField(5, tensorInit('Az', 2, [za])));
  g.push(...bytesField(5, tensorInit('Bs', 1, f32(sb))), ...bytesField(5, tensorInit('Bz', 2, [zb])));
  g.push(...bytesField(5, tensorInit('Cs', 1, f32(sc))), ...bytesField(5, tensorInit('Cz', 2, [zc])));
  g.push(...bytesField(11, valueInfo('A', 2, n)), ...bytesField(11, valueInfo('B', 2, n)), ...bytesField(12, valueInfo('C', 2, n)));
  const m = [...intField(1, 7), ...bytesField(8, [...strField(1, ''), ...intField(2, 13)]),
             ...bytesField(8, [...strField(1, 'com.microsoft'), ...intField(2, 1)]), ...bytesField(7, g)];
  return Uint8Array.from(m);
}
(async () => {
  const cfgs = JSON.parse(require('fs').readFileSync('cfgs.json'));
  const n = 65536, a = new Uint8Array(n), b = new Uint8Array(n);
  for (let i = 0; i < n; ++i) { a[i] = i & 255; b[i] = i >> 8; }
  const out = [];
  for (const c of cfgs) {
    const s = await ort.InferenceSession.create(model(c[0], c[1], c[2], c[3], c[4], c[5], n));
    const r = await s.run({A: new ort.Tensor('uint8', a, [n]), B: new ort.Tensor('uint8', b, [n])});
    out.push(Array.from(r.C.data));
  }
  require('fs').writeFileSync('ort_out.json', JSON.stringify(out));
  console.log('ok', cfgs.length);
})().catch(e => { console.error(e); process.exit(1); });
