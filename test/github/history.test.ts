// History storage (branch with push retry on a local bare remote; @actions/cache with a folder fake) and the
// regression rules (bootstrap intervals, noise-aware latency, per-layer diff).
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { CacheClient } from "../../src/cache/actions.js";
import { regressionSchema } from "../../src/config/schema.js";
import { appendEntry, latestOf, normalizeEntry, type HistoryEntry } from "../../src/history/entry.js";
import { evaluateRegression, latencyRule } from "../../src/history/regression.js";
import { latencyIncreaseInterval, normalQuantile, pairedAccuracyDropInterval, seededRandom } from "../../src/history/stats.js";
import { BranchHistoryStore, CacheHistoryStore } from "../../src/history/store.js";
import { historyEntry } from "./history-fixture.js";

const git = (args: string[], cwd?: string): string => execFileSync("git", args, { cwd, encoding: "utf8" });

async function bare(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bare-"));
  git(["init", "-q", "--bare", dir]);
  return dir;
}

describe("history on a branch (git CLI, local bare remote)", () => {
  it("creates the branch, appends, caps the entries and reads the latest of a branch", async () => {
    const remote = await bare();
    const store = new BranchHistoryStore({ remote, branch: "quantgate-data", dir: "quantgate" });
    expect(await store.read("classifier")).toBeUndefined();
    for (let i = 0; i < 4; i++) await store.append(historyEntry(i), 3, (all) => ({ "index.html": `<p>${all[0]!.entries.length}</p>` }));
    const file = await store.read("classifier");
    expect(file!.entries.map((e) => e.runId)).toEqual(["9001", "9002", "9003"]);
    expect(latestOf(file, "main")!.runId).toBe("9003");
    expect(git(["--git-dir", remote, "show", "quantgate-data:quantgate/index.html"])).toBe("<p>3</p>");
    expect(git(["--git-dir", remote, "rev-list", "--count", "quantgate-data"]).trim()).toBe("4");
  });

  it("retries on a concurrent push and keeps both runs' entries", async () => {
    const remote = await bare();
    await new BranchHistoryStore({ remote, branch: "quantgate-data", dir: "quantgate" }).append(historyEntry(0), 100);
    const logs: string[] = [];
    const store = new BranchHistoryStore({
      remote,
      branch: "quantgate-data",
      dir: "quantgate",
      log: (m) => logs.push(m),
      // Another job pushes its entry between our fetch and our push, on the first attempt only.
      beforePush: async (attempt) => {
        if (attempt === 1) await new BranchHistoryStore({ remote, branch: "quantgate-data", dir: "quantgate" }).append(historyEntry(1), 100);
      },
    });
    const r = await store.append(historyEntry(2), 100);
    expect(r.attempts).toBe(2);
    expect(logs[0]).toMatch(/rejected \(attempt 1\)/);
    const file = await store.read("classifier");
    expect(file!.entries.map((e) => e.runId)).toEqual(["9000", "9001", "9002"]);
  });

  it("fails with the git error after the last attempt, the token masked", async () => {
    const store = new BranchHistoryStore({ remote: "/nonexistent/remote.git", branch: "b", dir: "d", token: "secret", maxAttempts: 1 });
    await expect(store.append(historyEntry(0), 10)).rejects.toThrow(/git ls-remote failed/);
  });
});

