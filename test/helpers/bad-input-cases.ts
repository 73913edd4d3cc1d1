// The bad-input table of issue 11.10, shared by the CLI table (test/bad-inputs.test.ts) and the action's
// (test/github/action-bad-inputs.test.ts): each case changes the classifier fixture and names the error it expects.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema, StringStringEntryProtoSchema, TensorProto_DataLocation, type ModelProto } from "onnx-buf";
import { serializeModel } from "../../src/onnx/model.js";
import { REPO_ROOT } from "./action.js";
import { buildMlp } from "./models.js";

const TINY_LM = path.join(REPO_ROOT, "examples", "tiny-lm");

export interface Case {
  readonly what: string;
  /** Rewrites the fixture's quantgate.yml (17 lines: gate on line 16, max_kl_mean on line 17). */
  readonly config?: (yaml: string) => string;
  /** Writes or changes files in the fixture folder. */
  readonly setup?: (dir: string) => Promise<void>;
  readonly args?: readonly string[];
  /** The config file passed to -c, relative to the fixture folder (default quantgate.yml). */
  readonly configFile?: string;
  readonly expected: RegExp;
}

/** The fixture's MLP, changed by `edit`, written as mlp.onnx. */
function mlpModel(edit: (proto: ModelProto) => void): (dir: string) => Promise<void> {
  return async (dir) => {
    const mlp = buildMlp(64, 128, 10, 7);
    edit(mlp.proto);
    await writeFile(path.join(dir, "mlp.onnx"), serializeModel(mlp.proto));
  };
}
const weight = (proto: ModelProto, name = "fc1.weight") => proto.graph!.initializer.find((t) => t.name === name)!;
const setFloat = (proto: ModelProto, index: number, value: number): void => {
  const t = weight(proto);
  new DataView(t.rawData.buffer, t.rawData.byteOffset).setFloat32(index * 4, value, true);
};
const file = (name: string, data: string | Uint8Array) => async (dir: string) => writeFile(path.join(dir, name), data);
const addGate = (line: string) => (yaml: string) => `${yaml}${line}\n`;
const setTop = (line: string) => (yaml: string) => `${yaml}${line}\n`;
const replace = (from: string, to: string) => (yaml: string) => {
  if (!yaml.includes(from)) throw new Error(`fixture has no ${from}`);
  return yaml.replace(from, to);
};
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const sample = (label: unknown, n = 64): { inputs: { x: number[] }; label: unknown } => ({
  inputs: { x: Array.from({ length: n }, (_, i) => Math.sin(i)) },
  label,
});

/** A language-modeling config over the tiny-LM example's files (read from outside this folder: the CLI's opt-in). */
const lmConfig = (extra: Record<string, string> = {}): ((dir: string) => Promise<void>) => {
  return async (dir) => {
    const v = {
      tokenizer: path.join(TINY_LM, "tokenizer.json"),
      dataset: path.join(TINY_LM, "eval.txt"),
      sequence_length: "32",
      ...extra,
    };
    await writeFile(
      path.join(dir, "lm.yml"),
      `model: ${path.join(TINY_LM, "model.onnx")}\nallow_outside_workspace: true\nevaluation:\n  task: language-modeling\n  dataset: ${v.dataset}\n  tokenizer: ${v.tokenizer}\n  sequence_length: ${v.sequence_length}\n  samples: 2\n  batch_size: 1\nmeasure:\n  memory: false\n  kernel_benchmark: false\n`,
    );
  };
};

const BOMB = `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
`;

