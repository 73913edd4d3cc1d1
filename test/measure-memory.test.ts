// Peak memory belongs to the measured model's own process: a parent inflated to 1 GiB leaves the figure unchanged.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { feedsToJson } from "../src/data/tensors.js";
import { measureModelMemory, measureModels } from "../src/measure/index.js";
import { parseVmHwm } from "../src/measure/memory.js";
import { measureSchema } from "../src/config/schema.js";
import { serializeModel } from "../src/onnx/model.js";
import { buildMlp, randomMatrix } from "./helpers/models.js";

const linux = process.platform === "linux";
const GIB = 1024 ** 3;

describe("parseVmHwm", () => {
  it("reads the peak resident set in bytes from /proc/<pid>/status", () => {
    expect(parseVmHwm("Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t   40416 kB\nVmRSS:\t 30000 kB\n")).toBe(40416 * 1024);
    expect(parseVmHwm("Name:\tnode\n")).toBeUndefined();
  });
});

describe.skipIf(!linux)("measured peak memory", () => {
  let dir: string;
  let modelPath: string;
  let feedsPath: string;
  const settings = measureSchema.parse({ runs: 5, warmup: 1 });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "qg-memory-"));
    modelPath = path.join(dir, "mlp.onnx");
    await writeFile(modelPath, serializeModel(buildMlp(512, 2048, 256).proto));
    feedsPath = path.join(dir, "feeds.json");
    await writeFile(feedsPath, feedsToJson({ x: { type: "float32", dims: [1, 512], data: randomMatrix(1, 512, 3) } }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reports the load peak and the run peak of the model's process apart, from VmHWM", async () => {
    const m = await measureModelMemory(modelPath, feedsPath, settings);
    expect(m.source).toBe("VmHWM");
    expect(m.separated).toBe(true);
    expect(m.peakBytes).toBe(Math.max(m.loadPeakBytes, m.runPeakBytes));
    // Node + ONNX Runtime + a 6 MB model: tens of MiB, far from a GiB.
    expect(m.loadPeakBytes).toBeGreaterThan(20 * 1024 ** 2);
    expect(m.peakBytes).toBeLessThan(512 * 1024 ** 2);
  });

  it("does not include the parent's peak: inflating the parent to 1 GiB leaves the child's figure within 5%", async () => {
    const before = await measureModelMemory(modelPath, feedsPath, settings);
    const ballast = Buffer.alloc(GIB);
    ballast.fill(1); // touch every page so it is resident
    try {
      // The old way (getrusage maxrss in a forked and exec'd child) sees the parent's gigabyte: this test discriminates.
      const oldWay = Number(execFileSync(process.execPath, ["-e", "process.stdout.write(String(process.resourceUsage().maxRSS * 1024))"]).toString());
      expect(oldWay).toBeGreaterThan(GIB);
      const after = await measureModelMemory(modelPath, feedsPath, settings);
      expect(Math.abs(after.peakBytes / before.peakBytes - 1)).toBeLessThan(0.05);
      expect(Math.abs(after.loadPeakBytes / before.loadPeakBytes - 1)).toBeLessThan(0.05);
      expect(after.peakBytes).toBeLessThan(GIB / 2);
    } finally {
      ballast.fill(0, 0, 1);
    }
  });

  it("measures both models: memory each in its own process, latency in interleaved rounds of one", async () => {
    const big = path.join(dir, "mlp-big.onnx");
    const small = path.join(dir, "mlp-small.onnx");
    await writeFile(big, serializeModel(buildMlp(512, 16384, 256, 5).proto)); // 48 MiB of weights
    await writeFile(small, serializeModel(buildMlp(512, 64, 256, 6).proto));
    const x = { x: { type: "float32" as const, dims: [1, 512], data: randomMatrix(1, 512, 4) } };
    const m = await measureModels(big, small, x, measureSchema.parse({ runs: 7, warmup: 1 }));
    expect(m.float.latenciesMs).toHaveLength(7);
    expect(m.quantized.latenciesMs).toHaveLength(7);
    expect(m.comparison.ratioPerRound).toHaveLength(7);
    // Ratios of on-CPU times (wall time less the wait for a core) where the kernel reports the wait.
    const q = m.quantized.onCpuMs ?? m.quantized.latenciesMs;
    const f = m.float.onCpuMs ?? m.float.latenciesMs;
    expect(m.comparison.ratioPerRound[0]).toBeCloseTo(q[0]! / f[0]!, 12);
    if (m.float.onCpuMs) m.float.onCpuMs.forEach((ms, i) => expect(ms).toBeLessThanOrEqual(m.float.latenciesMs[i]!));
    expect(m.float.latencyP50Interval!.lo).toBeLessThanOrEqual(m.float.latency.p50Ms);
    expect(m.float.latencyP50Interval!.hi).toBeGreaterThanOrEqual(m.float.latency.p50Ms);
    // The bigger model's weights show in its own peak, not in the other's.
    expect(m.float.peakRssBytes - m.quantized.peakRssBytes).toBeGreaterThan(32 * 1024 ** 2);
    expect(m.comparison.interleaved).toBe(true);
    expect(m.float.memorySource).toBe("VmHWM");
  });
});