describe("history in @actions/cache", () => {
  /** Saves copy the folder under the key; restores take the exact key, else the newest key with a prefix. */
  async function folderCache(): Promise<CacheClient & { keys: string[] }> {
    const root = await mkdtemp(path.join(os.tmpdir(), "qg-cachesvc-"));
    const keys: string[] = [];
    return {
      keys,
      available: () => true,
      async restore(paths, key, restoreKeys) {
        const hit = keys.includes(key) ? key : [...keys].reverse().find((k) => restoreKeys.some((p) => k.startsWith(p)));
        if (!hit) return undefined;
        await rm(paths[0]!, { recursive: true, force: true });
        await cp(path.join(root, hit), paths[0]!, { recursive: true });
        return hit;
      },
      async save(paths, key) {
        if (keys.includes(key)) throw new Error(`Unable to reserve cache with key ${key}, another job may be creating this cache.`);
        await cp(paths[0]!, path.join(root, key), { recursive: true });
        keys.push(key);
      },
    };
  }

  it("appends under a new key each run and reads the newest", async () => {
    const client = await folderCache();
    const ws = await mkdtemp(path.join(os.tmpdir(), "qg-ws-"));
    for (let i = 0; i < 3; i++) {
      const store = new CacheHistoryStore({ client, folder: path.join(ws, ".quantgate/history"), branch: "main", runKey: `${100 + i}-1` });
      await store.append(historyEntry(i), 50);
    }
    expect(client.keys).toEqual([
      "quantgate-history-classifier-main-100-1",
      "quantgate-history-classifier-main-101-1",
      "quantgate-history-classifier-main-102-1",
    ]);
    const reader = new CacheHistoryStore({ client, folder: path.join(ws, ".quantgate/history"), branch: "feature", runKey: "200-1" });
    const file = await reader.read("classifier", "main");
    expect(file!.entries).toHaveLength(3);
    expect(await reader.read("classifier", "release")).toBeUndefined();
  });

  it("says so when the cache service is missing", async () => {
    const store = new CacheHistoryStore({
      client: { available: () => false, restore: async () => undefined, save: async () => {} },
      folder: "/tmp/x",
      branch: "main",
      runKey: "1",
    });
    await expect(store.read("c", "main")).rejects.toThrow(/cache service is not available/);
  });
});

describe("entries", () => {
  it("replaces a re-run of the same commit and run instead of appending it twice", () => {
    const once = appendEntry(undefined, historyEntry(0), 10);
    const twice = appendEntry(once, { ...historyEntry(0), verdict: "fail" }, 10);
    expect(twice.entries).toHaveLength(1);
    expect(twice.entries[0]!.verdict).toBe("fail");
  });
});

