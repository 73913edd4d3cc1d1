import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  characterErrorRate,
  codePoints,
  ctcClassesToText,
  ctcGreedyDecode,
  decisionMetrics,
  idsToText,
  isScalarPerSample,
  levenshtein,
  maskCounts,
  maskFromOutput,
  parseDictionary,
  pooledIouDice,
  recallAtK,
  nearestNeighbours,
  scalarOutputError,
  segmentationMetrics,
  textErrorMetrics,
  wordErrorRate,
  wordTokens,
} from "../../src/metrics/index.js";
import { GATE_RULES, type RuleDef } from "../../src/gate/rules.js";
import type { MetricRecord } from "../../src/tasks/types.js";

// Values computed by test/metrics/reference.py, a separate Python/numpy implementation.
const REF = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "reference.json"), "utf8"));
const byKey = (records: readonly MetricRecord[], key: string): MetricRecord => {
  const r = records.find((x) => x.key === key);
  if (!r) throw new Error(`no metric ${key} in ${records.map((x) => x.key).join(", ")}`);
  return r;
};
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("edit distance, CER and WER", () => {
  it("counts edits as worked out by hand", () => {
    expect(levenshtein(codePoints("kitten"), codePoints("sitting"))).toBe(3); // k->s, e->i, +g
    expect(levenshtein(codePoints("flaw"), codePoints("lawn"))).toBe(2); // -f, +n
    expect(levenshtein(codePoints(""), codePoints("abc"))).toBe(3);
    expect(levenshtein(codePoints("𝔸b"), codePoints("ab"))).toBe(1); // one code point, not two UTF-16 units
    expect(levenshtein(wordTokens("the cat sat"), wordTokens("the  bat sat down"))).toBe(2);
    // CER by hand: refs "abc" (3) and "de" (2); hyps "abd" (1 edit) and "" (2 edits): 3 / 5.
    const cer = characterErrorRate(["abc", "de"], ["abd", ""]);
    expect(cer.rate).toBeCloseTo(0.6, 12);
    expect(mean(cer.perSample)).toBeCloseTo(0.6, 12); // per-sample values average to the pooled rate
    expect(cer.perSample).toEqual([1 / 2.5, 2 / 2.5]);
  });

  it("matches the Python reference on lines with accents, astral characters and empty lines", () => {
    const t = REF.text;
    const cer = characterErrorRate(t.references, t.hypotheses);
    const wer = wordErrorRate(t.references, t.hypotheses);
    expect(cer.rate).toBeCloseTo(t.cer, 12);
    expect(wer.rate).toBeCloseTo(t.wer, 12);
    t.references.forEach((r: string, i: number) => {
      expect(levenshtein(codePoints(r), codePoints(t.hypotheses[i]))).toBe(t.char_edits[i]);
      expect(levenshtein(wordTokens(r), wordTokens(t.hypotheses[i]))).toBe(t.word_edits[i]);
    });
  });

  it("makes records: float and quantized vs labels, and quantized vs float", () => {
    const t = REF.text;
    const records = textErrorMetrics(t.references, t.hypotheses, t.references);
    expect(records.map((r) => r.key)).toEqual(["cer", "wer", "cer_vs_float", "wer_vs_float"]);
    const cer = byKey(records, "cer");
    expect(cer.float).toBe(0); // float transcripts are the references here
    expect(cer.quantized).toBeCloseTo(t.cer, 12);
    expect(cer.rules).toEqual(["max_cer", "max_cer_increase"]);
    expect(cer.direction).toBe("lower");
    expect(mean(cer.perSample!.quantized)).toBeCloseTo(t.cer, 12);
    expect(byKey(records, "cer_vs_float").quantized).toBeCloseTo(t.cer, 12);
    expect(byKey(records, "wer_vs_float").quantized).toBeCloseTo(t.wer, 12);
    expect(textErrorMetrics(["a"], ["b"]).map((r) => r.key)).toEqual(["cer_vs_float", "wer_vs_float"]);
  });

  it("scores an empty reference set as 0 when nothing was inserted and 1 otherwise", () => {
    expect(characterErrorRate(["", ""], ["", ""]).rate).toBe(0);
    expect(characterErrorRate(["", ""], ["x", ""]).rate).toBe(0.5);
  });
});

