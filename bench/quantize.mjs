// Quantization benchmark (not a test): `npm run bench:quantize`. Seconds per algorithm for one K x N
// weight (default 4096 x 4096, int4 asymmetric), through the pipeline's own code path (quantizeWeight:
// transpose, quantize, the emitted weight's error, code entropy) plus the emit stage (MatMulNBits
// tensors), on the native kernels and on the WebAssembly kernels, in interleaved rounds (every
// algorithm and backend once per round), medians over the rounds. Writes bench/out/quantize.json.
//
// Calibration statistics are synthetic (a rank-16 plus diagonal Gram matrix, channel magnitudes with
// a few outliers): the algorithms' cost does not depend on the values.
//
// Cases: the algorithms on int4 block 128 (rtn, mse, awq, gptq, and lqer = RTN plus a rank-16 low-rank
// correction from the Gram matrix), then RTN in every other format the quantizer has (int2, int3, int8,
// nf4, fp4, bnb-fp4, mxfp4, fp8, codebook) for the WebAssembly / native ratio. RTN and the format rows
// run on one thread on both backends (the ratio is single-thread against single-thread); mse, awq,
// gptq and lqer run on --threads native threads (wasm has one). Emit: MatMulNBits for the int formats,
// the lookup subgraph for the table formats.
//
// Reports wall seconds and the process's CPU seconds (on a loaded machine the wall time includes
// waiting for a core). Slow cases (gptq, awq, lqer) run --slow-rounds rounds (default 3), the rest
// --rounds (default 5); the report says how many each had.
// Options: --k 4096 --n 4096 --rounds 5 --slow-rounds 3 --threads 2 --cases rtn,mse,...,codebook --backends native,wasm
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { loadKernels } from "../lib/kernels/index.js";
import { setActiveKernels } from "../lib/kernels/active.js";
import { recipeSchema } from "../lib/config/schema.js";
import { planWeights, quantizeWeight } from "../lib/quantize/index.js";
import { layerGraph } from "../lib/emit/index.js";

const args = Object.fromEntries(process.argv.slice(2).flatMap((a, i, all) => (a.startsWith("--") ? [[a.slice(2), all[i + 1] ?? ""]] : [])));
const K = Number(args.k ?? 4096);
const N = Number(args.n ?? 4096);
const ROUNDS = Number(args.rounds ?? 5);
const SLOW_ROUNDS = Number(args["slow-rounds"] ?? 3);
const THREADS = Number(args.threads ?? 2);
const ALL_CASES = {
  rtn: { format: "int4", algorithm: "rtn" },
  mse: { format: "int4", algorithm: "mse" },
  awq: { format: "int4", algorithm: "awq", slow: true },
  gptq: { format: "int4", algorithm: "gptq", slow: true },
  lqer: { format: "int4", algorithm: "rtn", lowrank: 16, slow: true },
  int2: { format: "int2", algorithm: "rtn" },
  int3: { format: "int3", algorithm: "rtn" },
  int8: { format: "int8", algorithm: "rtn" },
  nf4: { format: "nf4", algorithm: "rtn" },
  fp4: { format: "fp4", algorithm: "rtn" },
  "bnb-fp4": { format: "bnb-fp4", algorithm: "rtn" },
  mxfp4: { format: "mxfp4", algorithm: "rtn" },
  fp8: { format: "fp8", algorithm: "rtn" },
  codebook: { format: "codebook", algorithm: "rtn" },
};
const ALGORITHMS = (args.cases ?? args.algorithms ?? Object.keys(ALL_CASES).join(",")).split(",");
for (const a of ALGORITHMS) if (!ALL_CASES[a]) throw new Error(`unknown case ${a} (known: ${Object.keys(ALL_CASES).join(", ")})`);
const BACKENDS = (args.backends ?? "native,wasm").split(",");

function source(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}
const rnd = source(12345);
const values = Float32Array.from({ length: K * N }, () => rnd() * 0.05);
const meanAbs = Float64Array.from({ length: K }, (_, j) => (j % 97 === 0 ? 20 : 1) * (0.5 + rnd()));
const meanSquare = Float64Array.from(meanAbs, (v) => v * v * 1.3);
const gram = new Float64Array(K * K);
{
  const F = 16;
  const v = Float64Array.from({ length: F * K }, () => rnd());
  for (let i = 0; i < K; i++)
    for (let j = 0; j <= i; j++) {
      let t = 0;
      for (let f = 0; f < F; f++) t += v[f * K + i] * v[f * K + j];
      t *= meanAbs[i] * meanAbs[j];
      if (i === j) t += meanSquare[i];
      gram[i * K + j] = gram[j * K + i] = t;
    }
}
const stats = new Map([["x", { rows: 512, meanAbs, meanSquare, gram, gramRows: 512 }]]);
const site = {
  name: "w",
  node: { input: ["x"], output: ["y"] },
  nodeIndex: 0,
  nodeName: "mm",
  opType: "MatMul",
  opKind: "matmul",
  kind: "product",
  inputIndex: 1,
  k: K,
  n: N,
  transposed: false,
  alpha: 1,
  values,
  dims: [K, N],
  origin: "initializer",
  chainNodes: [],
  readers: [],
  graphPath: [],
};

const backends = [];
for (const name of BACKENDS) {
  const kernels = await loadKernels({ prefer: name });
  if (kernels.backend !== name) {
    console.log(`${name}: not available (${kernels.fallbackReasons.join("; ")})`);
    continue;
  }
  backends.push(kernels);
}

