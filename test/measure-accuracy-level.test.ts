// The accuracy-level choice: int8 activations (level 4) only when every accuracy rule still passes and it
// is faster somewhere it was timed; forced and pinned levels are taken as they are.
import { describe, expect, it } from "vitest";
import { chooseAccuracyLevel, judgeAccuracy, type LevelTrial } from "../src/emit/accuracy-level.js";
import { gateSchema } from "../src/config/schema.js";
import type { TaskEvaluation } from "../src/tasks/types.js";

const lm = (perplexityQuantized: number, klMean: number): TaskEvaluation => ({
  task: "language-modeling",
  samples: { evaluated: 10, total: 10 },
  ms: 1,
  metrics: [
    {
      key: "perplexity",
      label: "Perplexity",
      unit: "perplexity",
      direction: "lower",
      float: 10,
      quantized: perplexityQuantized,
      rules: ["max_perplexity_increase_pct"],
    },
    { key: "kl_mean", label: "KL divergence (mean)", unit: "nats", direction: "lower", quantized: klMean, rules: ["max_kl_mean"] },
    { key: "kl_p99", label: "KL divergence (p99)", unit: "nats", direction: "lower", quantized: klMean * 5, rules: ["max_kl_p99"] },
    { key: "top1_agreement", label: "Top-1 agreement", unit: "ratio", direction: "higher", quantized: 0.95, rules: ["min_top1_agreement"] },
  ],
});

describe("judging a level by the configured accuracy rules", () => {
  const limits = gateSchema.parse({ max_perplexity_increase_pct: { warn: 3, fail: 6 }, max_kl_mean: 0.04, max_model_size: "1KiB", max_latency_p50_ms: 0.001 });
  it("passes when no accuracy rule fails, ignoring size and latency rules", () => {
    const t = judgeAccuracy(4, lm(10.4, 0.01), limits); // +4%: a warning, not a failure
    expect(t.passes).toBe(true);
    expect(t.failing).toEqual([]);
    expect(t.klMean).toBe(0.01);
  });
  it("names the accuracy rules that fail", () => {
    const t = judgeAccuracy(4, lm(11, 0.05), limits);
    expect(t.passes).toBe(false);
    expect(t.failing).toEqual(["max_perplexity_increase_pct", "max_kl_mean"]);
  });
});

describe("choosing the accuracy level", () => {
  const trial = (level: number, passes: boolean, klMean: number): LevelTrial<string> => ({
    level,
    passes,
    failing: passes ? [] : ["max_kl_mean"],
    klMean,
    evaluation: `evaluation at ${level}`,
  });

  it("takes level 4 when it passes every accuracy rule and is faster at one token, reporting both levels", async () => {
    const evaluated: number[] = [];
    const r = await chooseAccuracyLevel({
      evaluate: async (level) => {
        evaluated.push(level);
        return trial(level, true, level === 4 ? 0.0054 : 0.0053);
      },
      time: async () => [
        { shape: "one token [1,1]", p50Ms: [0.33, 0.24] },
        { shape: "evaluation batch [4,128]", p50Ms: [19.8, 22.3] },
      ],
    });
    expect(evaluated).toEqual([0, 4]);
    expect(r.choice.level).toBe(4);
    expect(r.choice.how).toBe("measured");
    expect(r.evaluation).toBe("evaluation at 4");
    expect(r.choice.candidates.map((c) => [c.level, c.klMean, c.latencies?.[0]?.p50Ms])).toEqual([
      [0, 0.0053, 0.33],
      [4, 0.0054, 0.24],
    ]);
    expect(r.choice.reason).toMatch(/KL 0\.00540 vs 0\.00530 at level 0.*one token \[1,1\]: 0\.240 ms at level 4 vs 0\.330 ms at level 0/);
  });

  it("falls back to the exact level when level 4 breaks an accuracy rule", async () => {
    const r = await chooseAccuracyLevel({ evaluate: async (level) => trial(level, level === 0, 0.01 * (level + 1)) });
    expect(r.choice.level).toBe(0);
    expect(r.choice.reason).toMatch(/level 4 \(int8 activations\) breaks max_kl_mean, KL 0\.0500: level 0 kept/);
    expect(r.evaluation).toBe("evaluation at 0");
  });

  it("keeps level 0 when level 4 is slower, or faster only within noise, at every timed shape", async () => {
    for (const p50Ms of [
      [19.8, 22.3],
      [0.051, 0.049],
    ]) {
      const r = await chooseAccuracyLevel({
        evaluate: async (level) => trial(level, true, 0.01),
        time: async () => [{ shape: "evaluation batch", p50Ms }],
      });
      expect(r.choice.level).toBe(0);
      expect(r.choice.reason).toMatch(/is not 5% faster at any shape timed here/);
    }
  });

  it("takes recipe.accuracy_level and a lockfile's pinned level as they are, without evaluating", async () => {
    const never = async (): Promise<LevelTrial<string>> => {
      throw new Error("must not evaluate");
    };
    expect((await chooseAccuracyLevel({ forced: 0, pinned: 4, evaluate: never })).choice).toMatchObject({ level: 0, how: "forced" });
    expect((await chooseAccuracyLevel({ pinned: 4, evaluate: never })).choice).toMatchObject({ level: 4, how: "pinned" });
    expect((await chooseAccuracyLevel({ notApplicable: "no weight executes on MatMulNBits", evaluate: never })).choice).toMatchObject({
      level: 0,
      how: "not applicable",
    });
  });
});
