// Kernel benchmark (not a test): `npm run bench:kernels`. Measures memory bandwidth, then
// 1. head to head, in interleaved rounds (every implementation once per round, >= 5 rounds, medians and
//    ratios): our int4 kernels with int8 activations (GEMV at M = 1, GEMM above) and with float32
//    activations, ONNX Runtime's MatMulNBits at accuracy_level 0 and 4, ONNX Runtime's float MatMul and
//    our float32 GEMM, at K = 4096, N = 4096 and 11008, M = 1, 8, 32, 128, blocks 32 and 128, 1 and 2 threads;
// 2. our GEMV/GEMM per format at M = 1 and 32 (one sequential sweep), and quantization throughput;
// 3. the bundled examples' float vs quantized latency at M = 1 and prefill with the chosen accuracy level
//    (bench/examples.mjs; --examples no skips it).
// Writes bench/out/kernels.json (CPU model and load included) and prints the tables.
//    At M = 1 every implementation is also timed cold: a 64 MiB read before each call evicts the weights
//    from the caches (the L3 is 32 MiB), so the time includes streaming them from memory.
//    Each cell reports the median over rounds (a round's sample is the median of its repetitions) and
//    the best single call; on a loaded machine the best is the steadier estimate of the kernel's speed.
// Options: --rounds 5 --only h2h (skip the sweep) --ms 1,8,32,128 --blocks 32,128 --threads 1,2
//          --ns 4096,11008 --cache hot,cold (M = 1 only; larger M is always hot)
//          --impls ours-int8act,ort-acc4 (time only these of ours-int8act, ours-f32act, ort-acc0, ort-acc4,
//          ort-f32, ours-f32; the others print as "-")
// Quick subset for the int8-activation targets: --only h2h --ms 1,8,32 --ns 4096 --threads 1
import { spawnSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { create } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import ort from "onnxruntime-node";
import { loadKernels } from "../lib/kernels/index.js";
import { formatLabel, medianMs } from "../lib/kernels/bench.js";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel } from "../lib/onnx/model.js";
import { toMatMulNBits, transpose } from "../lib/quantize/blockwise.js";

const ARGS = Object.fromEntries(process.argv.slice(2).flatMap((a, i, all) => (a.startsWith("--") ? [[a.slice(2), all[i + 1] ?? ""]] : [])));
const listArg = (name, dflt) => (ARGS[name] ? ARGS[name].split(",").map(Number) : dflt);
const ROUNDS = Math.max(5, Number(ARGS.rounds ?? 5));
const H2H_MS = listArg("ms", [1, 8, 32, 128]);
const H2H_BLOCKS = listArg("blocks", [32, 128]);
const SHAPES = listArg("ns", [4096, 11008]).map((n) => ({ k: 4096, n }));
const CACHES = ARGS.cache ? ARGS.cache.split(",") : ["hot", "cold"];
const MS = [1, 32];
const THREADS = listArg("threads", [1, 2]);
const IMPLS = ARGS.impls ? new Set(ARGS.impls.split(",")) : null;
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
console.log(
  `CPU: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}; load average ${loadavg()
    .map((v) => v.toFixed(1))
    .join(" ")}`,
);
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

