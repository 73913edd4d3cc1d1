// The llama-kjv example (examples/llama-kjv/quantgate.yml) through the CLI: the committed fp16 Optimum export
// (KV-cache inputs) quantized to int4 with the tied embedding once, perplexity/KL/top-1 and decode measured.
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/action.js";

const EXAMPLE = path.join(REPO_ROOT, "examples", "llama-kjv");

describe("the llama-kjv example", () => {
  it("passes the gate through the CLI: fp16 model, int4, tied embedding once, decode measured", { timeout: 180_000 }, async () => {
    await mkdir(path.join(EXAMPLE, "quantgate-out"), { recursive: true });
    const out = await mkdtemp(path.join(EXAMPLE, "quantgate-out", "qg-llm-"));
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
    const m = Object.fromEntries(report.metrics.map((x: { key: string }) => [x.key, x]));
    // trained model (README: eval perplexity 10.05 over all windows); int4 within a few percent of it
    expect(m.perplexity.float).toBeGreaterThan(5);
    expect(m.perplexity.float).toBeLessThan(15);
    expect(m.perplexity.quantized / m.perplexity.float).toBeLessThan(1.04);
    expect(m.top1_agreement.quantized).toBeGreaterThan(0.85);
    expect(report.evaluation.details.inputs.join(" ")).toMatch(/attention_mask.*position_ids.*past key\/value/);
    // 6 layers x 7 projections, plus the tied embedding quantized once
    expect(report.weights.quantized).toHaveLength(43);
    const tied = report.weights.quantized.filter((l: { origin: string }) => l.origin === "tied embedding");
    expect(tied).toHaveLength(1);
    // fp16 model: the tied LM head's MatMulNBits runs float16 activations, and the report says so
    expect(tied[0].notes).toContain("MatMulNBits with float16 activations (the LM head)");
    // stored bits per weight count the tied table once (512 x 384 weights among the quantized)
    const weights = report.weights.quantized.reduce((a: number, l: { k: number; n: number }) => a + l.k * l.n, 0);
    expect(report.storage.quantizedWeights).toBe(weights);
    expect(report.storage.storedBytes).toBe(report.weights.quantized.reduce((a: number, l: { storedBytes: number }) => a + l.storedBytes, 0));
    expect(report.quantized.sizeBytes).toBeLessThan(report.float.sizeBytes * 0.4);
    for (const key of ["ttft_ms", "decode_ms_per_token_p50", "decode_tokens_per_second"]) expect(m[key].quantized, key).toBeGreaterThan(0);
    expect(report.evaluation.details.llmDecode.firstDivergence).toHaveLength(2);
    // the LLM summary: perplexity, KL, top-1, TTFT, decode ms/token and tokens/s, memory, size, BPW, first divergences
    const summary = await readFile(path.join(out, "quantgate-summary.md"), "utf8");
    for (const label of [
      "Perplexity",
      "KL divergence",
      "Top-1 agreement",
      "Time to first token",
      "Decode ms/token p50",
      "Decode tokens/s",
      "Decode ms/token, quantized/float",
      "Peak memory at P",
      "Peak memory",
      "Model size",
      "Bits per weight, stored",
    ])
      expect(summary, label).toMatch(new RegExp(`^\\| ${label}`, "m"));
    expect(summary).toMatch(/Greedy decode, float vs quantized \(2 prompts of 32 tokens, 16 steps\)/);
  });
});
