// Edit distance and the error rates built on it (CER on code points, WER on words): pure functions.
import { gateRulesFor } from "../gate/rules.js";
import type { MetricRecord } from "../tasks/types.js";

/** Levenshtein distance (unit-cost insertions, deletions, substitutions) between two sequences. */
export function levenshtein<T>(a: readonly T[], b: readonly T[]): number {
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  // One row of the DP table, over the shorter sequence.
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  const row = new Uint32Array(short.length + 1);
  for (let j = 0; j <= short.length; j++) row[j] = j;
  for (let i = 1; i <= long.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    const x = long[i - 1];
    for (let j = 1; j <= short.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (x === short[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[short.length]!;
}

/** A string's Unicode code points (a surrogate pair is one character, as in Python's str). */
export function codePoints(text: string): string[] {
  return Array.from(text);
}

/** Words: maximal runs of non-whitespace. */
export function wordTokens(text: string): string[] {
  return text.split(/\s+/u).filter((w) => w.length > 0);
}

/** Edits and reference length of each sample, kept apart so error rates pool exactly (sums, not means of ratios). */
export interface EditCounts {
  readonly edits: readonly number[];
  readonly lengths: readonly number[];
}

export function editCounts(references: readonly string[], hypotheses: readonly string[], tokenize: (text: string) => string[]): EditCounts {
  if (references.length !== hypotheses.length) throw new RangeError(`internal: ${references.length} references but ${hypotheses.length} hypotheses`);
  const edits: number[] = [];
  const lengths: number[] = [];
  references.forEach((ref, i) => {
    const r = tokenize(ref);
    edits.push(levenshtein(r, tokenize(hypotheses[i]!)));
    lengths.push(r.length);
  });
  return { edits, lengths };
}

/**
 * The pooled error rate (sum of edits / sum of reference lengths) and per-sample values whose mean is exactly that
 * rate: each sample's edits divided by the mean reference length. With no reference characters at all the rate is
 * 0 when nothing was inserted and 1 otherwise.
 */
export function errorRate(counts: EditCounts): { rate: number; perSample: number[] } {
  const n = counts.edits.length;
  const totalEdits = counts.edits.reduce((a, b) => a + b, 0);
  const totalLength = counts.lengths.reduce((a, b) => a + b, 0);
  if (n === 0) return { rate: NaN, perSample: [] };
  if (totalLength === 0) {
    const perSample = counts.edits.map((e): number => (e > 0 ? 1 : 0));
    return { rate: perSample.reduce((a, b) => a + b, 0) / n, perSample };
  }
  const meanLength = totalLength / n;
  return { rate: totalEdits / totalLength, perSample: counts.edits.map((e) => e / meanLength) };
}

/** Character error rate of hypotheses against references (code points). */
export function characterErrorRate(references: readonly string[], hypotheses: readonly string[]): { rate: number; perSample: number[] } {
  return errorRate(editCounts(references, hypotheses, codePoints));
}

/** Word error rate of hypotheses against references (whitespace-separated words). */
export function wordErrorRate(references: readonly string[], hypotheses: readonly string[]): { rate: number; perSample: number[] } {
  return errorRate(editCounts(references, hypotheses, wordTokens));
}

/**
 * CER and WER records of a text-recognition evaluation.
 * - With references: `cer` and `wer`, float vs labels beside quantized vs labels.
 * - Always: `cer_vs_float` and `wer_vs_float`, the quantized transcripts scored against the float ones as reference.
 */
export function textErrorMetrics(floatTexts: readonly string[], quantizedTexts: readonly string[], references?: readonly string[]): MetricRecord[] {
  const n = floatTexts.length;
  const out: MetricRecord[] = [];
  const lines = `${n.toLocaleString("en-US")} line${n === 1 ? "" : "s"}`;
  if (references) {
    const fc = characterErrorRate(references, floatTexts);
    const qc = characterErrorRate(references, quantizedTexts);
    const fw = wordErrorRate(references, floatTexts);
    const qw = wordErrorRate(references, quantizedTexts);
    out.push({
      key: "cer",
      label: "Character error rate",
      unit: "ratio",
      direction: "lower",
      float: fc.rate,
      quantized: qc.rate,
      perSample: { float: fc.perSample, quantized: qc.perSample },
      rules: gateRulesFor("cer"),
      note: `vs labels, ${lines}`,
    });
    out.push({
      key: "wer",
      label: "Word error rate",
      unit: "ratio",
      direction: "lower",
      float: fw.rate,
      quantized: qw.rate,
      perSample: { float: fw.perSample, quantized: qw.perSample },
      rules: gateRulesFor("wer"),
      note: `vs labels, ${lines}`,
    });
  }
  const c = characterErrorRate(floatTexts, quantizedTexts);
  const w = wordErrorRate(floatTexts, quantizedTexts);
  out.push({
    key: "cer_vs_float",
    label: "Character error rate vs float",
    unit: "ratio",
    direction: "lower",
    quantized: c.rate,
    perSample: { quantized: c.perSample },
    rules: gateRulesFor("cer_vs_float"),
    note: `float transcripts as reference, ${lines}`,
  });
  out.push({
    key: "wer_vs_float",
    label: "Word error rate vs float",
    unit: "ratio",
    direction: "lower",
    quantized: w.rate,
    perSample: { quantized: w.perSample },
    rules: gateRulesFor("wer_vs_float"),
    note: `float transcripts as reference, ${lines}`,
  });
  return out;
}
