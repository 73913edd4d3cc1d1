import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { segmentationEvaluation } from "../../src/tasks/segmentation.js";
import { textRecognitionEvaluation } from "../../src/tasks/text-recognition.js";

function issues(schema: z.ZodType, input: unknown): string {
  const r = schema.safeParse(input);
  return r.success ? "" : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");
}

const text = { task: "text-recognition", dataset: "eval", decode: { dictionary: "dict.txt" } };
const seg = { task: "segmentation", dataset: "eval" };

describe("the image task configs", () => {
  it("fills the documented defaults", () => {
    const t = textRecognitionEvaluation.parse(text);
    expect(t.decode).toMatchObject({ mode: "ctc", blank: 0, class_axis: -1, append_space: false });
    expect(t.labels_fields).toEqual({ file: "file", text: "text" });
    expect(t.preprocess.layout).toBe("NCHW");
    const s = segmentationEvaluation.parse(seg);
    expect(s.mask).toMatchObject({ mode: "argmax", class_axis: 1, threshold: 0.5, scores: "logits", include_background: false });
    expect(s.labels_fields).toEqual({ file: "file", mask: "mask" });
  });

  const cases: { what: string; schema: z.ZodType; input: unknown; expected: RegExp }[] = [
    { what: "no dictionary", schema: textRecognitionEvaluation, input: { ...text, decode: {} }, expected: /decode\.dictionary/ },
    {
      what: "a blank by name",
      schema: textRecognitionEvaluation,
      input: { ...text, decode: { dictionary: "d", blank: "first" } },
      expected: /decode\.blank: expected a class index or "last"/,
    },
    {
      what: "an unknown decode mode",
      schema: textRecognitionEvaluation,
      input: { ...text, decode: { dictionary: "d", mode: "beam" } },
      expected: /decode\.mode: expected "ctc", "ctc_ids" or "ids"/,
    },
    { what: "a misspelled key", schema: textRecognitionEvaluation, input: { ...text, label: "l.csv" }, expected: /label/ },
    {
      what: "a threshold above 1",
      schema: segmentationEvaluation,
      input: { ...seg, mask: { mode: "threshold", threshold: 1.5 } },
      expected: /mask\.threshold: expected a probability between 0 and 1/,
    },
    {
      what: "an unknown mask mode",
      schema: segmentationEvaluation,
      input: { ...seg, mask: { mode: "softmax" } },
      expected: /mask\.mode: expected "argmax" or "threshold"/,
    },
    { what: "an ignore index above 255", schema: segmentationEvaluation, input: { ...seg, mask: { ignore_index: 256 } }, expected: /mask\.ignore_index/ },
  ];
  for (const c of cases) it(`rejects ${c.what}`, () => expect(issues(c.schema, c.input)).toMatch(c.expected));
});

describe("constant inputs of the image tasks", () => {
  it("are accepted by both schemas and checked against the model's inputs when the data loads", async () => {
    const { segmentationTask } = await import("../../src/tasks/segmentation.js");
    const path = await import("node:path");
    const root = path.resolve(import.meta.dirname, "../../examples");
    const inputs = [{ name: "image", type: "float32" as const, rank: 4, dims: [undefined, 3, 64, 64] }];
    const s = segmentationEvaluation.parse({ ...seg, constant_inputs: { sr: 16000 } });
    expect(s.constant_inputs).toEqual({ sr: 16000 });
    expect(textRecognitionEvaluation.parse({ ...text, constant_inputs: { sr: [1, 2] } }).constant_inputs).toEqual({ sr: [1, 2] });
    const ctx = (dir: string) => ({ resolve: (p: string) => path.join(root, dir, p), inputs: inputs as never });
    await expect(segmentationTask.load(s, ctx("segmentation"))).rejects.toThrow(
      /evaluation\.constant_inputs\.sr: the model has no input "sr" \(inputs: image\)/,
    );
    // a constant fed to a second input: the images feed the other one, and every sample carries the constant
    const two = [...inputs, { name: "gain", type: "float32" as const, rank: 1, dims: [1] }];
    const data = await segmentationTask.load(segmentationEvaluation.parse({ ...seg, samples: 2, constant_inputs: { gain: [2] } }), {
      ...ctx("segmentation"),
      inputs: two as never,
    });
    expect(data.samples).toHaveLength(2);
    for (const sample of data.samples) expect(sample.feeds.gain).toMatchObject({ type: "float32", dims: [1] });
    expect(data.measureFeeds!.image!.dims).toEqual([1, 3, 64, 64]);
  });
});
