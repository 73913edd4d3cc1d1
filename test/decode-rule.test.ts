// max_decode_slowdown_vs_float judged like the latency rules: on the interval of the median of per-round
// quantized/float ratios, never on one point ratio. Synthetic samples: the verdict logic, not the machine's timing.
import { describe, expect, it } from "vitest";
import { evaluateGate } from "../src/gate/index.js";
import { GATE_RULES, judgeIntervalRule, type RuleDef } from "../src/gate/rules.js";
import type { MetricRecord } from "../src/tasks/types.js";

const DEF = GATE_RULES.find((r) => r.key === "max_decode_slowdown_vs_float")! as RuleDef;

function slowdownRecord(ratios: number[]): MetricRecord {
  const sorted = [...ratios].sort((a, b) => a - b);
  return {
    key: "decode_slowdown_vs_float",
    label: "Decode ms/token, quantized/float",
    unit: "ratio",
    direction: "lower",
    quantized: sorted[Math.ceil(sorted.length / 2) - 1]!,
    raw: { quantized: ratios },
    rules: ["max_decode_slowdown_vs_float"],
  };
}

describe("max_decode_slowdown_vs_float on interleaved rounds", () => {
  const cases: { what: string; ratios: number[]; limit: { warn?: number; fail: number }; status: string; message: RegExp }[] = [
    {
      what: "clearly faster",
      ratios: [0.52, 0.55, 0.5, 0.58, 0.51, 0.54, 0.56, 0.53, 0.57, 0.55],
      limit: { fail: 1 },
      status: "pass",
      message: /within max_decode_slowdown_vs_float \(\d+(\.\d)?% interval 0\.5\d\d-0\.5\d\dx\)/,
    },
    {
      what: "clearly slower",
      ratios: [1.6, 1.7, 1.65, 1.72, 1.58, 1.69, 1.61, 1.66, 1.7, 1.63],
      limit: { fail: 1.2 },
      status: "fail",
      message: /breaks max_decode_slowdown_vs_float: the .*interval 1\.\d{3}-1\.\d{3}x of the median lies entirely above 1\.2x/,
    },
    {
      what: "noise around the limit",
      ratios: [0.8, 1.3, 0.9, 1.25, 1.1, 0.85, 1.2, 0.95, 1.15, 1.05],
      limit: { fail: 1 },
      status: "warn",
      message: /straddles 1x: not significant, not failed/,
    },
    {
      what: "median past the warning level only",
      ratios: [1.4, 1.45, 1.5, 1.42, 1.48, 1.44, 1.46, 1.43, 1.47, 1.41],
      limit: { warn: 1.2, fail: 3 },
      status: "warn",
      message: /past the warning level 1\.2x/,
    },
  ];
  it.each(cases)("$what: $status", ({ ratios, limit, status, message }) => {
    const r = judgeIntervalRule(DEF, limit, ratios);
    expect(r.status).toBe(status);
    expect(r.message).toMatch(message);
    expect(r.metric).toBe("decode_slowdown_vs_float");
  });

  it("a few preempted rounds do not fail a model that is as fast in most rounds (a point ratio of their mean would)", () => {
    const ratios = [1.0, 0.98, 1.02, 0.99, 1.01, 4.5, 1.0, 0.97, 5.2, 1.03, 1.0, 0.99];
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    expect(mean).toBeGreaterThan(1.5);
    expect(judgeIntervalRule(DEF, { fail: 1.5 }, ratios).status).toBe("pass");
  });

  it("the gate judges the record's per-round ratios on their interval, and fails closed without the record", () => {
    const gate = evaluateGate({ max_decode_slowdown_vs_float: { fail: 1.2 } } as never, [slowdownRecord([1.6, 1.7, 1.65, 1.72, 1.58, 1.69, 1.61, 1.66])]);
    expect(gate.rules[0]).toMatchObject({ rule: "max_decode_slowdown_vs_float", status: "fail", observed: 1.65 });
    expect(gate.rules[0]!.message).toMatch(/interval/);
    const straddle = evaluateGate({ max_decode_slowdown_vs_float: { fail: 1.2 } } as never, [slowdownRecord([1.0, 1.5, 1.1, 1.4, 1.15, 1.35, 1.25, 1.3])]);
    expect(straddle.rules[0]!.status).toBe("warn");
    expect(straddle.verdict).toBe("pass");
    const missing = evaluateGate({ max_decode_slowdown_vs_float: { fail: 1.2 } } as never, []);
    expect(missing.rules[0]!.status).toBe("fail");
    expect(missing.rules[0]!.message).toMatch(/no "decode_slowdown_vs_float" metric/);
  });
});
