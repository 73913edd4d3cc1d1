// Latency statistics: order-statistic intervals of the median, limit verdicts on those intervals, and the
// quantized/float ratio judged against the base branch's run-to-run spread.
import type { MetricRecord } from "../src/tasks/types.js";
import { describe, expect, it } from "vitest";
import { gateSchema } from "../src/config/schema.js";
import { evaluateGate } from "../src/gate/index.js";
import { seededRandom } from "../src/history/stats.js";
import { latencyLimitRule, slowerThanFloatRule } from "../src/measure/latency-rule.js";
import {
  binomialCdf,
  binomialHalfCdf,
  quantileInterval,
  compareRatioToBase,
  judgeLatencyLimit,
  medianInterval,
  medianOf,
  normalQuantile,
  ratioPerRound,
} from "../src/measure/latency-stats.js";

const range = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));

describe("median interval from order statistics", () => {
  it("has the textbook ranks and coverage", () => {
    expect(binomialHalfCdf(20, 5)).toBeCloseTo(0.020695, 5);
    expect(binomialHalfCdf(10, 10)).toBe(1);
    const xs = range(20, (i) => 20 - i); // 20..1, unsorted on purpose
    const ci = medianInterval(xs, 0.95);
    expect([ci.lo, ci.hi]).toEqual([6, 15]); // ranks 6 and 15 of 20
    expect(ci.level).toBeCloseTo(0.9586, 4);
    expect(
      medianInterval(
        range(100, (i) => i + 1),
        0.95,
      ),
    ).toMatchObject({ lo: 40, hi: 61 });
  });

  it("widens to the full range below six samples and says its coverage", () => {
    const ci = medianInterval([3, 1, 2, 5, 4], 0.95);
    expect([ci.lo, ci.hi]).toEqual([1, 5]);
    expect(ci.level).toBeCloseTo(1 - 2 / 32, 10);
  });

  it("covers the true median about as often as it claims (seeded simulation, skewed samples)", () => {
    const rand = seededRandom(7);
    let covered = 0;
    const trials = 2000;
    const trueMedian = Math.log(2); // exponential(1)
    for (let t = 0; t < trials; t++) {
      const xs = range(30, () => -Math.log(1 - rand()));
      const ci = medianInterval(xs, 0.95);
      if (ci.lo <= trueMedian && trueMedian <= ci.hi) covered++;
    }
    expect(covered / trials).toBeGreaterThan(0.93);
    expect(covered / trials).toBeLessThan(0.99);
  });
});

describe("latency limit verdicts on the interval", () => {
  const samples = range(21, (i) => 10 + i * 0.1); // median 11, interval [10.5, 11.5]
  it("passes when the whole interval is under the limit", () => {
    expect(judgeLatencyLimit(samples, { fail: 12 }).status).toBe("pass");
  });
  it("warns, not fails, when the interval straddles the limit even though the median is past it", () => {
    const v = judgeLatencyLimit(samples, { fail: 10.9 });
    expect(v.p50).toBe(11);
    expect(v.status).toBe("warn");
    expect(v.reason).toMatch(/straddles 10\.9 ms: not significant/);
  });
  it("fails only when the lower bound is above the limit", () => {
    const v = judgeLatencyLimit(samples, { fail: 10.4 });
    expect(v.status).toBe("fail");
    expect(v.reason).toMatch(/lies entirely above 10\.4 ms/);
  });
  it("warns when the median is past the warning level", () => {
    expect(judgeLatencyLimit(samples, { warn: 10.8, fail: 20 }).status).toBe("warn");
  });
  it("is not moved by a few preempted runs (outliers) the way a mean would be", () => {
    const noisy = [...samples.slice(0, 18), 90, 120, 300];
    expect(judgeLatencyLimit(noisy, { fail: 12.5 }).status).toBe("pass");
  });
});

describe("quantized/float ratio against the base branch", () => {
  it("keeps one ratio per interleaved round", () => {
    expect(ratioPerRound([2, 4, 5], [1, 1, 5])).toEqual([0.5, 0.25, 1]);
    expect(() => ratioPerRound([1], [1, 2])).toThrow(/rounds differ/);
  });

  /** A run of 20 rounds: a run-level offset (runner speed that the ratio does not fully cancel) and per-round noise. */
  function simulatedRun(rand: () => number, level: number, runSd: number, roundSd: number): number[] {
    const g = (): number => normalQuantile(Math.min(1 - 1e-12, Math.max(1e-12, rand())));
    const offset = runSd * g();
    return range(20, () => level * Math.exp(offset + roundSd * g()));
  }

  it("does not flag a same-commit run whose ratio moved as much as base runs move between each other", () => {
    const rand = seededRandom(11);
    let fails = 0;
    let withinRunOnlyFails = 0;
    for (let t = 0; t < 200; t++) {
      const base = range(8, () => ({ ratioP50: medianOf(simulatedRun(rand, 0.5, 0.08, 0.02)) }));
      const current = simulatedRun(rand, 0.5, 0.08, 0.02);
      const c = compareRatioToBase(current, base, 0.95);
      if (c.interval.lo > 10) fails++; // limit: 10% increase
      // What a bootstrap inside one run would say: the within-run interval alone.
      const naiveLo = (Math.exp(Math.log(medianOf(current)) - medianOf(base.map((b) => Math.log(b.ratioP50))) - 1.96 * c.withinRunSd) - 1) * 100;
      if (naiveLo > 10) withinRunOnlyFails++;
    }
    expect(fails).toBe(0);
    expect(withinRunOnlyFails).toBeGreaterThan(0); // the spread between runs is what the within-run view misses
  });

  it("flags a real slowdown of the quantized model relative to float", () => {
    const rand = seededRandom(12);
    const base = range(8, () => ({ ratioP50: medianOf(simulatedRun(rand, 0.5, 0.03, 0.02)) }));
    const c = compareRatioToBase(simulatedRun(rand, 0.75, 0.0, 0.02), base, 0.95);
    expect(c.point).toBeGreaterThan(35);
    expect(c.interval.lo).toBeGreaterThan(25);
    expect(c.betweenRunSd).toBeGreaterThan(0);
    expect(c.baseRuns).toBe(8);
  });

  it("says when the base branch has too few runs to know its spread", () => {
    const c = compareRatioToBase([0.5, 0.52, 0.49, 0.51, 0.5, 0.5], [{ ratioP50: 0.5 }], 0.95);
    expect(c.betweenRunSd).toBeUndefined();
    expect(c.note).toMatch(/fewer than 3 base runs/);
    expect(c.interval.lo).toBeLessThan(0);
    expect(c.interval.hi).toBeGreaterThan(0);
  });
});