describe("CTC greedy decoding and dictionaries", () => {
  it("decodes like the reference with the blank first (PaddleOCR) and last (TensorFlow)", () => {
    for (const c of [REF.ctc_blank_first, REF.ctc_blank_last]) {
      const classes = ctcGreedyDecode(Float32Array.from(c.logits), c.frames, c.classes, c.blank);
      expect(classes).toEqual(c.collapsed);
      expect(ctcClassesToText(classes, c.symbols, c.blank)).toBe(c.text);
    }
  });

  it("collapses repeats but keeps a symbol repeated across a blank (worked by hand)", () => {
    // frames: a a - a b b - - b  (a=1, b=2, blank=0) -> a a b b
    const ids = [1, 1, 0, 1, 2, 2, 0, 0, 2];
    const scores = ids.flatMap((k) => [0, 1, 2].map((c) => (c === k ? 5 : 0)));
    expect(ctcGreedyDecode(scores, ids.length, 3, 0)).toEqual([1, 1, 2, 2]);
    expect(ctcClassesToText([1, 1, 2, 2], ["a", "b"], 0)).toBe("aabb");
    expect(() => ctcGreedyDecode(scores, ids.length, 3, 3)).toThrow(/blank index 3 is outside the output's 3 classes/);
    expect(() => ctcClassesToText([3], ["a", "b"], 0)).toThrow(/class 3 has no symbol/);
  });

  it("reads a dictionary file one symbol per line, keeping a space line, with PaddleOCR's appended space", () => {
    expect(parseDictionary("a\nb\n \nc\n", "dict.txt")).toEqual(["a", "b", " ", "c"]);
    expect(parseDictionary("\ufeffa\r\nb", "dict.txt", true)).toEqual(["a", "b", " "]);
    expect(() => parseDictionary("a\n\nb\n", "keys.txt")).toThrow(/keys\.txt:2: empty line/);
    expect(() => parseDictionary("", "keys.txt")).toThrow(/keys\.txt: the dictionary has no symbols/);
  });

  it("decodes token ids with an offset, skipped ids and an end id", () => {
    expect(idsToText([2, 3, 0, 4, 1, 3], ["<s>", "</s>", "h", "i", "!"], { skip: [0], eos: 1 })).toBe("hi!");
    expect(idsToText(BigInt64Array.from([5n, 6n]), ["a", "b"], { offset: 5 })).toBe("ab");
  });
});

describe("segmentation masks, IoU and Dice", () => {
  const s = REF.segmentation;
  const [n, c, h, w] = s.dims as [number, number, number, number];
  const sample = (flat: number[], i: number, size: number): number[] => flat.slice(i * size, (i + 1) * size);

  it("takes the argmax over the class axis and thresholds logits through the sigmoid", () => {
    const f = maskFromOutput(Float32Array.from(s.logits_float), s.dims, { mode: "argmax", classAxis: 1 });
    expect(f.dims).toEqual([n, h, w]);
    expect(Array.from(f.classes)).toEqual(s.argmax_float);
    const b = maskFromOutput(Float32Array.from(s.binary_logits), [1, 1, h, w], { mode: "threshold", threshold: s.binary_threshold, scores: "logits" });
    expect(Array.from(b.classes)).toEqual(s.binary_mask);
    expect(Array.from(maskFromOutput([0.2, 0.5, 0.51], [3], { mode: "threshold", threshold: 0.5, scores: "probabilities" }).classes)).toEqual([0, 0, 1]);
  });

  it("matches the reference per image, pooled, against float, with an empty image scoring 1", () => {
    const masks = (flat: number[]): Uint8Array[] => Array.from({ length: n }, (_, i) => Uint8Array.from(sample(flat, i, h * w)));
    const records = segmentationMetrics({
      float: masks(s.pred_float),
      quantized: masks(s.pred_quantized),
      references: masks(s.references),
      numClasses: c,
    });
    const close = (a: readonly number[], b: readonly number[]): void => a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 12));
    const iou = byKey(records, "iou");
    close(iou.perSample!.float!, s.iou_float);
    close(iou.perSample!.quantized, s.iou_quantized);
    expect(iou.perSample!.float![2]).toBe(1);
    expect(iou.float).toBeCloseTo(mean(s.iou_float), 12);
    close(byKey(records, "dice").perSample!.quantized, s.dice_quantized);
    expect(byKey(records, "iou_pooled").float).toBeCloseTo(s.pooled_float[0], 12);
    expect(byKey(records, "dice_pooled").quantized).toBeCloseTo(s.pooled_quantized[1], 12);
    close(byKey(records, "iou_vs_float").perSample!.quantized, s.iou_vs_float);
    close(byKey(records, "dice_vs_float").perSample!.quantized, s.dice_vs_float);
    close(byKey(records, "pixel_agreement").perSample!.quantized, s.pixel_agreement);
    expect(byKey(records, "iou").rules).toEqual(["min_iou", "max_iou_drop"]);
  });

  it("works a binary example by hand, and leaves ignored reference pixels out", () => {
    // pred 1 1 0 0, ref 1 0 1 255: intersection 1, union 3 (pixel 3 ignored) -> IoU 1/3, Dice 2/4.
    const counts = maskCounts([1, 1, 0, 1], [1, 0, 1, 255], 2, 255);
    expect(counts.pixels).toBe(3);
    expect(pooledIouDice([counts])).toEqual({ iou: 1 / 3, dice: 0.5 });
    const records = segmentationMetrics({ float: [Uint8Array.from([1, 1, 0, 0])], quantized: [Uint8Array.from([1, 0, 0, 0])], numClasses: 2 });
    expect(records.map((r) => r.key)).toEqual(["iou_vs_float", "dice_vs_float", "pixel_agreement"]);
    expect(byKey(records, "iou_vs_float").quantized).toBe(0.5);
    expect(byKey(records, "pixel_agreement").quantized).toBe(0.75);
  });
});