describe("regression statistics", () => {
  const settings = regressionSchema.parse({ max_latency_increase_pct: "10%", max_accuracy_drop: 1, max_size_increase_pct: "5%", max_kl_increase: 0.01 });
  const noisy = (n: number, center: number, spread: number, seed: number): number[] => {
    const r = seededRandom(seed);
    return Array.from({ length: n }, () => center * (1 + (r() - 0.5) * spread + (r() < 0.1 ? r() * spread * 3 : 0)));
  };

  it("latency: the same distribution passes, a 30% slowdown fails, a 15% shift inside the noise only warns", () => {
    const base = { quantized: noisy(30, 1.0, 0.4, 1) };
    const same = latencyIncreaseInterval(base, { quantized: noisy(30, 1.0, 0.4, 2) }, 0.95, 2000);
    expect(latencyRule({ fail: 10 }, same.point, same.interval, "abc").status).toBe("pass");
    const slow = latencyIncreaseInterval(base, { quantized: noisy(30, 1.3, 0.1, 3) }, 0.95, 2000);
    expect(slow.interval.lo).toBeGreaterThan(10);
    expect(latencyRule({ fail: 10 }, slow.point, slow.interval, "abc").status).toBe("fail");
    const shifted = latencyIncreaseInterval(base, { quantized: noisy(30, 1.16, 0.4, 4) }, 0.95, 2000);
    expect(shifted.point).toBeGreaterThan(10);
    expect(shifted.interval.lo).toBeLessThan(10);
    const r = latencyRule({ fail: 10 }, shifted.point, shifted.interval, "abc");
    expect(r.status).toBe("warn");
    expect(r.message).toMatch(/within measurement noise/);
  });

  it("latency relative to the float model cancels a slower runner", () => {
    const base = { quantized: noisy(20, 1.0, 0.05, 5), float: noisy(20, 2.0, 0.05, 6) };
    const slowerRunner = { quantized: noisy(20, 1.5, 0.05, 7), float: noisy(20, 3.0, 0.05, 8) };
    expect(latencyIncreaseInterval(base, { quantized: slowerRunner.quantized }, 0.95, 1000).point).toBeGreaterThan(40);
    const rel = latencyIncreaseInterval(base, slowerRunner, 0.95, 1000);
    expect(rel.relativeToFloat).toBe(true);
    expect(Math.abs(rel.point)).toBeLessThan(5);
  });

  it("latency without raw samples never fails on a point estimate", () => {
    const r = latencyRule({ fail: 10 }, 50, undefined, "abc");
    expect(r.status).toBe("warn");
    expect(r.message).toMatch(/raw latency samples were not recorded/);
  });

  it("paired bootstrap of the accuracy drop", () => {
    const n = 400;
    const r = seededRandom(3);
    const base = Array.from({ length: n }, () => (r() < 0.9 ? "1" : "0")).join("");
    // the current model gets 20 of the base's correct samples wrong: a 5-point drop
    let flipped = 0;
    const cur = [...base].map((c) => (c === "1" && flipped < 20 && ++flipped ? "0" : c)).join("");
    const ci = pairedAccuracyDropInterval(base, cur, 0.95, 2000);
    expect(ci.lo).toBeGreaterThan(2.5);
    expect(ci.hi).toBeLessThan(7.5);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
  });

  it("rules against the base entry: size, KL and accuracy, and per-layer changes", () => {
    const base0 = historyEntry(0);
    const m = base0.metrics;
    const base = { ...base0, metrics: { ...m, accuracy: { ...m.accuracy!, quantized: 0.9, perSample: "1".repeat(90) + "0".repeat(10) } } };
    const current = historyEntry(1, {
      metrics: {
        ...m,
        accuracy: { ...m.accuracy!, quantized: 0.85, perSample: "1".repeat(85) + "0".repeat(15) },
        model_size: { ...m.model_size!, quantized: 7700 },
        kl_mean: { ...m.kl_mean!, quantized: 0.03 },
      },
      layers: { "fc1.weight": { ...base.layers["fc1.weight"]!, format: "int8", bits: 8 }, "fc3.weight": base.layers["fc1.weight"]! },
    });
    const r = evaluateRegression(current, base, settings);
    const byRule = Object.fromEntries(r.rules.map((x) => [x.rule, x]));
    expect(byRule["regression.max_size_increase_pct"]!.status).toBe("fail"); // +10%
    expect(byRule["regression.max_kl_increase"]!.status).toBe("fail");
    expect(byRule["regression.max_accuracy_drop"]!.status).toBe("fail"); // 5 points
    expect(byRule["regression.max_accuracy_drop"]!.message).toMatch(/paired bootstrap over 100 samples/);
    expect(r.layers.map((l) => `${l.name}:${l.change}`)).toEqual(["fc1.weight:changed", "fc3.weight:added"]);
    // a rule whose metric this run did not produce fails closed; one the base lacks warns
    const noAcc = { ...current, metrics: Object.fromEntries(Object.entries(current.metrics).filter(([k]) => k !== "accuracy")) };
    const missing = evaluateRegression(noAcc, base, settings).rules.find((x) => x.rule === "regression.max_accuracy_drop")!;
    expect(missing.status).toBe("fail");
    expect(missing.message).toMatch(/no measurement/);
    const baseNoAcc = { ...base, metrics: noAcc.metrics };
    expect(evaluateRegression(current, baseNoAcc, settings).rules.find((x) => x.rule === "regression.max_accuracy_drop")!.status).toBe("warn");
  });

  it("reads entries written before metrics were keyed", () => {
    const legacy = {
      ...historyEntry(0),
      metrics: { accuracyFloat: 0.9, accuracyQuantized: 0.88, sizeBytes: 7000, latencyP50Ms: 0.05, samples: 100 },
      quantizedCorrect: "1".repeat(88) + "0".repeat(12),
      latencySamplesMs: { quantized: [0.05, 0.051, 0.049] },
    } as unknown as HistoryEntry;
    const e = normalizeEntry(legacy);
    expect(e.metrics.accuracy).toMatchObject({ float: 0.9, quantized: 0.88, perSample: "1".repeat(88) + "0".repeat(12) });
    expect(e.metrics.model_size!.quantized).toBe(7000);
    expect(e.metrics.latency_p50!.raw!.quantized).toHaveLength(3);
  });
});
