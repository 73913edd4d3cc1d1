// Retrieval: recall@k of the float model's nearest neighbours among the quantized model's (cosine): a pure function.
import { gateRulesFor } from "../gate/rules.js";
import type { MetricRecord } from "../tasks/types.js";

/** Unit-length copies (a zero vector stays zero and is then equally far from everything). */
function normalized(embeddings: readonly Float32Array[]): Float64Array[] {
  return embeddings.map((e) => {
    let norm = 0;
    for (let i = 0; i < e.length; i++) norm += e[i]! * e[i]!;
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    return Float64Array.from(e, (v) => v * inv);
  });
}

/** Indices of each sample's k nearest other samples by cosine similarity; ties go to the lower index. */
export function nearestNeighbours(embeddings: readonly Float32Array[], k: number): number[][] {
  const unit = normalized(embeddings);
  const n = unit.length;
  const dim = unit[0]?.length ?? 0;
  return unit.map((a, i) => {
    const sims: { j: number; s: number }[] = [];
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const b = unit[j]!;
      let s = 0;
      for (let d = 0; d < dim; d++) s += a[d]! * b[d]!;
      sims.push({ j, s });
    }
    sims.sort((x, y) => y.s - x.s || x.j - y.j);
    return sims.slice(0, k).map((x) => x.j);
  });
}

/**
 * Recall@k of neighbours: for each sample, the share of its k nearest neighbours under the float embeddings
 * (cosine, the sample itself excluded) that are also among its k nearest under the quantized embeddings.
 * The record's value is the mean over samples; per-sample values are kept.
 */
export function recallAtK(floatEmb: readonly Float32Array[], quantEmb: readonly Float32Array[], k: number): MetricRecord {
  const n = floatEmb.length;
  if (quantEmb.length !== n) throw new RangeError(`${n} float embeddings but ${quantEmb.length} quantized embeddings`);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`recall@k needs a whole k of at least 1, got ${k}`);
  if (n < k + 1) throw new RangeError(`recall@${k} needs more than ${k} samples, got ${n}`);
  const dim = floatEmb[0]!.length;
  [...floatEmb, ...quantEmb].forEach((e, i) => {
    if (e.length !== dim) throw new RangeError(`embedding ${i % n} has ${e.length} values, the first has ${dim}`);
  });
  const fn = nearestNeighbours(floatEmb, k);
  const qn = nearestNeighbours(quantEmb, k);
  const perSample = fn.map((f, i) => {
    const q = new Set(qn[i]);
    return f.filter((j) => q.has(j)).length / k;
  });
  return {
    key: "recall_at_k",
    label: `Recall@${k} of float's neighbours`,
    unit: "ratio",
    direction: "higher",
    quantized: perSample.reduce((a, b) => a + b, 0) / n,
    perSample: { quantized: perSample },
    rules: gateRulesFor("recall_at_k"),
    note: `cosine, k = ${k}, ${n.toLocaleString("en-US")} samples`,
  };
}
