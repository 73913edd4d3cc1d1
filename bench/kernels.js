// Kernel benchmark (not a test): `npm run bench:kernels`. Measures memory bandwidth, our GEMV/GEMM
// per format at K=N=4096 and K=4096,N=11008 for M=1 and M=32 on 1 and 2 threads, ONNX Runtime's
// MatMulNBits (4 bits, accuracy_level 0 and 4) and float MatMul on the same shapes in the same run,
// and quantization throughput. Writes bench/out/kernels.json and prints a table.
import { mkdirSync, writeFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import ort from "onnxruntime-node";
import { loadKernels } from "../lib/kernels/index.js";
import { formatLabel, medianMs } from "../lib/kernels/bench.js";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel } from "../lib/onnx/model.js";
import { toMatMulNBits, transpose } from "../lib/quantize/blockwise.js";

const SHAPES = [
  { k: 4096, n: 4096 },
  { k: 4096, n: 11008 },
];
const MS = [1, 32];
const THREADS = [1, 2];
const FORMATS = [
  { bits: 4, blockSize: 32, symmetric: false, clipSearch: false },
  { bits: 4, blockSize: 32, symmetric: true, clipSearch: false },
  { bits: 4, blockSize: 128, symmetric: true, clipSearch: false },
  { bits: 8, blockSize: 32, symmetric: false, clipSearch: false },
  { bits: 3, blockSize: 32, symmetric: false, clipSearch: false },
  { bits: 2, blockSize: 32, symmetric: false, clipSearch: false },
  { format: "nf4", blockSize: 32 },
  { format: "fp4", blockSize: 32 },
  { format: "mxfp4", blockSize: 32 },
  { format: "fp8", blockSize: 32 },
  { format: "codebook", blockSize: 32 },
];

const kernels = await loadKernels({ prefer: process.env.QUANTGATE_KERNELS_BACKEND || "native" });
console.log(`kernels: ${kernels.backend} (${kernels.isa})${kernels.fallbackReasons.length ? " — " + kernels.fallbackReasons.join("; ") : ""}`);

function weights(count, seed) {
  const w = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    w[i] = (((s & 0xffff) + (s >>> 16)) / 65536 - 1) * 0.05;
  }
  return w;
}
/** Median time with enough runs for ~0.4 s per measurement (at least 5). */
function timeIt(fn) {
  const t0 = performance.now();
  fn();
  const once = Math.max(performance.now() - t0, 0.01);
  const runs = Math.max(5, Math.min(200, Math.round(400 / once)));
  return medianMs(fn, runs, 2);
}
async function timeItAsync(fn) {
  await fn();
  const t0 = performance.now();
  await fn();
  const once = Math.max(performance.now() - t0, 0.01);
  const runs = Math.max(5, Math.min(200, Math.round(400 / once)));
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

// ---- memory bandwidth: read a 256 MiB buffer (far past the 32 MiB L3), best of 5
const bandwidth = {};
{
  const buf = new Float32Array(64 << 20).fill(1);
  for (const t of THREADS) {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      kernels.readSum(buf, t);
      best = Math.min(best, performance.now() - t0);
    }
    bandwidth[t] = buf.byteLength / (best * 1e6);
    console.log(`memory read bandwidth, ${t} thread(s): ${bandwidth[t].toFixed(1)} GB/s`);
  }
}

const rows = [];
const record = (r) => {
  rows.push(r);
  return r;
};

