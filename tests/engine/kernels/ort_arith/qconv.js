const ort = require(process.env.ORT_NODE || 'onnxruntime-node');
function varint(n) { const b = []; n = BigInt.asUintN(64, BigInt(n)); while (n > 127n) { b.push(Number(n & 127n) | 128); n >>= 7n; } b.push(Number(n)); return b; }
function key(f, w) { return varint((f << 3) | w); }
function bytesField(f, arr) { return [...key(f, 2), ...varint(arr.length), ...arr]; }
function strField(f, s) { return bytesField(f, [...Buffer.from(s, 'utf8')]); }
function intField(f, v) { return [...key(f, 0), ...varint(v)]; }
function f32s(vs) { const b = Buffer.alloc(4 * vs.length); vs.forEach((v, i) => b.writeFloatLE(v, 4 * i)); return [...b]; }
function i32s(vs) { const b = Buffer.alloc(4 * vs.length); vs.forEach((v, i) => b.writeInt32LE(v, 4 * i)); return [...b]; }
function tensorInit(name, type, dims, raw) { let t = []; for (const d of dims) t.push(...intField(1, d)); return [...t, ...intField(2, type), ...strField(8, name), ...bytesField(9, raw)]; }
function valueInfo(name, type, dims) {
  let shape = [];
  for (const d of dims) shape.push(...bytesField(1, intField(1, d)));
  const tt = bytesField(1, [...intField(1, type), ...bytesField(2, shape)]);
  return [...strField(1, name), ...bytesField(2, tt)];
}
(async () => {
  const fs = require('fs');
  const cfg = JSON.parse(fs.readFileSync('ccfg.json'));
  const out = [];
  for (const c of cfg) {
    const {C, O, K, H, W, xs, xz, ws, w, ys, yz, b, x} = c;
    const ins = ['X', 'xs', 'xz', 'W', 'ws', 'wz', 'ys', 'yz', 'B'];
    let node = [];
    for (const i of ins) node.push(...strField(1, i));
    node.push(...strField(2, 'Y'), ...strField(3, 'n'), ...strField(4, 'QLinearConv'));
    let g = [...bytesField(1, node), ...strField(2, 'g')];
    const inits = [['xs', 1, [], f32s([xs])], ['xz', 2, [], [xz]], ['W', 3, [O, C, K, K], w.map(v => v & 255)],
                   ['ws', 1, [O], f32s(ws)], ['wz', 3, [O], new Array(O).fill(0)], ['ys', 1, [], f32s([ys])],
                   ['yz', 2, [], [yz]], ['B', 6, [O], i32s(b)]];
    for (const t of inits) g.push(...bytesField(5, tensorInit(...t)));
    g.push(...bytesField(11, valueInfo('X', 2, [1, C, H, W])));
    g.push(...bytesField(12, valueInfo('Y', 2, [1, O, H - K + 1, W - K + 1])));
    const m = Uint8Array.from([...intField(1, 7), ...bytesField(8, [...strField(1, ''), ...intField(2, 13)]), ...bytesField(7, g)]);
    const s = await ort.InferenceSession.create(m);
    const r = await s.run({X: new ort.Tensor('uint8', Uint8Array.from(x), [1, C, H, W])});
    out.push(Array.from(r.Y.data));
  }
  fs.writeFileSync('cres.json', JSON.stringify(out));
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
