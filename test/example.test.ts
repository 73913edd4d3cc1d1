import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { describe, expect, it } from "vitest";
import { renderMarkdown } from "../src/report/markdown.js";
import { REPO_ROOT, runAction } from "./helpers/action.js";

const EXAMPLE = path.join(REPO_ROOT, "examples", "tiny-lm");

/** Outputs stay inside the workspace (the config's folder for the CLI): a fresh folder under its quantgate-out/. */
async function outputFolder(prefix: string): Promise<string> {
  await mkdir(path.join(EXAMPLE, "quantgate-out"), { recursive: true });
  return mkdtemp(path.join(EXAMPLE, "quantgate-out", prefix));
}

describe("the bundled tiny-LM example", () => {
  it("passes the gate through the CLI with int4 asymmetric block 32 on MatMulNBits", async () => {
    const out = await outputFolder("qg-example-");
    const r = spawnSync(
      process.execPath,
      [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", path.join(EXAMPLE, "quantgate.yml"), "--output-dir", out],
      {
        encoding: "utf8",
      },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Verdict: PASS/);
    const report = JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8"));
    expect(report.recipe).toMatchObject({ format: "int4", block_size: 32, symmetric: false });
    expect(report.evaluation.task).toBe("language-modeling");
    const m = Object.fromEntries(report.metrics.map((x: { key: string; float?: number; quantized: number }) => [x.key, x]));
    expect(m.perplexity.float).toBeGreaterThan(5);
    expect(m.perplexity.float).toBeLessThan(30); // a trained model, far below the unigram baseline (185)
    expect(m.perplexity.quantized).toBeGreaterThan(m.perplexity.float * 0.98);
    expect(m.kl_mean.quantized).toBeGreaterThan(0);
    expect(m.kl_p99.quantized).toBeGreaterThanOrEqual(m.kl_mean.quantized);
    expect(m.kl_max.quantized).toBeGreaterThanOrEqual(m.kl_p99.quantized);
    expect(m.top1_agreement.quantized).toBeGreaterThan(0.8);
    expect(report.weights.quantized.length).toBe(17); // 4 layers x 4 projections + the LM head
    expect(report.storage.floatBytes / report.storage.storedBytes).toBeGreaterThanOrEqual(5);
    expect(report.float.run.latency.p50Ms).toBeGreaterThan(0);
    expect(report.quantized.run.peakRssBytes).toBeGreaterThan(0);
    expect(report.quantized.sizeBytes).toBeLessThan(report.float.sizeBytes);
    const model = fromBinary(ModelProtoSchema, await readFile(path.join(out, "model.quantized.onnx")));
    const nbits = model.graph!.node.filter((n) => n.opType === "MatMulNBits" && n.domain === "com.microsoft");
    expect(nbits.length).toBe(17);
    // The bits-per-weight row is what the file stores: stored bits x quantized weights is what the file grows by
    // over its float-free remainder (the same file with the data of every MatMulNBits B, scales and zero
    // points emptied), within 1%. The packed figure is its own record.
    const weights = report.weights.quantized.reduce((a: number, l: { k: number; n: number }) => a + l.k * l.n, 0);
    const held = new Set(nbits.flatMap((n) => n.input.slice(1).filter(Boolean)));
    for (const t of model.graph!.initializer) if (held.has(t.name)) t.rawData = new Uint8Array(0);
    const file = await readFile(path.join(out, "model.quantized.onnx"));
    const growth = file.length - toBinary(ModelProtoSchema, model).length;
    expect(m.bits_per_weight.quantized).toBeCloseTo(report.storage.storedBitsPerWeight, 10);
    expect(Math.abs((m.bits_per_weight.quantized * weights) / 8 / growth - 1)).toBeLessThan(0.01);
    expect(m.bits_per_weight_packed.label).toMatch(/packed \(MatMulNBits\)/);
    expect(m.bits_per_weight_packed.quantized).toBeCloseTo(report.storage.bitsPerWeight, 10);
    expect(report.gate.rules.find((r: { rule: string }) => r.rule === "max_bits_per_weight").observed).toBe(m.bits_per_weight.quantized);
    // The measure stage's figures and the execution choices, folded; a slower quantized model is said in the visible part.
    const summary = await readFile(path.join(out, "quantgate-summary.md"), "utf8");
    const folded = summary.slice(summary.indexOf("<details><summary>Execution and measurement</summary>"));
    expect(folded.length).toBeLessThan(summary.length);
    expect(folded).toMatch(/\| Quantized \| [\d.]+ MiB \| [\d.]+ MiB \| [\d.]+ MiB \| [\d.]+ ms \| [\d.]+ ms \|/);
    expect(folded).toMatch(/- Latency basis: (on-CPU|wall) time/);
    expect(folded).toMatch(/- Accuracy level [04] \(measured\): level 4/);
    // Level 0's row: "(chosen)" when level 4 was not 5% faster on this runner (a loaded machine decides that).
    expect(folded).toMatch(/\| 0( \(chosen\))? \| yes \| [\d.]+ \| one token/);
    expect(folded).toMatch(/- Forms chosen by timing on this runner/);
    const visible = (md: string): string => md.slice(0, md.indexOf("<details>"));
    const slower = { ...report, latencyComparison: { ...report.latencyComparison, ratioP50: 1.3 } };
    expect(visible(renderMarkdown(slower))).toMatch(
      /The quantized model is slower than float\*\*: 1\.30x .* ms vs [\d.]+ ms\)\. Execution chosen: accuracy level [04]/,
    );
    // ... and why, with numbers: where the quantized weights execute, each packed format timed alone against float
    // MatMul, and whether the ratio's interval includes 1
    const why = (md: string): string => visible(md).slice(visible(md).indexOf("> Why: "));
    expect(why(renderMarkdown(slower))).toMatch(/^> Why: \d+ of \d+ quantized weights \(\d+% of the quantized float bytes\) run on a packed low-bit operator/);
    expect(why(renderMarkdown(slower))).toMatch(/Timed alone at M=1: int4 on \S+ \(\d+x\d+\) [\d.]+ ms vs float MatMul [\d.]+ ms\./);
    const noisy = {
      ...slower,
      latencyComparison: { ...slower.latencyComparison, ratioInterval: { ...slower.latencyComparison.ratioInterval, lo: 0.9, hi: 1.4 } },
    };
    expect(why(renderMarkdown(noisy))).toMatch(/The ratio's interval \(0\.90-1\.40x\) includes 1: the difference is within this runner's noise\./);
    const clear = {
      ...slower,
      latencyComparison: { ...slower.latencyComparison, ratioInterval: { ...slower.latencyComparison.ratioInterval, lo: 1.2, hi: 1.4 } },
    };
    expect(why(renderMarkdown(clear))).not.toMatch(/includes 1/);
    const faster = { ...report, latencyComparison: { ...report.latencyComparison, ratioP50: 0.8 } };
    expect(renderMarkdown(faster)).not.toMatch(/slower than float\*\*/);
  });

  it("is deterministic: two runs write byte-identical quantized models", async () => {
    const a = await outputFolder("qg-det-a-");
    const b = await outputFolder("qg-det-b-");
    for (const out of [a, b]) {
      // memory/latency measurement is irrelevant to the bytes: keep this test quick
      const r = spawnSync(
        process.execPath,
        [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", path.join(EXAMPLE, "quantgate.yml"), "--output-dir", out],
        {
          encoding: "utf8",
        },
      );
      // Deterministic bytes only count from a run that passed: a failed gate fails this test too.
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
    const [ma, mb] = await Promise.all([readFile(path.join(a, "model.quantized.onnx")), readFile(path.join(b, "model.quantized.onnx"))]);
    expect(ma.equals(mb)).toBe(true);
  });

  it("runs through the bundled action as the runner does", async () => {
    const out = await outputFolder("qg-example-action-");
    const run = runAction(EXAMPLE, { config: "quantgate.yml", "output-dir": out });
    expect(run.status, run.stdout).toBe(0);
    expect(run.outputs.verdict).toBe("pass");
    expect(Number(run.outputs["perplexity-quantized"])).toBeGreaterThan(Number(run.outputs["perplexity-float"]) * 0.98);
    expect(run.summary).toMatch(/\| Perplexity <sub>[\d,]+ predicted tokens<\/sub> \| [\d.]+ \| [\d.]+ \| \+[\d.]+% \| ≤ 6\.00%/);
  });
});

describe("the work cache", () => {
  it("serves an unchanged re-run from the cache and re-measures only latency and memory", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-cache-"));
    let text = await readFile(path.join(EXAMPLE, "quantgate.yml"), "utf8");
    for (const f of ["model.onnx", "eval.txt", "calib.txt", "tokenizer.json"]) text = text.replace(`: ${f}`, `: ${path.join(EXAMPLE, f)}`);
    // The example's files lie outside this config's folder: the CLI's documented opt-in for reads.
    text += "allow_outside_workspace: true\n";
    await writeFile(path.join(dir, "quantgate.yml"), text);
    const reports = [];
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", path.join(dir, "quantgate.yml"), "--cache"], {
        encoding: "utf8",
      });
      expect(r.status, r.stderr).toBe(0);
      reports.push(JSON.parse(await readFile(path.join(dir, "quantgate-out", "quantgate-report.json"), "utf8")));
    }
    const [cold, warm] = reports;
    expect(cold.cache.hits).toEqual([]);
    expect(warm.cache.hits).toContain("quantized");
    expect(warm.cache.hits).toContain("evaluation");
    const skipped = warm.stages.filter((s: { status: string }) => s.status === "skipped").map((s: { stage: string }) => s.stage);
    expect(skipped).toEqual(expect.arrayContaining(["calibrate", "quantize", "emit", "evaluate"]));
    expect(warm.stages.find((s: { stage: string }) => s.stage === "measure").status).toBe("ok");
    expect(warm.evaluation).toEqual(cold.evaluation);
    expect(warm.weights.quantized).toEqual(cold.weights.quantized);
    expect(warm.quantized.run.latency.p50Ms).toBeGreaterThan(0);
  });
});
