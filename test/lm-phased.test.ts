// The language-modeling task scored one model at a time (evaluatePhased: float first, its logits kept on disk,
// then the quantized model) gives exactly the figures of the interleaved evaluation (both sessions at once).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig, pathResolver } from "../src/config/load.js";
import type { LmEvaluation } from "../src/config/schema.js";
import { declaredDims } from "../src/data/records.js";
import { feedTypeOf } from "../src/data/tensors.js";
import { loadModel, valueInfoTensorType } from "../src/onnx/model.js";
import { createSession, loadOrt, type Session } from "../src/runtime/ort.js";
import { languageModelingTask } from "../src/tasks/language-modeling.js";
import { quantizeModel } from "./helpers/quantize.js";

const ROOT = path.join(import.meta.dirname, "..");
const TINY = path.join(ROOT, "examples", "tiny-lm");
const tmp = mkdtempSync(path.join(os.tmpdir(), "quantgate-phased-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("language-modeling evaluated in phases", () => {
  for (const stride of [undefined, 48]) {
    it(`gives the interleaved evaluation's perplexity, KL and top-1 exactly (stride ${stride ?? "none"})`, async () => {
      const cfg = parseConfig(
        `model: model.onnx
recipe: { format: int4, block_size: 32 }
evaluation:
  task: language-modeling
  dataset: eval.txt
  tokenizer: tokenizer.json
  sequence_length: 64
  samples: 6
  batch_size: 4
${stride ? `  stride: ${stride}\n` : ""}`,
        path.join(TINY, "quantgate.yml"),
        {},
        { workspace: ROOT },
      );
      const ev = cfg.evaluation as LmEvaluation;
      const floatPath = path.join(TINY, "model.onnx");
      const quantPath = path.join(tmp, `q${stride ?? 0}.onnx`);
      writeFileSync(quantPath, (await quantizeModel(floatPath, { format: "int3", block_size: 32 })).bytes);
      const model = await loadModel(floatPath);
      const inputs = model.graph.input.map((i) => {
        const t = valueInfoTensorType(i)!;
        return { name: i.name, type: feedTypeOf(t.elemType)!, rank: t.rank, dims: declaredDims(i) };
      });
      const data = await languageModelingTask.load(ev, { resolve: pathResolver(cfg), inputs });
      const { ort } = await loadOrt();
      const f = await createSession(ort, floatPath, 1);
      const q = await createSession(ort, quantPath, 1);
      let interleaved;
      try {
        interleaved = await languageModelingTask.evaluate(ev, data, { ort, float: f, quantized: q, threads: 1 });
      } finally {
        await f.release();
        await q.release();
      }
      // One session alive at a time, float first.
      const opened: string[] = [];
      let alive: { which: string; s: Session } | undefined;
      let maxAlive = 0;
      const phased = await languageModelingTask.evaluatePhased!(ev, data, {
        ort,
        threads: 1,
        open: async (which) => {
          if (alive) await alive.s.release();
          alive = undefined;
          opened.push(which);
          alive = { which, s: await createSession(ort, which === "float" ? floatPath : quantPath, 1) };
          maxAlive = Math.max(maxAlive, 1);
          return alive.s;
        },
      });
      if (alive) await alive.s.release();
      expect(opened).toEqual(["float", "quantized"]);
      expect(maxAlive).toBe(1);
      const m = (r: typeof phased) => Object.fromEntries(r.metrics.map((x) => [x.key, x]));
      const [a, b] = [m(interleaved), m(phased)];
      // The quantized model differs from float (int3), so the comparison is not trivial.
      expect(a.kl_mean!.quantized).toBeGreaterThan(1e-3);
      expect(a.top1_agreement!.quantized).toBeLessThan(1);
      // Same sums in the same order: identical, not merely close (perplexity, every per-token KL and agreement).
      expect(b.perplexity).toEqual(a.perplexity);
      expect(b.kl_mean).toEqual(a.kl_mean);
      expect(b.kl_p99).toEqual(a.kl_p99);
      expect(b.kl_max).toEqual(a.kl_max);
      expect(b.top1_agreement).toEqual(a.top1_agreement);
      expect(phased.samples).toEqual(interleaved.samples);
    });
  }
});
