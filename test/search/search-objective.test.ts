// search.objective decode_ms_per_token: the search minimizes the decode ms per token the language-modeling task
// measures on a KV-cache export (test/fixtures/llm, random weights: real ONNX, real sessions, decode in child
// processes); where the task or model does not measure it, a config error names the field and its line.
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { costOf, runSearch } from "../../src/search/index.js";
import { renderSuggestion } from "../../src/search/markdown.js";
import { readFile } from "node:fs/promises";
import type { Report } from "../../src/report/types.js";
import { writeClassifierFixture } from "../helpers/models.js";

const ROOT = path.join(import.meta.dirname, "..", "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "llm");

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

async function lmConfig(model: string, decode: string, search: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-decode-"));
  const text = `allow_outside_workspace: true
model: ${model}
output_dir: out
recipe: { format: int8, block_size: 32, accuracy_level: 0 }
evaluation:
  task: language-modeling
  dataset: ${path.join(ROOT, "examples/tiny-lm/eval.txt")}
  tokenizer: ${path.join(ROOT, "examples/tiny-lm/tokenizer.json")}
  sequence_length: 32
  samples: 6
  batch_size: 2
measure:
  threads: 1
  warmup: 1
  runs: 3
  kernel_benchmark: false
  memory: false
  decode: ${decode}
gate:
  max_decode_ms_per_token: 1000
search:
${search}`;
  const file = path.join(dir, "quantgate.yml");
  await writeFile(file, text);
  return file;
}

describe("search.objective: decode_ms_per_token", () => {
  it("minimizes the measured decode ms per token of a KV-cache export", { timeout: 300_000 }, async () => {
    const file = await lmConfig(
      path.join(FIXTURES, "model.onnx"),
      "{ prompt_tokens: 8, decode_tokens: 6, prompts: 2 }",
      "  objective: decode_ms_per_token\n  space: { formats: [int8, int4], block_sizes: [32, 128], algorithms: [rtn], mixed_formats: [] }\n  max_full_evaluations: 3\n  holdout: 0.3\n",
    );
    const result = await runSearch(await loadConfig(file), { ort });
    expect(result.objective).toBe("decode_ms_per_token");
    expect(result.verdict, result.message).toBe("pass");
    expect(result.evaluations.length).toBeGreaterThanOrEqual(2);
    for (const e of result.evaluations) {
      const report = JSON.parse(await readFile(e.reportPath, "utf8")) as Report;
      const decode = report.metrics.find((m) => m.key === "decode_ms_per_token_p50");
      expect(decode?.quantized, e.candidate.label).toBeGreaterThan(0);
      expect(e.cost).toBe(decode!.quantized);
      expect(costOf(report, "decode_ms_per_token")).toBe(decode!.quantized);
    }
    // The suggestion is the cheapest passing candidate by measured decode time, not by bits.
    const passing = result.evaluations.filter((e) => e.verdict === "pass").map((e) => e.cost!);
    expect(result.best!.cost).toBe(Math.min(...passing));
    const md = renderSuggestion(result);
    expect(md).toMatch(/objective: decode ms\/token/);
    expect(md).toMatch(/\| Decode ms\/token p50 \|/);
  });

  const cases: { what: string; make: () => Promise<string>; expected: RegExp }[] = [
    {
      what: "a classification task",
      make: async () => {
        const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-decode-cls-"));
        const file = await writeClassifierFixture(dir, "  max_kl_mean: 0.02\n");
        await writeFile(file, (await readFile(file, "utf8")) + "search:\n  objective: decode_ms_per_token\n");
        return file;
      },
      expected:
        /quantgate\.yml:\d+ search\.objective: decode_ms_per_token is measured only by the language-modeling task \(evaluation\.task is classification\)/,
    },
    {
      what: "a language model without a KV cache",
      make: () => lmConfig(path.join(ROOT, "examples/tiny-lm/model.onnx"), "{ prompts: 2 }", "  objective: decode_ms_per_token\n"),
      expected: /quantgate\.yml:\d+ search\.objective: decode_ms_per_token is not measured for .*model\.onnx: it has no KV cache/,
    },
    {
      what: "the decode measurement turned off",
      make: () => lmConfig(path.join(FIXTURES, "model.onnx"), "{ prompts: 0 }", "  objective: decode_ms_per_token\n"),
      expected: /quantgate\.yml:\d+ search\.objective: decode_ms_per_token needs the decode measurement, which measure\.decode\.prompts: 0 turns off/,
    },
  ];
  it.each(cases)("is a config error naming search.objective and its line for $what", async ({ make, expected }) => {
    const file = await make();
    const text = await readFile(file, "utf8");
    const line = text.split("\n").findIndex((l) => l.includes("objective: decode_ms_per_token")) + 1;
    const err = await runSearch(await loadConfig(file), { ort }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(expected);
    expect(err?.message).toContain(`quantgate.yml:${line} search.objective`);
  });
});
