const ort = require(process.env.ORT_NODE || 'onnxruntime-node');
function varint(n) { const b = []; n = BigInt(n); while (n > 127n) { b.push(Number(n & 127n) | 128); n >>= 7n; } b.push(Number(n)); return b; }
function key(f, w) { return varint((f << 3) | w); }
function bytesField(f, arr) { return [...key(f, 2), ...varint(arr.length), ...arr]; }
function strField(f, s) { return bytesField(f, [...Buffer.from(s, 'utf8')]); }
function intField(f, v) { return [...key(f, 0), ...varint(v)]; }
function f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); return [...b]; }
function tensorInit(name, type, raw) { return [...intField(2, type), ...strField(8, name), ...bytesField(9, raw)]; }
function valueInfo(name, type, dims) {
  let shape = [];
  for (const d of dims) shape.push(...bytesField(1, intField(1, d)));
  const tt = bytesField(1, [...intField(1, type), ...bytesField(2, shape)]);
  return [...strField(1, name), ...bytesField(2, tt)];
}
function model(op, domain, ins, inits, inputs, outputs) {
  let node = [];
  for (const i of ins) node.push(...strField(1, i));
  node.push(...strField(2, 'Y'), ...strField(3, 'n'), ...strField(4, op), ...strField(7, domain));
  let g = [...bytesField(1, node), ...strField(2, 'g')];
  for (const t of inits) g.push(...bytesField(5, tensorInit(...t)));
  for (const v of inputs) g.push(...bytesField(11, valueInfo(...v)));
  for (const v of outputs) g.push(...bytesField(12, valueInfo(...v)));
  const m = [...intField(1, 7), ...bytesField(8, [...strField(1, ''), ...intField(2, 13)]),
             ...bytesField(8, [...strField(1, 'com.microsoft'), ...intField(2, 1)]), ...bytesField(7, g)];
  return Uint8Array.from(m);
}
(async () => {
  const fs = require('fs');
  const cfg = JSON.parse(fs.readFileSync('qcfg.json'));
  const res = {quant: [], gap: []};
  for (const c of cfg.quant) {  // [scale, zp]
    const x = Float32Array.from(cfg.x);
    const m = model('QuantizeLinear', '', ['X', 's', 'z'], [['s', 1, f32(c[0])], ['z', 2, [c[1]]]],
                    [['X', 1, [x.length]]], [['Y', 2, [x.length]]]);
    const s = await ort.InferenceSession.create(m);
    const r = await s.run({X: new ort.Tensor('float32', x, [x.length])});
    res.quant.push(Array.from(r.Y.data));
  }
  for (const c of cfg.gap) {  // [N, C, H, W, xs, xz, ys, yz]
    const [N, C, H, W, xs, xz, ys, yz] = c;
    const n = N * C * H * W, x = new Uint8Array(n);
    for (let i = 0; i < n; ++i) x[i] = (i * 2654435761 >>> 13) & 255;
    const m = model('QLinearGlobalAveragePool', 'com.microsoft', ['X', 'xs', 'xz', 'ys', 'yz'],
                    [['xs', 1, f32(xs)], ['xz', 2, [xz]], ['ys', 1, f32(ys)], ['yz', 2, [yz]]],
                    [['X', 2, [N, C, H, W]]], [['Y', 2, [N, C, 1, 1]]]);
    const s = await ort.InferenceSession.create(m);
    const r = await s.run({X: new ort.Tensor('uint8', x, [N, C, H, W])});
    res.gap.push(Array.from(r.Y.data));
  }
  fs.writeFileSync('qres.json', JSON.stringify(res));
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
