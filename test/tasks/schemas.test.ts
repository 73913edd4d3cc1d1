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
