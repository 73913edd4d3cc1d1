// The user metric module from the bundled action (node dist/index.js, as the runner runs it): a metric.mjs in the
// workspace loads (the bundler must not rewrite its dynamic import), and a fidelity run on image folders with
// labels shows its metric and the accuracy in the step outputs and the job summary.
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, runAction } from "./helpers/action.js";

const CNN = path.join(REPO_ROOT, "examples", "cnn-classifier");

describe("a user metric module in the bundled action", () => {
  it("loads metric.mjs from the workspace and reports its metric and the labelled accuracy everywhere", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-user-metric-"));
    await cp(path.join(CNN, "model.onnx"), path.join(dir, "model.onnx"));
    await cp(path.join(CNN, "eval"), path.join(dir, "eval"), { recursive: true });
    await writeFile(
      path.join(dir, "metric.mjs"),
      `// share of samples whose float and quantized argmax agree, and the worst logit difference
export default function (floatOutputs, quantizedOutputs) {
  let agree = 0;
  let worst = 0;
  for (let i = 0; i < floatOutputs.length; i++) {
    const f = Array.from(floatOutputs[i].logits.data);
    const q = Array.from(quantizedOutputs[i].logits.data);
    if (f.indexOf(Math.max(...f)) === q.indexOf(Math.max(...q))) agree++;
    for (let j = 0; j < f.length; j++) worst = Math.max(worst, Math.abs(f[j] - q[j]));
  }
  return { agree_share: agree / floatOutputs.length, worst_logit_error: worst };
}
`,
    );
    await writeFile(
      path.join(dir, "quantgate.yml"),
      `model: model.onnx
recipe: { format: int8, block_size: 32, symmetric: true, algorithm: mse }
evaluation:
  task: fidelity
  dataset: eval
  format: images
  preprocess: { scale: 0.00392156862745098, mean: [0.5], std: [0.25] }
  outputs:
    - { name: logits, kind: logits, min_cosine: 0.99 }
  metric:
    module: metric.mjs
    limits:
      agree_share: { min: 0.9 }
      worst_logit_error: { max: 100 }
measure: { threads: 1, warmup: 1, runs: 5 }
gate:
  max_accuracy_drop: 5
`,
    );
    const run = runAction(dir, { config: "quantgate.yml", artifact: "false", cache: "false" });
    expect(run.status, run.stdout).toBe(0);
    expect(run.stdout).not.toMatch(/Cannot find module/);
    expect(Number(run.outputs["metric-metric-agree_share-quantized"])).toBeGreaterThan(0.9);
    expect(Number(run.outputs["metric-metric-worst_logit_error-quantized"])).toBeGreaterThan(0);
    // the labelled accuracy, in the named outputs of earlier versions and the per-metric ones
    expect(Number(run.outputs["accuracy-float"])).toBeGreaterThan(0.9);
    expect(run.outputs["accuracy-quantized"]).toBe(run.outputs["metric-accuracy-quantized"]);
    expect(run.summary).toMatch(/\| metric agree\\_share .*\| ✅ pass \|/);
    expect(run.summary).toMatch(/\| Accuracy <sub>.*<code>max\\_accuracy\\_drop<\/code>.* ✅ pass \|/);
    expect(run.summary).toMatch(/evaluated 96 of 96 samples/);
    const report = JSON.parse(await readFile(run.outputs["report-path"]!, "utf8"));
    expect(report.gate.rules.map((r: { rule: string }) => r.rule)).toEqual(
      expect.arrayContaining(["max_accuracy_drop", "outputs.logits.min_cosine", "metric.agree_share.min", "metric.worst_logit_error.max"]),
    );
  });
});