const p50 = (quantized: number): MetricRecord[] => [{ key: "latency_p50", label: "Latency p50", unit: "ms", direction: "lower", quantized, rules: [] }];

describe("the gate's max_latency_p50_ms rule on raw samples", () => {
  const samples = range(21, (i) => 10 + i * 0.1);
  it("is judged on the interval when the measurement kept its samples, saying how they were taken", () => {
    const gate = evaluateGate(gateSchema.parse({ max_latency_p50_ms: "10.9ms" }), p50(11), [], [], {
      samplesMs: samples,
      basis: "on CPU (wall time less 80% spent waiting for a core)",
    });
    const rule = gate.rules.find((r) => r.rule === "max_latency_p50_ms")!;
    expect(rule.status).toBe("warn");
    expect(rule.observed).toBe(11);
    expect(rule.message).toMatch(
      /Latency p50 11\.000 ms on CPU \(wall time less 80% spent waiting for a core\) is near max_latency_p50_ms: .*straddles 10\.9 ms/,
    );
    expect(gate.verdict).toBe("pass");
  });
  it("still fails when the whole interval is above the limit", () => {
    const gate = evaluateGate(gateSchema.parse({ max_latency_p50_ms: 10.2 }), p50(11), [], [], { samplesMs: samples });
    expect(gate.verdict).toBe("fail");
    expect(latencyLimitRule("max_latency_p50_ms", "Latency p50", { fail: 10.2 }, samples).message).toMatch(/breaks max_latency_p50_ms \(at most 10\.2 ms\)/);
  });
  it("falls back to the point rule without samples (older callers)", () => {
    const gate = evaluateGate(gateSchema.parse({ max_latency_p50_ms: 10.9 }), p50(11), []);
    expect(gate.rules[0]!.status).toBe("fail");
  });
});

describe("other percentiles and the quantized/float ratio", () => {
  it("bounds p95 from order statistics, with no upper bound from 20 runs", () => {
    expect(binomialCdf(20, 16, 0.95)).toBeCloseTo(0.0159, 4);
    const ci = quantileInterval(
      range(20, (i) => i + 1),
      0.95,
      0.95,
    );
    expect(ci.lo).toBe(17); // the largest l with P(B <= l-1) <= 2.5% for B ~ Bin(20, 0.95) is 17 (P(B <= 16) = 1.6%)
    expect(ci.hi).toBe(20);
    expect(quantileInterval([5, 1, 4, 2, 3, 9, 8], 0.5)).toEqual(medianInterval([5, 1, 4, 2, 3, 9, 8]));
  });

  it("judges max_latency_p95_ms on the p95 interval: one slow run warns, it does not fail", () => {
    const samples = [...range(19, (i) => 10 + i * 0.05), 40];
    const gate = evaluateGate(
      gateSchema.parse({ max_latency_p95_ms: 12 }),
      [{ key: "latency_p95", label: "Latency p95", unit: "ms", direction: "lower", quantized: 40, rules: [] }],
      [],
      [],
      { samplesMs: samples },
    );
    expect(gate.rules[0]).toMatchObject({ rule: "max_latency_p95_ms", status: "warn" });
    expect(gate.verdict).toBe("pass");
  });

  it("judges forbid_slower_than_float on the per-round ratios", () => {
    const faster = range(20, (i) => 0.6 + (i % 5) * 0.01);
    const mixed = range(20, (i) => (i % 2 ? 0.95 : 1.06));
    const slower = range(20, (i) => 1.2 + (i % 3) * 0.01);
    const verdict = (ratios: number[]): string | undefined =>
      evaluateGate(gateSchema.parse({ forbid_slower_than_float: true }), [], [], [], { ratioPerRound: ratios }).rules[0]?.status;
    expect([verdict(faster), verdict(mixed), verdict(slower)]).toEqual(["pass", "warn", "fail"]);
    expect(slowerThanFloatRule(slower).message).toMatch(/breaks forbid_slower_than_float: the .* interval 1\.200-1\.220x of the median lies entirely above 1x/);
  });
});