export const CASES: Case[] = [
  // YAML syntax and shape
  { what: "an unclosed flow sequence", config: () => "model: [a\n", expected: /quantgate\.yml:2 \(root\): YAML syntax error: Flow sequence/ },
  {
    what: "an unclosed quote",
    config: () => 'model: "mlp.onnx\nrecipe: {}\n',
    expected: /quantgate\.yml:\d+ \(root\): YAML syntax error: Missing closing "quote/,
  },
  {
    what: "a key indented under nothing",
    config: replace("  min_elements: 256\n", " min_elements: 256\n"),
    expected: /quantgate\.yml:\d+ \(root\): YAML syntax error/,
  },
  {
    what: "tab indentation",
    config: replace("  format: int4", "\tformat: int4"),
    expected: /quantgate\.yml:3 \(root\): YAML syntax error: Tabs are not allowed/,
  },
  { what: "a duplicate key", config: setTop("model: other.onnx"), expected: /quantgate\.yml:18 \(root\): YAML syntax error: Map keys must be unique/ },
  {
    what: "a nested mapping on a scalar line",
    config: replace("model: mlp.onnx", "model: mlp.onnx: x"),
    expected: /quantgate\.yml:1 \(root\): YAML syntax error: Nested mappings are not allowed in compact mappings/,
  },
  {
    what: "an alias bomb (billion laughs)",
    config: () => `model: mlp.onnx\n${BOMB}`,
    expected: /quantgate\.yml:\d+ \(root\): YAML aliases cannot be expanded: Excessive alias count/,
  },
  {
    what: "an alias to no anchor",
    config: () => "model: *nothing\n",
    expected: /quantgate\.yml:1 \(root\): YAML aliases cannot be expanded: Unresolved alias.*nothing/,
  },
  { what: "an empty file", config: () => "", expected: /quantgate\.yml model: missing/ },
  { what: "only comments", config: () => "# nothing here\n", expected: /quantgate\.yml.* model: missing/ },
  {
    what: "a list at the top level",
    config: () => "- model: mlp.onnx\n",
    expected: /quantgate\.yml:1 \(root\): expected a mapping of settings at the top level/,
  },
  { what: "a scalar at the top level", config: () => "mlp.onnx\n", expected: /quantgate\.yml:1 \(root\): expected a mapping of settings at the top level/ },
  {
    what: "two YAML documents",
    config: (y) => `${y}---\nmodel: b.onnx\n`,
    expected: /quantgate\.yml:\d+ \(root\): YAML syntax error: Source contains multiple documents/,
  },
  {
    what: "bytes that are not UTF-8 text",
    setup: file("quantgate.yml", Buffer.from("model: mlp.onnx\nx: \xff\xfe\n", "latin1")),
    expected: /quantgate\.yml:2 \(root\): not UTF-8 text/,
  },
  // wrong types
  {
    what: "block_size as a word",
    config: replace("block_size: 32", "block_size: thirty-two"),
    expected: /quantgate\.yml:4 recipe\.block_size: expected one of 16, 32, 64, 128, 256/,
  },
  {
    what: "symmetric as a phrase",
    config: replace("symmetric: false", "symmetric: yes please"),
    expected: /quantgate\.yml:5 recipe\.symmetric: .*expected boolean/i,
  },
  { what: "format as a number", config: replace("format: int4", "format: 4"), expected: /quantgate\.yml:3 recipe\.format: expected one of int8, int4/ },
  { what: "fractional threads", config: replace("threads: 1", "threads: 1.5"), expected: /quantgate\.yml:12 measure\.threads: .*expected int/i },
  { what: "zero threads", config: replace("threads: 1", "threads: 0"), expected: /quantgate\.yml:12 measure\.threads: .*>0/ },
  { what: "100000 threads", config: replace("threads: 1", "threads: 100000"), expected: /quantgate\.yml:12 measure\.threads: .*<=256/ },
  { what: "negative runs", config: replace("runs: 10", "runs: -3"), expected: /quantgate\.yml:14 measure\.runs: .*>0/ },
  {
    what: "evaluation as a string",
    config: replace("evaluation:\n  task: classification\n  dataset: eval.jsonl\n  calibration: calib.jsonl\n", "evaluation: eval.jsonl\n"),
    expected: /quantgate\.yml:7 evaluation: expected task/,
  },
  {
    what: "zero samples",
    config: replace("  calibration: calib.jsonl\n", "  calibration: calib.jsonl\n  samples: 0\n"),
    expected: /quantgate\.yml:11 evaluation\.samples: .*>0/,
  },
  { what: "gate as a list", config: replace("gate:\n  max_kl_mean: 0.5\n", "gate: [max_kl_mean]\n"), expected: /quantgate\.yml:15 gate: .*expected object/i },
  { what: "model as a number", config: replace("model: mlp.onnx", "model: 42"), expected: /quantgate\.yml:1 model: .*expected string/i },
  { what: "an empty model path", config: replace("model: mlp.onnx", 'model: ""'), expected: /quantgate\.yml:1 model: expected the path of an \.onnx file/ },
  { what: "output_dir as a number", config: setTop("output_dir: 5"), expected: /quantgate\.yml:18 output_dir: .*expected string/i },
  {
    what: "no task",
    config: replace("  task: classification\n", ""),
    expected: /quantgate\.yml:\d+ evaluation\.task: expected task "language-modeling", "classification", "fidelity", "text-recognition" or "segmentation"/,
  },
  {
    what: "an unknown history backend",
    config: setTop("history:\n  backend: s3"),
    expected: /quantgate\.yml:19 history\.backend: expected "branch", "cache" or "none"/,
  },
  { what: "zero history entries", config: setTop("history:\n  max_entries: 0"), expected: /quantgate\.yml:19 history\.max_entries: .*>=1/ },
  { what: "a confidence of 2", config: setTop("regression:\n  confidence: 2"), expected: /quantgate\.yml:19 regression\.confidence: .*0\.999/ },
  { what: "no dataset", config: replace("  dataset: eval.jsonl\n", ""), expected: /quantgate\.yml:\d+ evaluation\.dataset: missing/ },
  // unknown keys
  { what: "a misspelt top-level key", config: setTop("modle: x.onnx"), expected: /quantgate\.yml:18 \(root\): unknown key "modle"/ },
  { what: "an unknown gate rule", config: addGate("  max_colour: blue"), expected: /quantgate\.yml:18 gate: unknown key "max_colour"/ },
  {
    what: "a misspelt recipe key",
    config: replace("  min_elements: 256", "  min_elements: 256\n  blok_size: 32"),
    expected: /quantgate\.yml:7 recipe: unknown key "blok_size"/,
  },
  {
    what: "a misspelt evaluation key",
    config: replace("  dataset: eval.jsonl", "  dataset: eval.jsonl\n  datset: x"),
    expected: /quantgate\.yml:10 evaluation: unknown key "datset"/,
  },
  { what: "a misspelt measure key", config: replace("  threads: 1", "  threads: 1\n  thread: 2"), expected: /quantgate\.yml:13 measure: unknown key "thread"/ },
  // limits
  {
    what: "a negative accuracy-drop percentage",
    config: addGate("  max_accuracy_drop_pct: -1"),
    expected: /quantgate\.yml:18 gate\.max_accuracy_drop_pct: expected a percentage of 0 or more, got -1/,
  },
  {
    what: "a negative accuracy drop",
    config: addGate("  max_accuracy_drop: -0.5"),
    expected: /quantgate\.yml:18 gate\.max_accuracy_drop: expected a number of 0 or more/,
  },
  {
    what: "a negative KL limit",
    config: replace("max_kl_mean: 0.5", "max_kl_mean: -1"),
    expected: /quantgate\.yml:16 gate\.max_kl_mean: expected a number of 0 or more/,
  },
  {
    what: "a size of 9999999999999999999999GiB",
    config: addGate("  max_model_size: 9999999999999999999999GiB"),
    expected: /quantgate\.yml:18 gate\.max_model_size: expected a byte size .*got "9999999999999999999999GiB"/,
  },
  { what: "a negative size", config: addGate("  max_model_size: -4MiB"), expected: /quantgate\.yml:18 gate\.max_model_size: expected a byte size/ },
  { what: "a size in potatoes", config: addGate("  max_peak_memory: 4 potatoes"), expected: /quantgate\.yml:18 gate\.max_peak_memory: expected a byte size/ },
  { what: "a negative latency", config: addGate("  max_latency_p50_ms: -5ms"), expected: /quantgate\.yml:18 gate\.max_latency_p50_ms: expected a duration/ },
  { what: "a latency in words", config: addGate("  max_latency_p95_ms: fast"), expected: /quantgate\.yml:18 gate\.max_latency_p95_ms: expected a duration/ },
  {
    what: "warn above fail",
    config: replace("max_kl_mean: 0.5", "max_kl_mean: {warn: 0.9, fail: 0.1}"),
    expected: /quantgate\.yml:16 gate\.max_kl_mean: warn \(0\.9\) must not exceed fail \(0\.1\)/,
  },
  {
    what: "an empty limit",
    config: replace("max_kl_mean: 0.5", "max_kl_mean: {}"),
    expected: /quantgate\.yml:16 gate\.max_kl_mean: expected warn and\/or fail/,
  },
  {
    what: "a malformed percentage",
    config: addGate('  max_perplexity_increase_pct: "5 %%"'),
    expected: /quantgate\.yml:18 gate\.max_perplexity_increase_pct: expected a percentage/,
  },
  { what: "a NaN limit", config: addGate("  max_bits_per_weight: .nan"), expected: /quantgate\.yml:18 gate\.max_bits_per_weight: expected a number/ },
  { what: "an infinite limit", config: replace("max_kl_mean: 0.5", "max_kl_mean: .inf"), expected: /quantgate\.yml:16 gate\.max_kl_mean: expected a number/ },
  // inputs (CLI flags)
  {
    what: "a block size flag that is not a number",
    args: ["--block-size", "big"],
    expected: /recipe\.block_size \(from input\): expected a number, got "big"/,
  },
  { what: "an unknown format flag", args: ["--format", "fp3"], expected: /quantgate\.yml:3 recipe\.format \(from input\): expected one of int8/ },
  { what: "a threads flag in words", args: ["--threads", "many"], expected: /measure\.threads \(from input\): expected a number, got "many"/ },
  {
    what: "a symmetric flag that is not a boolean",
    args: ["--symmetric", "maybe"],
    expected: /quantgate\.yml:5 recipe\.symmetric \(from input\): .*expected boolean/i,
  },
  // paths
  { what: "a model file that does not exist", config: replace("model: mlp.onnx", "model: nope.onnx"), expected: /nope\.onnx: cannot read model file/ },
  {
    what: "a model path that is a folder",
    config: replace("model: mlp.onnx", "model: folder.onnx"),
    setup: async (d) => void (await mkdir(path.join(d, "folder.onnx"))),
    expected: /folder\.onnx: cannot read model file .*EISDIR|folder\.onnx: .*is a folder/,
  },
  {
    what: "a model outside the workspace",
    config: replace("model: mlp.onnx", "model: ../../../etc/hostname"),
    expected: /quantgate\.yml:1 model: "\.\.\/\.\.\/\.\.\/etc\/hostname" lies outside the workspace/,
  },
  {
    what: "a dataset that does not exist",
    config: replace("dataset: eval.jsonl", "dataset: missing.jsonl"),
    expected: /evaluation\.dataset|missing\.jsonl: .*(ENOENT|no such file)/,
  },
  {
    what: "a dataset that is a folder",
    config: replace("dataset: eval.jsonl", "dataset: data"),
    setup: async (d) => void (await mkdir(path.join(d, "data"))),
    expected: /data: .*(EISDIR|folder)/,
  },
  {
    what: "calibration data equal to the evaluation data",
    config: replace("calibration: calib.jsonl", "calibration: eval.jsonl"),
    expected: /evaluation\.calibration and evaluation\.dataset are the same/,
  },
  {
    what: "an output_dir that is a file",
    config: setTop("output_dir: taken"),
    setup: file("taken", "x"),
    expected: /quantgate\.yml:18 output_dir: .*taken exists and is not a folder/,
  },
  {
    what: "an output_dir under /proc",
    config: setTop("output_dir: /proc/self/qg"),
    expected: /quantgate\.yml:18 output_dir: "\/proc\/self\/qg" lies outside the workspace/,
  },
  { what: "a config file that does not exist", configFile: "nope.yml", expected: /nope\.yml: cannot read config file \(ENOENT\)/ },
  {
    what: "a config path that is a folder",
    configFile: "cfgdir",
    setup: async (d) => void (await mkdir(path.join(d, "cfgdir"))),
    expected: /cfgdir: cannot read config file \(EISDIR\)/,
  },
  // ONNX files
  { what: "an empty model file", setup: file("mlp.onnx", ""), expected: /mlp\.onnx: (the file is empty|ONNX model has no graph)/ },
  {
    what: "a truncated model",
    setup: async (d) => writeFile(path.join(d, "mlp.onnx"), (await readFile(path.join(d, "mlp.onnx"))).subarray(0, 20_000)),
    expected: /mlp\.onnx: not a valid ONNX model/,
  },
  { what: "a text file named .onnx", setup: file("mlp.onnx", "this is not a model\n"), expected: /mlp\.onnx: not a valid ONNX model/ },
  {
    what: "a PNG named .onnx",
    setup: file("mlp.onnx", Buffer.from("89504e470d0a1a0a0000000d4948445200000001", "hex")),
    expected: /mlp\.onnx: not a valid ONNX model/,
  },
  { what: "a JSON file named .onnx", setup: file("mlp.onnx", '{"graph": {}}'), expected: /mlp\.onnx: not a valid ONNX model/ },
  { what: "an IR version from the future", setup: mlpModel((p) => void (p.irVersion = 99n)), expected: /mlp\.onnx: IR version 99 .*(supported|newer)/ },
  {
    what: "an opset from the future",
    setup: mlpModel((p) => void (p.opsetImport = [create(OperatorSetIdProtoSchema, { domain: "", version: 99n })])),
    expected: /mlp\.onnx: .*opset 99/,
  },
  { what: "a model without a graph", setup: mlpModel((p) => void (p.graph = undefined)), expected: /mlp\.onnx: .*(no graph|has no graph)/ },
  {
    what: "missing external data",
    setup: mlpModel((p) => {
      const t = weight(p);
      t.dataLocation = TensorProto_DataLocation.EXTERNAL;
      t.externalData = [create(StringStringEntryProtoSchema, { key: "location", value: "weights.bin" })];
      t.rawData = new Uint8Array(0);
    }),
    expected: /mlp\.onnx: tensor "fc1\.weight": cannot read external data weights\.bin/,
  },
  {
    what: "external data shorter than its offset and length",
    setup: async (d) => {
      await writeFile(path.join(d, "weights.bin"), new Uint8Array(16));
      await mlpModel((p) => {
        const t = weight(p);
        t.dataLocation = TensorProto_DataLocation.EXTERNAL;
        t.externalData = [
          create(StringStringEntryProtoSchema, { key: "location", value: "weights.bin" }),
          create(StringStringEntryProtoSchema, { key: "offset", value: "0" }),
          create(StringStringEntryProtoSchema, { key: "length", value: "32768" }),
        ];
        t.rawData = new Uint8Array(0);
      })(d);
    },
    expected: /mlp\.onnx: tensor "fc1\.weight": external data weights\.bin is shorter than offset\+length/,
  },
  { what: "a NaN weight", setup: mlpModel((p) => setFloat(p, 17, NaN)), expected: /mlp\.onnx: tensor "fc1\.weight" holds NaN at element 17/ },
  { what: "an infinite weight", setup: mlpModel((p) => setFloat(p, 3, Infinity)), expected: /mlp\.onnx: tensor "fc1\.weight" holds Infinity at element 3/ },
  {
    what: "weight data shorter than its shape",
    setup: mlpModel((p) => void (weight(p).rawData = weight(p).rawData.slice(0, 100))),
    expected: /mlp\.onnx: tensor "fc1\.weight" has 100 bytes of data, its shape \[64, 128\] needs 32768/,
  },
  {
    what: "a giant declared dimension",
    setup: mlpModel((p) => void (weight(p).dims = [1n << 40n, 128n])),
    expected: /mlp\.onnx: tensor "fc1\.weight" declares shape \[1099511627776, 128\]/,
  },
  {
    what: "a negative dimension",
    setup: mlpModel((p) => void (weight(p).dims = [-64n, 128n])),
    expected: /mlp\.onnx: tensor "fc1\.weight" declares shape \[-64, 128\]/,
  },
  {
    what: "a model with nothing to quantize",
    config: replace("min_elements: 256", "min_elements: 100000000"),
    expected: /no quantizable weights found in mlp\.onnx .*fc1\.weight/,
  },
  {
    what: "an input of string type",
    setup: mlpModel((p) => void ((p.graph!.input[0]!.type!.value.value as { elemType: number }).elemType = 8)),
    expected: /mlp\.onnx: model input "x" has an unsupported or undeclared element type/,
  },
  {
    what: "an operator ONNX Runtime does not know",
    setup: mlpModel((p) => void (p.graph!.node[0]!.opType = "FancyMatMul")),
    expected: /mlp\.onnx: .*FancyMatMul/,
  },
  {
    what: "a model input the dataset does not feed",
    setup: mlpModel((p) => {
      p.graph!.input[0]!.name = "pixels";
      p.graph!.node[0]!.input[0] = "pixels";
    }),
    expected: /eval\.jsonl:1: .*"pixels"/,
  },
  // classification data
  { what: "an empty dataset", setup: file("eval.jsonl", ""), expected: /eval\.jsonl: dataset has no rows/ },
  { what: "a dataset line that is not JSON", setup: file("eval.jsonl", '{"inputs": \n'), expected: /eval\.jsonl:1: .*(not valid JSON|JSON)/ },
  {
    what: "a sample of the wrong length",
    setup: file("eval.jsonl", jsonl([sample(1, 63)])),
    expected: /eval\.jsonl(: sample 0: input "x" has shape|:1 x: tensor has shape) \[1, 63\], (the model declares|model input "x" declares) \[\?, 64\]/,
  },
  {
    what: "a label of 99 for 10 classes",
    setup: file("eval.jsonl", jsonl([sample(1), sample(99)])),
    expected: /eval\.jsonl:2: label 99 is outside the model's 10 classes \(0-9\)/,
  },
  { what: "a label of -3", setup: file("eval.jsonl", jsonl([sample(-3)])), expected: /eval\.jsonl:1: label -3 is outside the model's 10 classes \(0-9\)/ },
  { what: "a fractional label", setup: file("eval.jsonl", jsonl([sample(1.5)])), expected: /eval\.jsonl:1: "label" must be an integer class index, got 1\.5/ },
  { what: "samples without the inputs field", setup: file("eval.jsonl", jsonl([{ x: [1, 2], label: 1 }])), expected: /eval\.jsonl:1: .*"inputs"/ },
  { what: "a dataset of blank lines", setup: file("eval.jsonl", "\n\n\n"), expected: /eval\.jsonl: dataset has no rows/ },
  { what: "an empty calibration set", setup: file("calib.jsonl", ""), expected: /calib\.jsonl: dataset has no rows/ },
  {
    what: "a text value in the inputs",
    setup: file("eval.jsonl", jsonl([{ inputs: { x: ["a", "b"] }, label: 1 }])),
    expected: /eval\.jsonl.*(:1|sample 0).*x.*(number|numeric)/,
  },
  // language modeling (the tiny-LM example's model and tokenizer)
  {
    what: "a tokenizer that does not exist",
    configFile: "lm.yml",
    setup: lmConfig({ tokenizer: "no-tokenizer.json" }),
    expected: /no-tokenizer\.json.*(ENOENT|no such file|cannot read)/,
  },
  {
    what: "a tokenizer that is not JSON",
    configFile: "lm.yml",
    setup: async (d) => {
      await writeFile(path.join(d, "tok.json"), "{ nope");
      await lmConfig({ tokenizer: path.join(d, "tok.json") })(d);
    },
    expected: /tok\.json: .*(tokenizer|JSON)/,
  },
  {
    what: "a sequence_length beyond what the model accepts",
    configFile: "lm.yml",
    setup: lmConfig({ sequence_length: "4096" }),
    expected: /lm\.yml:7 evaluation\.sequence_length: the model failed on batches of 1x4096 tokens/,
  },
  {
    what: "an empty evaluation text",
    configFile: "lm.yml",
    setup: async (d) => {
      await writeFile(path.join(d, "empty.txt"), "");
      await lmConfig({ dataset: path.join(d, "empty.txt") })(d);
    },
    expected: /empty\.txt: evaluation text has 0 tokens, fewer than evaluation\.sequence_length/,
  },
];
