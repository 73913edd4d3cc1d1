// The conformance corpus (test/corpus, written by scripts/corpus/export.py): for every model and every
// format, quantize -> emit (with the loadability check) -> ONNX Runtime, and check what a user relies on:
// the quantized model loads and runs, every float weight is listed exactly once (quantized or skipped
// with a reason), the stored bits per weight are the file's, and the outputs stay close to float.
import { readdirSync } from "node:fs";
import path from "node:path";
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import type { WeightFormat } from "../src/config/schema.js";
import {
  CONFORMANCE_FORMATS,
  DEQUANTIZELINEAR_FORMS,
  runConformance,
  SUBGRAPH_FORMS,
  type ConformanceCache,
  type ConformanceFormat,
} from "../src/emit/conformance.js";
import type { ExecForm } from "../src/emit/index.js";
import type { Ort } from "../src/runtime/ort.js";

const CORPUS = path.join(import.meta.dirname, "corpus");
const MODELS = readdirSync(CORPUS)
  .filter((f) => f.endsWith(".onnx") && f !== "prequantized_float_reference.onnx")
  .sort();
const cache: ConformanceCache = {};

describe("conformance corpus", () => {
  it("holds the models the export script writes", () => {
    expect(MODELS.length).toBeGreaterThanOrEqual(14);
  });
  for (const file of MODELS) {
    // The packed operators (MatMulNBits, MatMulBnb4) where they apply, then every weight in the standard-op forms.
    const variants: [ConformanceFormat, string, ReadonlyMap<WeightFormat, ExecForm> | undefined][] = [
      ...CONFORMANCE_FORMATS.map((f) => [f, "", undefined] as [ConformanceFormat, string, undefined]),
      ["int4", " (subgraph forms)", SUBGRAPH_FORMS],
      ["nf4", " (subgraph forms)", SUBGRAPH_FORMS],
      ["int4", " (DequantizeLinear where the opset has it)", DEQUANTIZELINEAR_FORMS],
      ["int8", " (DequantizeLinear where the opset has it)", DEQUANTIZELINEAR_FORMS],
    ];
    for (const [format, label, forms] of variants) {
      it(`${file} ${format}${label}`, async () => {
        const r = await runConformance(ort as unknown as Ort, path.join(CORPUS, file), format, cache, forms);
        expect(r.error, r.error).toBeUndefined();
        expect(r.loads).toBe(true);
        // No weight fell back or stayed float because ONNX Runtime refused what the emitter wrote.
        expect(r.notes, r.notes.join("; ")).toEqual([]);
        expect(r.skipped.filter((s) => /refused|not emitted/.test(s.reason))).toEqual([]);
        expect(r.unaccounted, `float weights in neither list: ${r.unaccounted.join(", ")}`).toEqual([]);
        expect(r.duplicated, `listed more than once: ${r.duplicated.join(", ")}`).toEqual([]);
        if (r.quantizedParams > 0) {
          expect(r.fileBitsPerWeight).toBeCloseTo(r.storedBitsPerWeight, 6);
          expect(Math.abs(r.fileGrowthRatio - 1), `file growth / stored bytes = ${r.fileGrowthRatio}`).toBeLessThan(0.01);
          expect(r.cosine, `cosine ${r.cosine} < ${r.minCosine}`).toBeGreaterThanOrEqual(r.minCosine);
        }
      });
    }
  }
});
