import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, runAction } from "./helpers/action.js";

interface CliRun {
  readonly status: number | null;
  readonly output: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly report: any;
}

/** Runs the CLI on a config; `edit` rewrites the example's quantgate.yml into a temporary copy first. */
async function runExample(example: string, edit?: (yaml: string) => string): Promise<CliRun> {
  const dir = path.join(REPO_ROOT, "examples", example);
  // Outputs stay inside the workspace (the config's folder for the CLI).
  await mkdir(path.join(dir, "quantgate-out"), { recursive: true });
  const out = await mkdtemp(edit ? path.join(os.tmpdir(), `qg-${example}-`) : path.join(dir, "quantgate-out", `qg-${example}-`));
  let config = path.join(dir, "quantgate.yml");
  if (edit) {
    // A sibling config in the output folder, with the example's paths made absolute.
    const yaml = edit(await readFile(config, "utf8"))
      .replace(/^model: (.*)$/m, (_, p: string) => `model: ${path.join(dir, p)}`)
      .replace(/^ {2}dataset: (\S+)/m, (_, p: string) => `  dataset: ${path.join(dir, p)}`);
    config = path.join(out, "quantgate.yml");
    // The example's model and data lie outside this config's folder: the CLI's documented opt-in for reads.
    await writeFile(config, `${yaml}allow_outside_workspace: true\n`);
  }
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", config, "--output-dir", out], { encoding: "utf8" });
  const report = JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8"));
  return { status: r.status, output: r.stdout + r.stderr, report };
}

const int2 = (yaml: string): string =>
  yaml.replace("format: int8", "format: int2").replace("block_size: 32", "block_size: 64").replace("symmetric: true", "symmetric: false");

/** A metric record of a report read back from JSON. */
const metric = (report: { metrics: { key: string }[] }, key: string) =>
  report.metrics.find((m) => m.key === key) as unknown as { float?: number; quantized: number; perSample: { quantized: number[] } };

describe("the CNN classifier example (weights as Constant nodes, PNG inputs)", () => {
  it("passes with int8: conv and Gemm weights found in Constant nodes, logits close to float", async () => {
    const r = await runExample("cnn-classifier");
    expect(r.status, r.output).toBe(0);
    const q = r.report.weights.quantized;
    expect(q.map((l: { op: string }) => l.op).sort()).toEqual(["Conv", "Conv", "Gemm"]);
    for (const l of q) expect(l.origin).toMatch(/Constant node/);
    const skipped = r.report.weights.skipped.map((s: { name: string; reason: string }) => `${s.name}: ${s.reason}`);
    expect(skipped).toEqual(expect.arrayContaining([expect.stringMatching(/^dw\.weight: too small/)]));
    const e = r.report.evaluation;
    expect(e.task).toBe("fidelity");
    expect(e.samples).toMatchObject({ evaluated: 96, total: 96 });
    expect(metric(r.report, "accuracy").float).toBeGreaterThan(0.95);
    expect(metric(r.report, "output.logits.cosine").quantized).toBeGreaterThan(0.999);
    expect(r.report.quantized.sizeBytes).toBeLessThan(r.report.float.sizeBytes / 3);
  });

  it("fails the gate with int2: the logits drift past the cosine and relative-L2 limits", async () => {
    const r = await runExample("cnn-classifier", int2);
    expect(r.status).not.toBe(0);
    expect(r.report.verdict).toBe("fail");
    expect(
      r.report.gate.rules
        .filter((x: { status: string }) => x.status === "fail")
        .map((x: { message: string }) => x.message)
        .join("\n"),
    ).toMatch(/logits (cosine similarity|relative L2 error)/);
  });
});

describe("the recurrent example (fp16 weights behind Cast, stateful chunks)", () => {
  it("passes with int8, streaming 64 chunks of one sequence with the state fed forward", async () => {
    const r = await runExample("recurrent");
    expect(r.status, r.output).toBe(0);
    const e = r.report.evaluation;
    expect(e.samples).toMatchObject({ evaluated: 1, total: 1, sequences: 64, sequenceUnit: "chunks" });
    expect(metric(r.report, "output.logits.kl_mean").perSample.quantized).toHaveLength(1024);
    expect(metric(r.report, "output.logits.kl_mean").quantized).toBeLessThan(0.005);
    const q = r.report.weights.quantized;
    expect(q.length).toBeGreaterThanOrEqual(3);
    for (const l of q) expect(l.origin).toMatch(/FLOAT16.*Cast/);
  });

  it("fails the gate with int2", async () => {
    const r = await runExample("recurrent", int2);
    expect(r.status).not.toBe(0);
    expect(
      r.report.gate.rules
        .filter((x: { status: string }) => x.status === "fail")
        .map((x: { message: string }) => x.message)
        .join("\n"),
    ).toMatch(/logits (KL mean|top-1 agreement|cosine)/);
  });
});

describe("the CNN and recurrent examples through the bundled action", () => {
  for (const name of ["cnn-classifier", "recurrent"]) {
    it(`${name} passes as the runner runs it, and the report lists every weight with its origin`, async () => {
      await mkdir(path.join(REPO_ROOT, "examples", name, "quantgate-out"), { recursive: true });
      const out = await mkdtemp(path.join(REPO_ROOT, "examples", name, "quantgate-out", `qg-action-${name}-`));
      const run = runAction(path.join(REPO_ROOT, "examples", name), {
        config: "quantgate.yml",
        "output-dir": out,
        cache: "false",
        artifact: "false",
        comment: "never",
      });
      expect(run.status, run.stdout).toBe(0);
      expect(run.outputs.verdict).toBe("pass");
      const report = JSON.parse(await readFile(run.outputs["report-path"]!, "utf8"));
      expect(report.weights.quantized.length).toBeGreaterThan(0);
      for (const w of report.weights.quantized) expect(w.origin).toMatch(/initializer|Constant node/);
      for (const s of report.weights.skipped) expect(s.reason.length).toBeGreaterThan(0);
    });
  }
});