describe("decisions from scores", () => {
  it("matches the reference: agreement, accuracy vs labels, largest and mean score change", () => {
    const d = REF.decisions;
    const records = decisionMetrics(Float32Array.from(d.float), d.quantized, { threshold: d.threshold, labels: d.labels });
    expect(records.map((r) => r.key)).toEqual(["decision_agreement", "decision_accuracy", "score_max_abs_change", "score_mean_abs_change"]);
    expect(byKey(records, "decision_agreement").quantized).toBeCloseTo(d.agreement, 12);
    expect(byKey(records, "decision_accuracy").float).toBeCloseTo(d.accuracy_float, 12);
    expect(byKey(records, "decision_accuracy").quantized).toBeCloseTo(d.accuracy_quantized, 12);
    expect(byKey(records, "score_max_abs_change").quantized).toBeCloseTo(d.max_abs_change, 7);
    expect(byKey(records, "score_mean_abs_change").quantized).toBeCloseTo(d.mean_abs_change, 7);
    expect(byKey(records, "decision_agreement").rules).toEqual(["min_decision_agreement"]);
    expect(byKey(records, "score_max_abs_change").rules).toEqual(["max_score_change"]);
  });

  it("works frames by hand: a score on the threshold is not a positive decision", () => {
    const r = decisionMetrics([0.1, 0.5, 0.9, 0.6], [0.2, 0.51, 0.4, 0.6], { threshold: 0.5, labels: [0, 0, 1, 1], perFrame: true });
    expect(byKey(r, "decision_agreement").perSample!.quantized).toEqual([1, 0, 0, 1]);
    expect(byKey(r, "decision_accuracy").float).toBe(1); // decisions 0 0 1 1 vs labels 0 0 1 1
    expect(byKey(r, "decision_accuracy").quantized).toBe(0.5); // decisions 0 1 0 1
    expect(byKey(r, "score_max_abs_change").quantized).toBeCloseTo(0.5, 12);
    expect(byKey(r, "decision_agreement").note).toMatch(/4 frames/);
    expect(() => decisionMetrics([0.1], [0.2], { threshold: 0.5, labels: [2] })).toThrow(/label 0 is 2: decision labels are 0 or 1/);
    expect(() => decisionMetrics([0.1, NaN], [0.2, 0.1], { threshold: 0.5 })).toThrow(/float score 1 is NaN/);
  });

  it("refuses cosine, KL and top-1 on one score per sample and proposes the decision metrics", () => {
    expect(isScalarPerSample([1, 1])).toBe(true);
    expect(isScalarPerSample([8])).toBe(true);
    expect(isScalarPerSample([1, 40, 1])).toBe(false);
    const msg = scalarOutputError("vad_prob", ["min_cosine", "max_kl_mean", "max_relative_l2"], [1, 1]);
    expect(msg).toMatch(/output "vad_prob" holds one score per sample \(shape \[1, 1\]\): min_cosine, max_kl_mean cannot judge it/);
    expect(msg).toMatch(/cosine of one number is always 1/);
    expect(msg).toMatch(/min_decision_agreement.*max_score_change/);
    // A score per frame keeps its cosine (a vector over frames) but not top-1 or KL over one class.
    expect(scalarOutputError("speech", ["min_cosine", "min_top1_agreement"], [1, 40, 1])).toMatch(/: min_top1_agreement cannot judge it/);
    expect(scalarOutputError("speech", ["min_cosine"], [1, 40, 1])).toBeUndefined();
    expect(scalarOutputError("logits", ["min_cosine", "max_kl_mean"], [1, 10])).toBeUndefined();
  });
});