for (const { k, n } of SHAPES) {
  const wT = weights(n * k, n + k);
  for (const threads of THREADS) {
    // float32 baseline (our kernel)
    for (const m of MS) {
      const x = weights(m * k, 5),
        y = new Float32Array(m * n);
      const ms = timeIt(() => kernels.gemmF32(wT, n, k, x, m, threads, y));
      record({ format: "f32", implementation: `quantgate-${kernels.isa}`, m, n, k, threads, ms, weightBytes: n * k * 4 });
    }
    for (const f of FORMATS) {
      const label = formatLabel(f);
      let run, weightBytes, runInt8;
      if ("format" in f) {
        const q = kernels.quantizeTable(f.format, wT, n, k, f.blockSize, { threads: 2 });
        weightBytes = q.packed.byteLength + (q.scales?.byteLength ?? 0);
        run = (x, m, y) => kernels.gemmTable(q, x, m, threads, y);
      } else {
        const p = kernels.packBlockwise(kernels.quantizeBlockwise(wT, n, k, f, 2));
        weightBytes = p.packed.byteLength + p.scales.byteLength + (p.zeroPoints?.byteLength ?? 0);
        run = (x, m, y) => kernels.gemmBlockwise(p, x, m, threads, y);
        if (f.bits === 4 && f.blockSize % 32 === 0) runInt8 = (x, y) => kernels.gemvBlockwiseInt8(p, x, threads, y);
      }
      if (runInt8) {
        const x = weights(k, 5),
          y = new Float32Array(n);
        const ms = timeIt(() => runInt8(x, y));
        record({ format: label, implementation: `quantgate-${kernels.isa}-int8act`, m: 1, n, k, threads, ms, weightBytes });
      }
      for (const m of MS) {
        const x = weights(m * k, 5),
          y = new Float32Array(m * n);
        const ms = timeIt(() => run(x, m, y));
        record({ format: label, implementation: `quantgate-${kernels.isa}`, m, n, k, threads, ms, weightBytes });
      }
    }
    // ONNX Runtime on the same shapes and thread count
    const W = transpose(wT, n, k); // [K][N]
    const q4 = kernels.quantizeBlockwise(wT, n, k, { bits: 4, blockSize: 32, symmetric: false, clipSearch: false }, 2);
    const t4 = toMatMulNBits(q4);
    const nb = q4.blocksPerRow;
    const models = {
      "ort-matmul-f32": [makeNode("MatMul", ["A", "W"], ["Y"])],
      "ort-matmulnbits4-acc0": null,
      "ort-matmulnbits4-acc4": null,
    };
    for (const [name, nodes] of Object.entries(models)) {
      const acc = name.endsWith("acc4") ? 4 : 0;
      const graphNodes = nodes ?? [
        makeNode(
          "MatMulNBits",
          ["A", "B", "S", "Z"],
          ["Y"],
          [makeAttribute("K", k), makeAttribute("N", n), makeAttribute("bits", 4), makeAttribute("block_size", 32), makeAttribute("accuracy_level", acc)],
          { domain: "com.microsoft" },
        ),
      ];
      const inits = nodes
        ? [makeTensor("W", DataType.FLOAT, [k, n], W)]
        : [
            makeTensor("B", DataType.UINT8, [n, nb, 16], t4.b),
            makeTensor("S", DataType.FLOAT, [n * nb], t4.scales),
            makeTensor("Z", DataType.UINT8, [t4.zeroPoints.length], t4.zeroPoints),
          ];
      const model = create(ModelProtoSchema, {
        irVersion: 10n,
        opsetImport: [
          create(OperatorSetIdProtoSchema, { domain: "", version: 17n }),
          create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }),
        ],
        graph: create(GraphProtoSchema, {
          name: "g",
          node: graphNodes,
          initializer: inits,
          input: [makeValueInfo("A", DataType.FLOAT, ["M", k])],
          output: [makeValueInfo("Y", DataType.FLOAT, ["M", n])],
        }),
      });
      const session = await ort.InferenceSession.create(serializeModel(model), { intraOpNumThreads: threads, interOpNumThreads: 1 });
      for (const m of MS) {
        const feeds = { A: new ort.Tensor("float32", weights(m * k, 5), [m, k]) };
        const ms = await timeItAsync(() => session.run(feeds));
        const weightBytes = nodes ? n * k * 4 : t4.b.byteLength + t4.scales.byteLength + t4.zeroPoints.byteLength;
        record({ format: nodes ? "f32" : "int4-b32-asym", implementation: name, m, n, k, threads, ms, weightBytes });
      }
      await session.release();
    }
    console.log(`measured K=${k} N=${n} threads=${threads}`);
  }
}

// ---- quantization throughput (weights per second)
const quantization = [];
{
  const n = 4096,
    k = 4096,
    wT = weights(n * k, 11);
  for (const clipSearch of [false, true])
    for (const threads of THREADS) {
      const spec = { bits: 4, blockSize: 32, symmetric: false, clipSearch };
      const ms = timeIt(() => kernels.quantizeBlockwise(wT, n, k, spec, threads));
      quantization.push({ method: clipSearch ? "int4 MSE clip search" : "int4 RTN", threads, ms, weightsPerSecond: (n * k) / (ms / 1000) });
    }
}

