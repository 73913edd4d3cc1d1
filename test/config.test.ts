import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../src/config/load.js";

const base = `model: model.onnx
evaluation:
  task: language-modeling
  dataset: eval.txt
  tokenizer: tokenizer.json
`;

function errorOf(text: string, overrides = {}): ConfigError {
  try {
    parseConfig(text, "quantgate.yml", overrides);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("config validation", () => {
  const cases: { what: string; input: string; overrides?: Record<string, string>; expected: RegExp }[] = [
    { what: "unknown top-level key", input: `${base}modle: x.onnx\n`, expected: /quantgate\.yml:6 \(root\): unknown key "modle"/ },
    { what: "unknown recipe key", input: `${base}recipe:\n  blok_size: 32\n`, expected: /quantgate\.yml:7 recipe: unknown key "blok_size"/ },
    { what: "bad format", input: `${base}recipe:\n  format: int5\n`, expected: /quantgate\.yml:7 recipe\.format: expected one of int8, int4, int3, int2, nf4/ },
    { what: "bad block size", input: `${base}recipe:\n  block_size: 48\n`, expected: /:7 recipe\.block_size: expected one of 16, 32, 64, 128, 256/ },
    { what: "missing model", input: base.replace("model: model.onnx\n", ""), expected: /model: missing/ },
    {
      what: "unknown task",
      input: `model: m.onnx\nevaluation:\n  task: regression\n  dataset: x\n`,
      expected: /:3 evaluation\.task: expected task "language-modeling", "classification", "fidelity", "text-recognition" or "segmentation"/,
    },
    { what: "bad byte size", input: `${base}gate:\n  max_model_size: 4 potatoes\n`, expected: /:7 gate\.max_model_size: expected a byte size such as "4MiB"/ },
    {
      what: "warn above fail",
      input: `${base}gate:\n  max_kl_mean: {warn: 0.5, fail: 0.1}\n`,
      expected: /:7 gate\.max_kl_mean: warn \(0\.5\) must not exceed fail \(0\.1\)/,
    },
    { what: "negative threads", input: `${base}measure:\n  threads: -1\n`, expected: /:7 measure\.threads:/ },
    { what: "yaml syntax", input: `model: [a\n`, expected: /quantgate\.yml:2 \(root\): YAML syntax error: Flow sequence/ },
    { what: "not a mapping", input: `- a\n- b\n`, expected: /expected a mapping of settings/ },
    { what: "duplicate key", input: `${base}model: other.onnx\n`, expected: /YAML syntax error: Map keys must be unique/ },
    {
      what: "bad input override",
      input: base,
      overrides: { "recipe.format": "fp3" },
      expected: /recipe\.format \(from input\): expected one of int8, int4, int3, int2/,
    },
    {
      what: "non-numeric input override",
      input: base,
      overrides: { "recipe.block_size": "big" },
      expected: /recipe\.block_size \(from input\): expected a number, got "big"/,
    },
  ];
  for (const c of cases) {
    it(`rejects ${c.what}`, () => {
      expect(errorOf(c.input, c.overrides).message).toMatch(c.expected);
    });
  }

  it("applies defaults and input overrides, and records YAML lines of gate rules", () => {
    const cfg = parseConfig(`${base}gate:\n  max_kl_mean: 0.05\n  max_model_size: 4MiB\n`, "dir/quantgate.yml", {
      "recipe.format": "int8",
      "recipe.block_size": "64",
    });
    expect(cfg.recipe).toMatchObject({ format: "int8", block_size: 64, symmetric: false, algorithm: "rtn" });
    expect(cfg.gate.max_kl_mean).toEqual({ warn: undefined, fail: 0.05 });
    expect(cfg.gate.max_model_size).toEqual({ warn: undefined, fail: 4 * 1024 * 1024 });
    expect(cfg.lines["gate.max_model_size"]).toBe(8);
    expect(cfg.baseDir.endsWith("dir")).toBe(true);
    expect(Object.isFrozen(cfg)).toBe(true);
  });
});