describe("recall@k of nearest neighbours", () => {
  it("matches the reference's neighbours and recall", () => {
    const r = REF.retrieval;
    const f = r.float.map((e: number[]) => Float32Array.from(e));
    const q = r.quantized.map((e: number[]) => Float32Array.from(e));
    expect(nearestNeighbours(f, r.k)).toEqual(r.neighbours_float);
    const rec = recallAtK(f, q, r.k);
    expect(rec.key).toBe("recall_at_k");
    expect(rec.perSample!.quantized).toEqual(r.recall);
    expect(rec.quantized).toBeCloseTo(r.mean, 12);
    expect(rec.rules).toEqual(["min_recall_at_k"]);
  });

  it("is 1 for identical embeddings, works a small case by hand, and refuses too few samples", () => {
    const e = Array.from({ length: 10 }, (_, i) => Float32Array.from([Math.cos(i), Math.sin(i), i % 3]));
    expect(recallAtK(e, e, 3).quantized).toBe(1);
    // Float neighbours (k = 1): a-b, c-d. Quantized d moved to (0.8, 0.6): its nearest is now b (cos 0.856 > c's 0.6).
    const v = (x: number, y: number): Float32Array => Float32Array.from([x, y]);
    const hand = recallAtK([v(1, 0), v(1, 0.1), v(0, 1), v(0.1, 1)], [v(1, 0), v(1, 0.1), v(0, 1), v(0.8, 0.6)], 1);
    expect(hand.perSample!.quantized).toEqual([1, 1, 1, 0]);
    expect(hand.quantized).toBe(0.75);
    expect(() => recallAtK(e.slice(0, 3), e.slice(0, 3), 3)).toThrow(/recall@3 needs more than 3 samples, got 3/);
  });
});

describe("the rule registry", () => {
  it("defines every rule key the metric functions name, each judging a metric they produce, and nothing else", () => {
    const t = REF.text;
    const s = REF.segmentation;
    const records = [
      ...textErrorMetrics(t.references, t.hypotheses, t.references),
      ...segmentationMetrics({
        float: [Uint8Array.from(s.pred_float.slice(0, 42))],
        quantized: [Uint8Array.from(s.pred_quantized.slice(0, 42))],
        references: [Uint8Array.from(s.references.slice(0, 42))],
        numClasses: 3,
      }),
      ...decisionMetrics([0.1, 0.9], [0.2, 0.8], { threshold: 0.5, labels: [0, 1] }),
      recallAtK(
        [Float32Array.of(1, 0), Float32Array.of(0, 1), Float32Array.of(1, 1)],
        [Float32Array.of(1, 0), Float32Array.of(0, 1), Float32Array.of(1, 1)],
        1,
      ),
    ];
    const named = records.flatMap((r) => r.rules.map((rule) => `${rule} -> ${r.key}`)).sort();
    const keys = new Set(records.map((r) => r.key));
    const registered = (GATE_RULES as readonly RuleDef[]).filter((d) => keys.has(d.metric));
    expect(registered.map((d) => `${d.key} -> ${d.metric}`).sort()).toEqual(named);
    expect(named.length).toBe(23);
    for (const d of registered) {
      const r = records.find((x) => x.key === d.metric)!;
      // A drop or an increase needs the float value beside the quantized one.
      if (d.kind === "drop_points" || d.kind === "increase_points") expect(r.float, d.key).toBeDefined();
      // Points rules observe the change in the metric's bad direction.
      if (d.kind === "drop_points") expect(r.direction, d.key).toBe("higher");
      if (d.kind === "increase_points") expect(r.direction, d.key).toBe("lower");
    }
  });
});
