// Loads one built addon file (a prebuilt from dist/kernels/<platform>-<arch>/, possibly under
// qemu-aarch64 with an arm64 node) and checks it against the TypeScript reference compiled to lib/
// (npm run build): integer quantization byte-identical to quantizeBlockwiseRef, GEMV/GEMM on the
// SIMD path against the TypeScript GEMM, table formats and the int8-activation GEMV against the
// addon's own scalar references. Plain node, no node_modules needed at run time.
// Usage: node kernels/test/addon-check.mjs <addon.node> [lib-dir]
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [addonPath, libArg] = process.argv.slice(2);
if (!addonPath) {
  console.error("usage: node kernels/test/addon-check.mjs <addon.node> [lib-dir]");
  process.exit(2);
}
const lib = path.resolve(libArg ?? path.join(path.dirname(new URL(import.meta.url).pathname), "../../lib"));
const { kernelsFromRaw } = await import(pathToFileURL(path.join(lib, "kernels/index.js")).href);
const { jsRawKernels } = await import(pathToFileURL(path.join(lib, "kernels/js.js")).href);
const { quantizeBlockwiseRef } = await import(pathToFileURL(path.join(lib, "quantize/blockwise.js")).href);

const raw = createRequire(import.meta.url)(path.resolve(addonPath));
const k = kernelsFromRaw(raw, "native", []);
const js = kernelsFromRaw(jsRawKernels(), "js", []);
console.log(`addon ${addonPath}: isa ${k.isa}, ${process.platform}-${process.arch}, node ${process.version}`);

let failures = 0;
const counts = { quantize: 0, gemm: 0, table: 0, q8: 0 };
function fail(msg) {
  failures++;
  if (failures < 20) console.log(`FAIL: ${msg}`);
}

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}
function weights(count, dist, seed) {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-300)) * Math.cos(2 * Math.PI * r());
  const w = new Float32Array(count);
  for (let i = 0; i < count; i++)
    w[i] =
      dist === "gaussian"
        ? gauss() * 0.05
        : dist === "heavy"
          ? (gauss() / (0.15 + r())) * 0.02
          : dist === "ties"
            ? (Math.floor(r() * 9) - 4) * 0.25
            : dist === "tiny"
              ? gauss() * 1e-39
              : 0;
  if (dist === "gaussian" && count > 64) w.fill(0, 0, 40);
  return w;
}
const same = (a, b) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

// The SIMD kernels must be the ones in use (an arm64 build without NEON would report "scalar").
if (k.kernelImpl("quantize", "int4") !== "simd") fail(`quantize int4 runs the ${k.kernelImpl("quantize", "int4")} kernel`);
if (k.kernelImpl("gemv", "int4") !== "simd") fail(`gemv int4 runs the ${k.kernelImpl("gemv", "int4")} kernel`);

// 1. Integer quantization: byte-identical to the TypeScript reference.
const dists = ["gaussian", "heavy", "ties", "zeros", "tiny"];
const shapes = [
  [3, 95],
  [1, 17],
  [2, 129],
  [5, 33],
  [4, 256],
];
for (const bits of [2, 3, 4, 8])
  for (const blockSize of [16, 32, 64, 128])
    for (const symmetric of [false, true])
      for (const clipSearch of [false, true])
        for (const [si, [n, kk]] of shapes.entries()) {
          const spec = { bits, blockSize, symmetric, clipSearch };
          const dist = dists[(si + bits + blockSize / 16) % dists.length];
          const w = weights(n * kk, dist, 7 + si);
          const ref = quantizeBlockwiseRef(w, n, kk, spec);
          const got = k.quantizeBlockwise(w, n, kk, spec, 2);
          if (!same(got.codes, ref.codes) || !same(got.scales, ref.scales) || !same(got.zeroPoints, ref.zeroPoints))
            fail(`quantize ${JSON.stringify(spec)} n=${n} k=${kk} ${dist} differs from quantizeBlockwiseRef`);
          counts.quantize++;
        }

// 2. GEMV / GEMM on packed codes against the TypeScript GEMM: |y - yref| <= 2e-5 * sum |w x|.
function compare(what, y, yref, mag) {
  for (let i = 0; i < y.length; i++) if (!(Math.abs(y[i] - yref[i]) <= 2e-5 * (mag[i] + 1e-30))) return fail(`${what}: y[${i}]=${y[i]} ref=${yref[i]}`);
}
function absGemm(deq, x, n, kk, m) {
  const mag = new Float64Array(m * n);
  for (let mi = 0; mi < m; mi++)
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let i = 0; i < kk; i++) s += Math.abs(deq[r * kk + i] * x[mi * kk + i]);
      mag[mi * n + r] = s;
    }
  return mag;
}
for (const bits of [2, 3, 4, 8])
  for (const blockSize of [32, 64, 128])
    for (const [n, kk, m] of [
      [7, 300, 1],
      [5, 256, 1],
      [6, 200, 3],
      [9, 128, 5],
    ]) {
      const spec = { bits, blockSize, symmetric: (n + blockSize) % 2 === 0, clipSearch: false };
      const p = k.packBlockwise(k.quantizeBlockwise(weights(n * kk, "heavy", n + bits), n, kk, spec));
      const x = weights(m * kk, "gaussian", 3 + m);
      const mag = absGemm(k.dequantizeBlockwise(p), x, n, kk, m);
      compare(`gemm int${bits} bs=${blockSize} n=${n} k=${kk} m=${m}`, k.gemmBlockwise(p, x, m, 2), js.gemmBlockwise(p, x, m), mag);
      counts.gemm++;
      if (bits === 4 && m === 1) {
        k.forceReference(true);
        const yref = k.gemvBlockwiseInt8(p, x);
        k.forceReference(false);
        const y = k.gemvBlockwiseInt8(p, x, 2);
        for (let i = 0; i < n; i++)
          if (!(Math.abs(y[i] - yref[i]) <= 2e-6 * (mag[i] + 1e-30))) {
            fail(`gemv int8-act bs=${blockSize} n=${n} k=${kk}: y[${i}]=${y[i]} ref=${yref[i]}`);
            break;
          }
        counts.q8++;
      }
    }

// 3. Table formats: SIMD GEMV/GEMM against the addon's scalar reference.
for (const format of ["nf4", "fp4", "mxfp4", "fp8", "codebook"])
  for (const [n, kk, m, bs] of [
    [5, 256, 1, 32],
    [6, 200, 3, 64],
    [4, 96, 2, 32],
  ]) {
    const blockSize = format === "mxfp4" ? 32 : bs;
    const q = k.quantizeTable(format, weights(n * kk, "gaussian", 11 + n), n, kk, blockSize);
    const x = weights(m * kk, "gaussian", 5 + m);
    const mag = absGemm(k.dequantizeTable(q), x, n, kk, m);
    k.forceReference(true);
    const yref = k.gemmTable(q, x, m);
    k.forceReference(false);
    compare(`gemm ${format} bs=${blockSize} n=${n} k=${kk} m=${m}`, k.gemmTable(q, x, m, 2), yref, mag);
    counts.table++;
  }

const total = counts.quantize + counts.gemm + counts.table + counts.q8;
console.log(
  `${counts.quantize} byte-identical quantizations, ${counts.gemm} integer GEMV/GEMM, ${counts.q8} int8-activation GEMV, ${counts.table} table-format GEMV/GEMM checks`,
);
if (failures) {
  console.log(`addon-check: ${failures} of ${total} checks failed`);
  process.exit(1);
}
console.log(`addon-check: all ${total} checks passed`);
