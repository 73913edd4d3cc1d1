import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { gateSchema } from "../src/config/schema.js";
import { evaluateGate } from "../src/gate/index.js";
import type { MetricRecord } from "../src/tasks/types.js";
import { argmax, klDivergence, logSoftmax, macroF1, percentile } from "../src/evaluate/metrics.js";
import { TOOL_VERSION } from "../src/version.js";

const limits = (raw: Record<string, unknown>) => gateSchema.parse(raw);

describe("gate rules", () => {
  const rec = (key: string, quantized: number, float?: number): MetricRecord => ({
    key,
    label: key,
    unit: "value",
    direction: "lower",
    quantized,
    ...(float !== undefined ? { float } : {}),
    rules: [],
  });
  const metrics = [
    rec("perplexity", 10.6, 10),
    rec("kl_mean", 0.02),
    rec("top1_agreement", 0.9),
    rec("model_size", 2 * 1024 * 1024),
    rec("bits_per_weight", 5.125),
    rec("latency_p50", 4, 3),
  ];

  it("passes, warns and fails by direction-aware thresholds", () => {
    const g = evaluateGate(
      limits({ max_perplexity_increase_pct: { warn: 5, fail: 10 }, max_kl_mean: 0.05, min_top1_agreement: 0.95, max_model_size: "4MiB" }),
      metrics,
    );
    const status = Object.fromEntries(g.rules.map((r) => [r.rule, r.status]));
    expect(status).toEqual({ max_perplexity_increase_pct: "warn", max_kl_mean: "pass", min_top1_agreement: "fail", max_model_size: "pass" });
    expect(g.verdict).toBe("fail");
    expect(g.rules.find((r) => r.rule === "max_perplexity_increase_pct")!.observed).toBeCloseTo(6, 6);
  });

  it("fails closed when a configured metric was not measured", () => {
    const g = evaluateGate(limits({ max_accuracy_drop: 1 }), metrics);
    expect(g.verdict).toBe("fail");
    expect(g.rules[0]!.message).toMatch(/no measurement/);
  });

  it("fails on any stage error even when every rule passes", () => {
    const g = evaluateGate(limits({ max_kl_mean: 1 }), metrics, ["evaluate: boom"]);
    expect(g.rules[0]!.status).toBe("pass");
    expect(g.verdict).toBe("fail");
  });

  it("can forbid a quantized model slower than float", () => {
    const g = evaluateGate(limits({ forbid_slower_than_float: true }), metrics);
    expect(g.rules[0]).toMatchObject({ rule: "forbid_slower_than_float", status: "fail" });
  });
});

describe("evaluation metrics", () => {
  it("computes KL divergence of identical and shifted distributions", () => {
    const a = new Float64Array(4);
    const b = new Float64Array(4);
    logSoftmax(Float32Array.from([1, 2, 3, 4]), 0, 4, a);
    logSoftmax(Float32Array.from([1, 2, 3, 4]), 0, 4, b);
    expect(klDivergence(a, b)).toBe(0);
    logSoftmax(Float32Array.from([4, 3, 2, 1]), 0, 4, b);
    // p = softmax([1,2,3,4]) = [.0321, .0871, .2369, .6439]; log p - log q = [-3, -1, 1, 3]; KL = sum p (log p - log q) = 1.9853 nats
    expect(klDivergence(a, b)).toBeCloseTo(1.9853, 3);
  });

  it("argmax, percentile and macro-F1", () => {
    expect(argmax(Float32Array.from([0, 5, 1, 2, 9, 3]), 3, 3)).toBe(1);
    expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
    expect(
      percentile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
    ).toBe(99);
    expect(macroF1([0, 0, 1, 1], [0, 0, 1, 1])).toBe(1);
    expect(macroF1([0, 0, 1, 1], [0, 1, 1, 1])).toBeCloseTo((2 / 3 + 0.8) / 2, 6);
  });

  it("keeps the tool version equal to package.json", () => {
    expect(TOOL_VERSION).toBe(JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
  });
});