function runOnce(kernels, name) {
  setActiveKernels(kernels.raw);
  const c = ALL_CASES[name];
  const recipe = recipeSchema.parse({
    format: c.format,
    block_size: c.format === "mxfp4" ? 32 : 128,
    symmetric: false,
    algorithm: c.algorithm,
    lowrank: { rank: c.lowrank ?? 0 },
  });
  const [plan] = planWeights([site], recipe);
  // Single-thread rows (RTN in every format) are the wasm / native ratio; the search algorithms use THREADS natively.
  const single = c.algorithm === "rtn" && !c.lowrank;
  const threads = kernels.backend === "wasm" || single ? 1 : THREADS;
  const needsStats = c.algorithm !== "rtn" || c.lowrank;
  const ctx = { quantize: (w, n, k, spec, t) => kernels.quantizeBlockwise(w, n, k, spec, t), stats: needsStats ? stats : undefined, recipe, threads };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const qw = quantizeWeight(plan, ctx);
  const t1 = performance.now();
  layerGraph("p", "x", "y", qw.q, c.format.startsWith("int") ? "matmulnbits" : "lookup-subgraph", 0);
  const t2 = performance.now();
  const cpu = process.cpuUsage(c0);
  // CPU seconds of the process (all threads): on a loaded machine wall time includes waiting for a core.
  return { quantizeS: (t1 - t0) / 1e3, emitS: (t2 - t1) / 1e3, cpuS: (cpu.user + cpu.system) / 1e6, rmse: qw.error.rmse, threads };
}

const cpu = cpus()[0]?.model ?? "unknown";
console.log(
  `quantize ${K}x${N}, block 128 asymmetric (mxfp4 32); ${ROUNDS} interleaved rounds (${SLOW_ROUNDS} for gptq, awq, lqer); native threads ${THREADS} for mse/awq/gptq/lqer, 1 for the RTN rows; wasm 1; CPU ${cpu} x${cpus().length}; load ${loadavg()
    .map((v) => v.toFixed(1))
    .join(" ")}`,
);
const samples = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const algorithm of ALGORITHMS)
    for (const kernels of backends) {
      if (ALL_CASES[algorithm].slow && round >= SLOW_ROUNDS) continue;
      const key = `${algorithm}/${kernels.backend}`;
      const r = runOnce(kernels, algorithm);
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key).push(r);
      console.log(`  round ${round + 1} ${key}: quantize ${r.quantizeS.toFixed(3)} s, emit ${r.emitS.toFixed(3)} s, cpu ${r.cpuS.toFixed(3)} s`);
    }
}
setActiveKernels(undefined);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const rows = [];
for (const algorithm of ALGORITHMS) {
  const row = { algorithm, format: ALL_CASES[algorithm].format };
  for (const kernels of backends) {
    const xs = samples.get(`${algorithm}/${kernels.backend}`) ?? [];
    row[kernels.backend] = {
      quantizeS: median(xs.map((x) => x.quantizeS)),
      emitS: median(xs.map((x) => x.emitS)),
      totalS: median(xs.map((x) => x.quantizeS + x.emitS)),
      cpuS: median(xs.map((x) => x.cpuS)),
      rounds: xs.length,
      threads: xs[0]?.threads,
      rmse: xs[0]?.rmse,
    };
  }
  if (row.native && row.wasm) {
    row.wasmOverNative = row.wasm.totalS / row.native.totalS;
    row.wasmOverNativeCpu = row.wasm.cpuS / row.native.cpuS;
  }
  rows.push(row);
}
console.log(
  `\nmedian wall seconds of quantize + emit (quantize + emit), and CPU seconds; native ${THREADS} threads for mse/awq/gptq/lqer, 1 for RTN rows; wasm 1`,
);
console.log(`case      | ${backends.map((b) => `${b.backend} wall s (q + e) | ${b.backend} cpu s`).join(" | ")} | wasm/native wall | wasm/native cpu | rounds`);
for (const r of rows)
  console.log(
    `${r.algorithm.padEnd(9)} | ${backends.map((b) => `${r[b.backend].totalS.toFixed(3)} (${r[b.backend].quantizeS.toFixed(3)} + ${r[b.backend].emitS.toFixed(3)}) | ${r[b.backend].cpuS.toFixed(3)}`).join(" | ")} | ${r.wasmOverNative ? r.wasmOverNative.toFixed(2) + "x" : "-"} | ${r.wasmOverNativeCpu ? r.wasmOverNativeCpu.toFixed(2) + "x" : "-"} | ${backends.map((b) => r[b.backend].rounds).join("/")}`,
  );
mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
const report = {
  date: new Date().toISOString(),
  cpu,
  cores: cpus().length,
  loadavg: loadavg(),
  shape: { k: K, n: N },
  format: "block 128 asymmetric (mxfp4 block 32); algorithm rows int4",
  rounds: ROUNDS,
  slowRounds: SLOW_ROUNDS,
  threads: { native: THREADS, nativeRtnAndFormats: 1, wasm: 1 },
  isa: Object.fromEntries(backends.map((b) => [b.backend, b.isa])),
  results: rows,
};
writeFileSync(new URL("./out/quantize.json", import.meta.url), JSON.stringify(report, null, 2));
console.log("wrote bench/out/quantize.json");
