// The base-branch latency rule on the quantized/float ratio: judged against the spread of recent base runs of
// the same float model (compareRatioToBase), with a fallback (and a note) when fewer than 3 base runs have a ratio.
import { describe, expect, it } from "vitest";
import { regressionSchema } from "../../src/config/schema.js";
import { recentRatioEntries, toHistoryEntry, type HistoryEntry } from "../../src/history/entry.js";
import { evaluateRegression } from "../../src/history/regression.js";
import type { Report } from "../../src/report/types.js";
import { historyEntry } from "./history-fixture.js";

/** Rounds of one run: a median ratio `p50` with a small symmetric spread. */
const rounds = (p50: number, n = 20): number[] => Array.from({ length: n }, (_, i) => p50 * (1 + ((i % 5) - 2) * 0.01));

function withRatio(i: number, p50: number, over: Partial<HistoryEntry> = {}): HistoryEntry {
  return historyEntry(i, { latencyRatio: { p50, perRound: rounds(p50) }, ...over });
}

const settings = regressionSchema.parse({ max_latency_increase_pct: { fail: 10 } });
const latencyRule = (r: ReturnType<typeof evaluateRegression>) => r.rules.find((x) => x.rule === "regression.max_latency_increase_pct")!;

describe("latency against the base branch by the quantized/float ratio", () => {
  // Base runs whose ratios wander between 0.5 and 0.6 from run to run (a noisy runner).
  const noisyBase = [0.5, 0.6, 0.52, 0.58, 0.55, 0.5, 0.6].map((p, i) => withRatio(i, p));

  it("warns, not fails, on a change past the limit that stays inside the base runs' own spread", () => {
    const current = withRatio(20, 0.63);
    const base = [...noisyBase].reverse();
    const r = evaluateRegression(current, base[0]!, settings, base);
    const rule = latencyRule(r);
    expect(rule.observed).toBeCloseTo((0.63 / 0.55 - 1) * 100, 6); // against the median of the base ratios: 14.5% > 10%
    expect(rule.status).toBe("warn");
    // The same change against steady base runs (no spread between runs) fails.
    const steady = [0.55, 0.55, 0.55, 0.55].map((p, i) => withRatio(i, p)).reverse();
    expect(latencyRule(evaluateRegression(current, steady[0]!, settings, steady)).status).toBe("fail");
    const cmp = r.comparisons.find((c) => c.metric === "latency_p50")!;
    expect(cmp.interval!.method).toMatch(/median of 7 base run\(s\), run-to-run spread from the base runs/);
    expect(r.notes.join(" ")).not.toMatch(/latest base entry alone/);
  });

  it("fails a clear slowdown past the spread", () => {
    const steady = [0.5, 0.51, 0.5, 0.49, 0.5].map((p, i) => withRatio(i, p)).reverse();
    const r = evaluateRegression(withRatio(20, 0.7), steady[0]!, settings, steady);
    expect(latencyRule(r).status).toBe("fail");
    expect(latencyRule(r).observed).toBeCloseTo(40, 6);
  });

  it("reads only base runs of the same float model, at most 10, newest first", () => {
    const other = { hashes: { model: "x".repeat(64), recipe: "r".repeat(64), data: "d".repeat(64) } };
    const entries = [
      ...Array.from({ length: 12 }, (_, i) => withRatio(i, 0.5)),
      withRatio(12, 0.9, other),
      historyEntry(13), // no ratio (an older tool version)
      withRatio(14, 0.5, { branch: "feature" }),
    ];
    const recent = recentRatioEntries({ schema: "quantgate.history/v1", config: "classifier", entries }, "main", "m".repeat(64));
    expect(recent.map((e) => e.runId)).toEqual(Array.from({ length: 10 }, (_, i) => String(9011 - i)));
  });

  it("falls back to the latest base entry, with a note, when fewer than 3 base runs have a ratio", () => {
    const base = [withRatio(1, 0.5), historyEntry(0)];
    const current = withRatio(20, 0.6);
    const r = evaluateRegression(current, base[0]!, settings, base);
    expect(r.notes).toContain(
      "1 base run(s) of this float model have a latency ratio (3 needed to learn the run-to-run spread): latency compared with the latest base entry alone",
    );
    // Today's rule: the latest entry's latency p50 against this one's (both from the fixture).
    const today = evaluateRegression(historyEntry(20), base[0]!, settings, [base[0]!]);
    expect(latencyRule(r).observed).toBeCloseTo(latencyRule(today).observed!, 10);
  });

  it("stores the run's per-round ratio and its median in the history entry", () => {
    const report = {
      weights: { quantized: [], skipped: [] },
      metrics: [],
      gate: { rules: [], errors: [] },
      evaluation: null,
      tool: { version: "0.1.0" },
      runtime: { onnxruntime: "1.30.0", cpu: "cpu" },
      hashes: { model: "m", recipe: "r", data: [] },
      recipe: { format: "int4", block_size: 32, algorithm: "rtn" },
      createdAt: "2026-01-01T00:00:00Z",
      verdict: "pass",
      latencyComparison: {
        rounds: 3,
        ratioPerRound: [0.51234567, 0.5, 0.49],
        ratioP50: 0.5,
        ratioInterval: { lo: 0.49, hi: 0.51, level: 0.9, method: "" },
        preemptedRounds: 0,
      },
    } as unknown as Report;
    const entry = toHistoryEntry(report, { config: "c", commit: "a".repeat(40) }, {});
    expect(entry.latencyRatio).toEqual({ p50: 0.5, perRound: [0.51235, 0.5, 0.49] });
  });
});
