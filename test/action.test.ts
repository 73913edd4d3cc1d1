import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runAction } from "./helpers/action.js";
import { writeClassifierFixture } from "./helpers/models.js";

describe("the action run as the runner runs it (node dist/index.js)", () => {
  it("passes with a budget the model meets: exit 0, outputs and summary table written", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-pass-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_bits_per_weight: 5.2\n  max_model_size: 1MiB\n", {
      recipe: "  format: int8\n  block_size: 32",
    });
    const run = runAction(dir, { config: "quantgate.yml", format: "int4" });
    expect(run.status, run.stdout).toBe(0);
    expect(run.outputs.verdict).toBe("pass");
    expect(Number(run.outputs["bits-per-weight"])).toBeCloseTo(5.125, 3); // int4 from the input override
    expect(run.outputs["model-path"]).toMatch(/mlp\.quantized\.onnx$/);
    expect(Number(run.outputs["accuracy-float"])).toBeGreaterThan(0.5);
    expect(run.summary).toContain("| Metric | Float | Quantized | Delta | Limit | Status |");
    expect(run.summary).toMatch(/\| Bits per weight, stored \| 32\.000 bits \| 5\.125 bits \|.*✅ pass/);
    const report = JSON.parse(await readFile(run.outputs["report-path"]!, "utf8"));
    expect(report.schema).toBe("quantgate.report/v2");
    expect(report.hashes.model).toMatch(/^[0-9a-f]{64}$/);
    expect(report.hashes.data.length).toBe(2);
    expect(report.weights.quantized).toHaveLength(2);
  });

  it("fails with a budget that cannot be met: non-zero exit, the rule named in summary and annotation", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-fail-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_model_size: 1KiB\n");
    const run = runAction(dir, { config: "quantgate.yml" });
    expect(run.status).not.toBe(0);
    expect(run.outputs.verdict).toBe("fail");
    expect(run.summary).toMatch(/\| Model size \|.*<code>max\\_model\\_size<\/code>.*❌ fail/);
    expect(run.summary.split("\n")[0]).toMatch(/QuantGate failed.*1 rule failed/);
    expect(run.summary).toMatch(/Model size \*\*.* breaks <code>max\\_model\\_size<\/code>/);
    expect(run.stdout).toMatch(/::error title=QuantGate max_model_size,file=.*quantgate\.yml,line=17::/);
  });

  it("fails closed on a config error, pointing at the file and line", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-cfg-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_colour: blue\n");
    const run = runAction(dir, { config: "quantgate.yml" });
    expect(run.status).not.toBe(0);
    expect(run.outputs.verdict).toBe("fail");
    expect(run.stdout).toMatch(/::error title=QuantGate config,file=quantgate\.yml,line=17::gate: unknown key "max_colour"/);
  });

  it("fails closed when the model file is missing", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-nomodel-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    const run = runAction(dir, { config: "quantgate.yml", model: "nope.onnx" });
    expect(run.status).not.toBe(0);
    expect(run.outputs.verdict).toBe("fail");
    expect(run.summary).toMatch(/nope\.onnx: cannot read model file/);
  });
});
