// The text-recognition and segmentation examples run whole, through the CLI and through the bundled action the way
// the runner runs it: int8 passes their gates, int2 must fail them, and the task metrics reach the report, the
// step outputs and the job summary.
import { spawnSync } from "node:child_process";
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { escapeMarkdown } from "../src/util/escape.js";
import { REPO_ROOT, runAction } from "./helpers/action.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Report = any;

/** A copy of the example folder (the run's workspace: data and outputs stay inside it), its quantgate.yml after `edit`. */
async function exampleCopy(example: string, edit: (yaml: string) => string = (y) => y): Promise<{ dir: string; config: string }> {
  const src = path.join(REPO_ROOT, "examples", example);
  const dir = await mkdtemp(path.join(os.tmpdir(), `qg-${example}-`));
  await cp(src, dir, { recursive: true });
  const config = path.join(dir, "quantgate.yml");
  await writeFile(config, edit(await readFile(config, "utf8")));
  return { dir, config };
}

async function runCli(config: string, out: string): Promise<{ status: number | null; output: string; report: Report }> {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", config, "--output-dir", out], { encoding: "utf8" });
  return { status: r.status, output: r.stdout + r.stderr, report: JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8")) };
}

const int2 = (yaml: string): string =>
  yaml.replace("format: int8", "format: int2").replace("block_size: 32", "block_size: 64").replace("symmetric: true", "symmetric: false");

const metric = (report: Report, key: string): { float?: number; quantized: number } => report.metrics.find((m: { key: string }) => m.key === key);
const failed = (report: Report): string[] => report.gate.rules.filter((r: { status: string }) => r.status === "fail").map((r: { rule: string }) => r.rule);

const EXAMPLES = [
  {
    name: "text-recognition",
    metrics: ["cer", "wer", "cer_vs_float", "wer_vs_float"],
    rules: ["max_cer", "max_cer_increase", "max_wer_increase", "max_cer_vs_float", "max_model_size"],
    check: (report: Report) => {
      expect(metric(report, "cer").float).toBeCloseTo(0.00388, 4); // torch's greedy decode of the same lines
      expect(metric(report, "cer").quantized).toBeLessThan(0.01);
      expect(report.evaluation.samples).toMatchObject({ evaluated: 64, total: 64 });
    },
    int2Fails: ["max_cer", "max_cer_increase", "max_cer_vs_float"],
  },
  {
    name: "segmentation",
    metrics: ["iou", "dice", "iou_pooled", "dice_pooled", "iou_vs_float", "dice_vs_float", "pixel_agreement"],
    rules: ["min_iou", "max_iou_drop", "max_dice_drop", "min_iou_vs_float", "min_pixel_agreement", "max_model_size"],
    check: (report: Report) => {
      expect(metric(report, "iou_pooled").float).toBeCloseTo(0.92247, 4); // torch's pooled IoU of the float model
      expect(metric(report, "dice_pooled").float).toBeCloseTo(0.95963, 4);
      expect(metric(report, "iou_vs_float").quantized).toBeGreaterThan(0.95);
      expect(report.evaluation.samples).toMatchObject({ evaluated: 48, total: 48 });
    },
    int2Fails: ["min_iou", "max_iou_drop", "max_dice_drop", "min_iou_vs_float", "min_pixel_agreement"],
  },
] as const;

describe.each(EXAMPLES)("the $name example", (ex) => {
  it("passes its gate with int8 through the CLI, every rule judged on a measured number", async () => {
    const { dir, config } = await exampleCopy(ex.name);
    const r = await runCli(config, path.join(dir, "out"));
    expect(r.status, r.output).toBe(0);
    expect(r.report.verdict).toBe("pass");
    expect(r.report.evaluation.task).toBe(ex.name);
    expect(r.report.metrics.map((m: { key: string }) => m.key)).toEqual(expect.arrayContaining([...ex.metrics]));
    expect(r.report.gate.rules.map((x: { rule: string }) => x.rule).sort()).toEqual([...ex.rules].sort());
    for (const rule of r.report.gate.rules) expect(rule.observed, rule.message).toBeTypeOf("number");
    ex.check(r.report);
    // the measure stage timed the model on one of the task's inputs
    expect(metric(r.report, "latency_p50").quantized).toBeGreaterThan(0);
    for (const m of ex.metrics) expect(r.output, `${m} in the terminal table`).toContain(r.report.metrics.find((x: { key: string }) => x.key === m).label);
  });

  it("fails its gate with int2, naming the task rules that broke", async () => {
    const { dir, config } = await exampleCopy(ex.name, int2);
    const r = await runCli(config, path.join(dir, "out"));
    expect(r.status).not.toBe(0);
    expect(r.report.verdict).toBe("fail");
    expect(r.report.gate.errors).toEqual([]);
    expect(failed(r.report)).toEqual(expect.arrayContaining([...ex.int2Fails]));
    expect(r.output).toMatch(/Verdict: FAIL/);
  });

  it("passes as the runner runs the bundled action, with the task metrics in the step outputs and the job summary", async () => {
    const { dir } = await exampleCopy(ex.name);
    const run = runAction(dir, {
      config: "quantgate.yml",
      "output-dir": "out",
      cache: "false",
      artifact: "false",
      comment: "never",
    });
    expect(run.status, run.stdout).toBe(0);
    expect(run.outputs.verdict).toBe("pass");
    for (const m of ex.metrics) expect(run.outputs[`metric-${m}-quantized`], `${m} output`).toMatch(/^[\d.e-]+$/);
    const report = JSON.parse(await readFile(run.outputs["report-path"]!, "utf8"));
    for (const m of report.metrics.filter((x: { key: string }) => (ex.metrics as readonly string[]).includes(x.key)))
      expect(run.summary).toContain(escapeMarkdown(m.label));
  });

  it("fails as the runner runs the bundled action with int2", async () => {
    const { dir } = await exampleCopy(ex.name, int2);
    const run = runAction(dir, { config: "quantgate.yml", "output-dir": path.join(dir, "out"), cache: "false", artifact: "false", comment: "never" });
    expect(run.status, run.stdout).not.toBe(0);
    expect(run.outputs.verdict).toBe("fail");
    expect(run.summary).toMatch(/FAIL|fail/);
  });
});