for (const r of rows) {
  r.gflops = (2 * r.m * r.n * r.k) / (r.ms * 1e6);
  r.gbPerS = r.weightBytes / (r.ms * 1e6);
  r.bandwidthFraction = r.gbPerS / bandwidth[r.threads];
}

mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
const report = { date: new Date().toISOString(), backend: kernels.backend, isa: kernels.isa, memoryBandwidthGBps: bandwidth, rows, quantization };
writeFileSync(new URL("./out/kernels.json", import.meta.url), JSON.stringify(report, null, 2));

const pad = (s, w) => String(s).padStart(w);
console.log(
  "\n" +
    [
      "impl".padEnd(24),
      "format".padEnd(18),
      pad("M", 3),
      pad("N", 6),
      pad("K", 5),
      pad("thr", 3),
      pad("ms", 9),
      pad("GFLOP/s", 8),
      pad("GB/s", 7),
      pad("%bw", 5),
    ].join(" "),
);
for (const r of rows)
  console.log(
    [
      r.implementation.padEnd(24),
      r.format.padEnd(18),
      pad(r.m, 3),
      pad(r.n, 6),
      pad(r.k, 5),
      pad(r.threads, 3),
      pad(r.ms.toFixed(3), 9),
      pad(r.gflops.toFixed(1), 8),
      pad(r.gbPerS.toFixed(1), 7),
      pad((100 * r.bandwidthFraction).toFixed(0), 5),
    ].join(" "),
  );
// ---- the issue's targets, from the rows above (same run, same shapes and thread counts)
console.log("\ntargets (int4 = int4-b32-asym; ratio < 1 means ours is faster):");
const find = (impl, format, m, n, threads) =>
  rows.find((r) => r.implementation === impl && r.format === format && r.m === m && r.n === n && r.threads === threads);
const ours = `quantgate-${kernels.isa}`;
for (const { k, n } of SHAPES)
  for (const threads of THREADS) {
    for (const m of MS) {
      const q = find(ours, "int4-b32-asym", m, n, threads);
      const acc0 = find("ort-matmulnbits4-acc0", "int4-b32-asym", m, n, threads);
      const acc4 = find("ort-matmulnbits4-acc4", "int4-b32-asym", m, n, threads);
      const f32 = find("ort-matmul-f32", "f32", m, n, threads);
      const q8 = m === 1 ? find(`${ours}-int8act`, "int4-b32-asym", 1, n, threads) : undefined;
      if (!q || !acc0 || !acc4 || !f32) continue;
      console.log(
        `  K=${k} N=${n} M=${m} thr=${threads}: int4 ${q.ms.toFixed(3)} ms (${(q.ms / acc0.ms).toFixed(2)}x ORT acc0 ${acc0.ms.toFixed(3)}, ` +
          `${(100 * q.bandwidthFraction).toFixed(0)}% bw)` +
          (q8
            ? `; int8-act ${q8.ms.toFixed(3)} ms (${(q8.ms / acc4.ms).toFixed(2)}x ORT acc4 ${acc4.ms.toFixed(3)}, ${(100 * q8.bandwidthFraction).toFixed(0)}% bw)`
            : `; ORT acc4 ${acc4.ms.toFixed(3)}`) +
          `; ORT f32 ${f32.ms.toFixed(3)}`,
      );
    }
    const base = find(ours, "int4-b32-asym", 1, n, threads);
    if (!base) continue;
    const perByte = (r) => r.ms / r.weightBytes / (base.ms / base.weightBytes);
    const others = rows.filter((r) => r.implementation === ours && r.m === 1 && r.n === n && r.threads === threads && r.format !== "f32");
    console.log(`    time per weight byte vs int4 (target <= 1.5): ${others.map((r) => `${r.format} ${perByte(r).toFixed(2)}`).join(", ")}`);
  }

console.log("\nquantization throughput (4096 x 4096):");
for (const q of quantization)
  console.log(`  ${q.method.padEnd(22)} threads=${q.threads} ${(q.weightsPerSecond / 1e6).toFixed(0)} M weights/s (${q.ms.toFixed(1)} ms)`);
console.log("\nwrote bench/out/kernels.json");
