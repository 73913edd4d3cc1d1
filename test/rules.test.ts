// The rule registry: how each kind reads a metric, the generic base-branch rules, and release limits on them.
import { describe, expect, it } from "vitest";
import { applyRelease } from "../src/action/release.js";
import { parseConfig } from "../src/config/load.js";
import { gateSchema } from "../src/config/schema.js";
import { evaluateGate } from "../src/gate/index.js";
import { observe, worseRule } from "../src/gate/rules.js";
import type { MetricRecord } from "../src/tasks/types.js";

describe("rule kinds", () => {
  it("reads drops, increases and ratios from the value and its reference", () => {
    expect(observe("drop_points", 0.85, 0.9)).toBeCloseTo(5, 10);
    expect(observe("drop_pct", 0.81, 0.9)).toBeCloseTo(10, 10);
    expect(observe("increase_points", 0.12, 0.1)).toBeCloseTo(2, 10);
    expect(observe("increase_pct", 11, 10)).toBeCloseTo(10, 10);
    expect(observe("decrease", 0.97, 0.99)).toBeCloseTo(0.02, 10);
    expect(observe("ratio_max", 3, 2)).toBe(1.5);
    expect(observe("value_min", 0.5, undefined)).toBe(0.5);
    expect(observe("drop_points", 0.5, undefined)).toBeUndefined();
    expect(worseRule("output.y.cosine", "max_worse", "higher", "cosine", "ratio").kind).toBe("decrease");
    expect(worseRule("metric.cer", "max_worse_pct", "lower", "cer", "value").kind).toBe("increase_pct");
  });

  it("fails closed when a drop rule's metric has no float value (no labels), saying why", () => {
    const acc: MetricRecord = { key: "accuracy", label: "Accuracy", unit: "ratio", direction: "higher", quantized: 0.9, rules: [] };
    const g = evaluateGate(gateSchema.parse({ max_accuracy_drop: 1 }), [acc]);
    expect(g.verdict).toBe("fail");
    expect(g.rules[0]!.message).toMatch(/no measurement .*no float value/);
  });
});

describe("release limits on per-metric regression rules", () => {
  it("takes the stricter limit per metric key and records where it came from", () => {
    const config = parseConfig(
      `model: m.onnx\nevaluation: { task: fidelity, dataset: d.npy }\nregression:\n  metrics:\n    output.y.cosine: { max_worse: 0.01 }\nrelease:\n  regression:\n    metrics:\n      output.y.cosine: { max_worse: 0.001 }\n      metric.cer: { max_worse_pct: 5 }\n`,
      "quantgate.yml",
    );
    const r = applyRelease(config);
    expect(r.config.regression!.metrics["output.y.cosine"]!.max_worse).toEqual({ warn: undefined, fail: 0.001 });
    expect(r.config.regression!.metrics["metric.cer"]!.max_worse_pct).toEqual({ warn: undefined, fail: 5 });
    expect(r.origins.get("regression.metrics.output.y.cosine.max_worse")).toBe("release.regression.metrics.output.y.cosine.max_worse");
  });
});
