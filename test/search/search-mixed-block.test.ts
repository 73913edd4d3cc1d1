// The block size of the search's mixed-precision candidates, on a real Conv model (examples/text-recognition) and
// real onnxruntime sessions: when the first mix at the cheapest passing level's block size breaks an accuracy
// rule, the next ones are built at a finer block size instead of more bits at the same one.
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { runSearch } from "../../src/search/index.js";

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

describe("search mixed-precision block size", () => {
  it("moves the mixes to a finer block size after one breaks the CER rule at the passing level's block size", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-mixed-block-"));
    await cp(path.resolve("examples/text-recognition"), dir, { recursive: true });
    const configPath = path.join(dir, "quantgate.yml");
    // The benchmark's space (bench/search.mjs) and budget (a fifth of its grid).
    await writeFile(
      configPath,
      (await readFile(configPath, "utf8")) +
        `search:
  space:
    formats: [int8, int4, int3, nf4, mxfp4]
    block_sizes: [32, 64, 128]
    algorithms: [rtn, mse]
    mixed_formats: [int2, int4, int8]
  max_full_evaluations: 6
  holdout: 0.3
`,
    );
    const config = await loadConfig(configPath);
    const result = await runSearch(config, { ort });
    expect(result.evaluations.length).toBeLessThanOrEqual(6);
    const mixes = result.evaluations.filter((e) => e.candidate.kind === "mixed");
    const summary = result.evaluations.map((e) => `${e.candidate.label}: ${e.verdict}`).join("; ");
    // The case this test is about: the cheapest passing uniform level is at b128 and a mix there breaks the CER rule.
    expect(mixes.length, summary).toBeGreaterThanOrEqual(2);
    expect(mixes[0]!.accurate, summary).toBe(false);
    const firstBlock = mixes[0]!.candidate.recipe.block_size;
    // The next mix is at a finer block size, not more bits at the same one.
    expect(mixes[1]!.candidate.recipe.block_size, summary).toBeLessThan(firstBlock);
    // A mix passes on the search part and on the holdout part, cheaper than every uniform recipe that passed.
    expect(result.verdict, result.message).toBe("pass");
    const winner = result.verification!.winner;
    expect(winner.verdict, result.message).toBe("pass");
    expect(winner.candidate.kind, result.message).toBe("mixed");
    expect(result.patch).toBeDefined();
    const best = result.best!;
    expect(best.candidate.kind).toBe("mixed");
    for (const e of result.evaluations) {
      if (e.candidate.kind === "uniform" && e.verdict === "pass") expect(best.cost!, e.candidate.label).toBeLessThan(e.cost!);
    }
  }, 300_000);
});