// ---- 1. head to head, interleaved rounds
function ortModel(nodes, inits, k, n) {
  return create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: 17n }), create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n })],
    graph: create(GraphProtoSchema, {
      name: "g",
      node: nodes,
      initializer: inits,
      input: [makeValueInfo("A", DataType.FLOAT, ["M", k])],
      output: [makeValueInfo("Y", DataType.FLOAT, ["M", n])],
    }),
  });
}
// Every ONNX Runtime session of a round is alive at once (float, acc0 and acc4 at two block sizes), each with its
// own intra-op pool. With spinning on (ORT's default), the idle pools of the sessions not being timed spin on the
// machine's cores and steal them from whatever runs next, ours or another ORT session: on 2 cores every two-thread
// median came out near the one-thread time while the best calls were twice as fast. Without spinning, a pool's
// threads block when idle; ORT's own two-thread times improved too (acc4, 4096x4096 M = 1: 0.38 -> 0.20 ms).
const ORT_OPTIONS = (threads) => ({ intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: "0" } } } });
// Reading this evicts every weight from the caches before a cold call.
const flushBuffer = new Float32Array(16 << 20).fill(1);
const flush = () => kernels.readSum(flushBuffer, 1);
/** Median of `reps` back-to-back calls (one sample of a round); im.best keeps the fastest call. */
async function sample(im) {
  const t = [];
  for (let i = 0; i < im.reps; i++) {
    if (im.cache === "cold") flush();
    const t0 = performance.now();
    await im.run();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  im.best = Math.min(im.best, t[0]);
  return t[t.length >> 1];
}
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const h2h = [];
for (const { k, n } of SHAPES) {
  const wT = weights(n * k, n + k);
  const W = transpose(wT, n, k); // [K][N] for ORT's MatMul
  for (const threads of THREADS) {
    const impls = []; // { name, block, m, run, weightBytes }
    const sessions = [];
    const fSession = await ort.InferenceSession.create(
      serializeModel(ortModel([makeNode("MatMul", ["A", "W"], ["Y"])], [makeTensor("W", DataType.FLOAT, [k, n], W)], k, n)),
      ORT_OPTIONS(threads),
    );
    sessions.push(fSession);
    for (const m of H2H_MS) {
      const x = weights(m * k, 5 + m),
        y = new Float32Array(m * n);
      const feeds = { A: new ort.Tensor("float32", x, [m, k]) };
      impls.push({ name: "ort-f32", block: 0, m, run: () => fSession.run(feeds), weightBytes: n * k * 4 });
      impls.push({ name: "ours-f32", block: 0, m, run: () => kernels.gemmF32(wT, n, k, x, m, threads, y), weightBytes: n * k * 4 });
    }
    for (const block of H2H_BLOCKS) {
      const spec = { bits: 4, blockSize: block, symmetric: false, clipSearch: false };
      const q = kernels.quantizeBlockwise(wT, n, k, spec, 2);
      // the GEMV's own weight layout, prepared once as ONNX Runtime prepacks its weights at session creation
      const p = kernels.prepareGemvInt8(kernels.packBlockwise(q));
      const t4 = toMatMulNBits(q);
      const nb = q.blocksPerRow;
      const weightBytes = t4.b.byteLength + t4.scales.byteLength + t4.zeroPoints.byteLength;
      const inits = [
        makeTensor("B", DataType.UINT8, [n, nb, block / 2], t4.b),
        makeTensor("S", DataType.FLOAT, [n * nb], t4.scales),
        makeTensor("Z", DataType.UINT8, [t4.zeroPoints.length], t4.zeroPoints),
      ];
      const acc = {};
      for (const level of [0, 4]) {
        const node = makeNode(
          "MatMulNBits",
          ["A", "B", "S", "Z"],
          ["Y"],
          [makeAttribute("K", k), makeAttribute("N", n), makeAttribute("bits", 4), makeAttribute("block_size", block), makeAttribute("accuracy_level", level)],
          { domain: "com.microsoft" },
        );
        acc[level] = await ort.InferenceSession.create(serializeModel(ortModel([node], inits, k, n)), ORT_OPTIONS(threads));
        sessions.push(acc[level]);
      }
      for (const m of H2H_MS) {
        const x = weights(m * k, 5 + m),
          y = new Float32Array(m * n);
        const feeds = { A: new ort.Tensor("float32", x, [m, k]) };
        impls.push({ name: "ort-acc0", block, m, run: () => acc[0].run(feeds), weightBytes });
        impls.push({ name: "ort-acc4", block, m, run: () => acc[4].run(feeds), weightBytes });
        impls.push({
          name: "ours-int8act",
          block,
          m,
          run: m === 1 ? () => kernels.gemvBlockwiseInt8(p, x, threads, y) : () => kernels.gemmBlockwiseInt8(p, x, m, threads, y),
          weightBytes,
        });
        impls.push({ name: "ours-f32act", block, m, run: () => kernels.gemmBlockwise(p, x, m, threads, y), weightBytes });
      }
      // The read-bandwidth peer of the cold cells: a plain read of as many bytes as the weights, cold, in the same
      // rounds (the probe above runs once, before everything, and this machine's bandwidth drifts by 20-30%).
      if (H2H_MS.includes(1) && CACHES.includes("cold")) {
        // allocated as the kernels' own weights are (transparent huge pages where the addon can ask), so the
        // peer reads from the same kind of memory
        const raw = new Uint8Array(4 * Math.ceil(weightBytes / 4));
        kernels.raw.adviseHugePages?.(raw);
        const bytes = new Float32Array(raw.buffer).fill(1);
        impls.push({ name: "read", block, m: 1, run: () => kernels.readSum(bytes, threads), weightBytes });
      }
    }
    // M = 1 is timed hot and cold (CACHES); larger M hot
    const timed = impls
      .filter((im) => !IMPLS || IMPLS.has(im.name) || im.name === "read")
      .flatMap((im) => (im.name === "read" ? ["cold"] : im.m === 1 ? CACHES : ["hot"]).map((cache) => ({ ...im, cache })));
    // warm-up, and repetitions per sample sized to ~30 ms
    for (const im of timed) {
      const t0 = performance.now();
      await im.run();
      await im.run();
      im.reps = Math.max(1, Math.min(50, Math.round(60 / Math.max(performance.now() - t0, 0.01))));
      if (im.cache === "cold") im.reps = Math.max(1, Math.min(im.reps, 20));
      im.samples = [];
      im.best = Infinity;
    }
    // A pause before each sample: ONNX Runtime's pool threads spin for a while after a run, and on a 2-core
    // machine a spinning thread of the previous implementation would take the core the next one's worker needs.
    const settle = () => sleep(20);
    for (let round = 0; round < ROUNDS; round++)
      for (const im of timed) {
        await settle();
        im.samples.push(await sample(im));
      }
    for (const im of timed)
      h2h.push({
        impl: im.name,
        block: im.block,
        m: im.m,
        n,
        k,
        threads,
        cache: im.cache,
        ms: median(im.samples),
        bestMs: im.best,
        samples: im.samples,
        weightBytes: im.weightBytes,
      });
    for (const s of sessions) await s.release();
    console.log(`head to head measured: K=${k} N=${n} threads=${threads} (${ROUNDS} interleaved rounds)`);
  }
}
const h2hFind = (impl, block, m, n, threads, cache) =>
  h2h.find((r) => r.impl === impl && r.block === block && r.m === m && r.n === n && r.threads === threads && r.cache === cache);
const h2hTable = [];
console.log(
  `\nhead to head, int4 asymmetric, K = 4096 (median ms over ${ROUNDS} interleaved rounds, then the best single call; ratio = other / ours, > 1 means ours is faster;\n%bw: cold, the time to read as many bytes cold in the same rounds / ours; hot, weight bytes / median time / the probe's read bandwidth)`,
);
console.log("  N      blk M   thr cache | int8act  f32act    acc0    acc4  ORTf32 oursf32 | acc4/i8 acc0/i8 ORTf32/i8 | best: int8act  acc4  acc4/i8 | %bw");
for (const { k, n } of SHAPES)
  for (const block of H2H_BLOCKS)
    for (const threads of THREADS)
      for (const m of H2H_MS)
        for (const cache of m === 1 ? CACHES : ["hot"]) {
          const get = (impl, blk = block) => h2hFind(impl, blk, m, n, threads, cache);
          const q8 = get("ours-int8act"),
            qf = get("ours-f32act"),
            a0 = get("ort-acc0"),
            a4 = get("ort-acc4"),
            of = get("ort-f32", 0),
            uf = get("ours-f32", 0);
          if (!q8 || !a4) continue;
          const none = { ms: NaN, bestMs: NaN };
          // cold: the same bytes read cold in the same rounds / ours; hot: the probe (the weights come from cache)
          const rd = cache === "cold" ? get("read") : undefined;
          const bw = rd ? rd.ms / q8.ms : q8.weightBytes / (q8.ms * 1e6) / bandwidth[threads];
          const row = {
            k,
            n,
            block,
            m,
            threads,
            cache,
            int8actMs: q8.ms,
            f32actMs: (qf ?? none).ms,
            ortAcc0Ms: (a0 ?? none).ms,
            ortAcc4Ms: a4.ms,
            ortF32Ms: (of ?? none).ms,
            oursF32Ms: (uf ?? none).ms,
            acc4OverInt8act: a4.ms / q8.ms,
            acc0OverInt8act: (a0 ?? none).ms / q8.ms,
            ortF32OverInt8act: (of ?? none).ms / q8.ms,
            best: {
              int8actMs: q8.bestMs,
              ortAcc4Ms: a4.bestMs,
              ortAcc0Ms: (a0 ?? none).bestMs,
              ortF32Ms: (of ?? none).bestMs,
              acc4OverInt8act: a4.bestMs / q8.bestMs,
            },
            bandwidthFraction: bw,
            bandwidthFrom: rd ? "cold read of the weight bytes, same rounds" : "probe",
            readMs: rd ? rd.ms : undefined,
          };
          h2hTable.push(row);
          const f = (v) => (Number.isNaN(v) ? "-" : v.toFixed(3)).padStart(7);
          const x = (v, w = 6) => (Number.isNaN(v) ? "-" : `${v.toFixed(2)}x`).padStart(w + 1);
          console.log(
            `  ${String(n).padEnd(6)} ${String(block).padStart(3)} ${String(m).padStart(3)} ${String(threads).padStart(3)} ${cache.padEnd(5)} |${f(q8.ms)} ${f(row.f32actMs)} ${f(row.ortAcc0Ms)} ${f(a4.ms)} ${f(row.ortF32Ms)} ${f(row.oursF32Ms)} |${x(row.acc4OverInt8act)} ${x(row.acc0OverInt8act)} ${x(row.ortF32OverInt8act, 8)} |     ${f(q8.bestMs)} ${f(a4.bestMs)} ${x(row.best.acc4OverInt8act)} | ${m === 1 ? (100 * bw).toFixed(0) : "-"}`,
          );
        }
if (ARGS.only === "h2h") {
  mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
  const report = {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    loadavg: loadavg(),
    backend: kernels.backend,
    isa: kernels.isa,
    memoryBandwidthGBps: bandwidth,
    rounds: ROUNDS,
    headToHead: h2hTable,
    headToHeadSamples: h2h,
  };
  writeFileSync(new URL("./out/kernels.json", import.meta.url), JSON.stringify(report, null, 2));
  console.log("wrote bench/out/kernels.json (head to head only)");
  process.exit(0);
}

// ---- 2. per-format sweep (sequential)
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
      const session = await ort.InferenceSession.create(serializeModel(model), ORT_OPTIONS(threads));
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
const report = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  loadavg: loadavg(),
  backend: kernels.backend,
  isa: kernels.isa,
  memoryBandwidthGBps: bandwidth,
  rounds: ROUNDS,
  headToHead: h2hTable,
  headToHeadSamples: h2h,
  rows,
  quantization,
};
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

// ---- 3. the bundled examples: float vs quantized at M=1 and at their prefill / evaluation batch, with the accuracy
// level and forms the gate chose (bench/examples.mjs, its own process: every gate runs through the CLI)
if (ARGS.examples !== "no") {
  console.log("\nbundled examples, float -> quantized (bench/examples.mjs):");
  const r = spawnSync(process.execPath, [fileURLToPath(new URL("./examples.mjs", import.meta.url))], { stdio: "inherit" });
  if (r.status !== 0) process.exitCode = 1;
}
