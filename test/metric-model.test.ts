// One metric model, tasks x metrics: every task runs for real on a committed example or a small real model,
// and every metric it declares must reach the summary, the terminal table, the step outputs, the history entry
// and the dashboard, be judged by its gate rules and by a base-branch regression rule; a rule whose metric is
// missing fails closed. The table iterates over what the tasks return, so a metric added later is covered.
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { metricOutputName, metricOutputs } from "../src/action/outputs.js";
import { renderTerminal } from "../src/cli.js";
import { loadConfig } from "../src/config/load.js";
import { gateSchema, regressionSchema } from "../src/config/schema.js";
import { dashboardModel } from "../src/dashboard/render.js";
import { evaluateGate } from "../src/gate/index.js";
import { GATE_RULES, REGRESSION_RULES, ruleDirection, SLOWER_THAN_FLOAT, type RuleDef } from "../src/gate/rules.js";
import { renderBody } from "../src/github/markdown.js";
import { HISTORY_SCHEMA, toHistoryEntry } from "../src/history/entry.js";
import { evaluateRegression } from "../src/history/regression.js";
import { runGate } from "../src/pipeline.js";
import { showValue } from "../src/report/markdown.js";
import type { Report } from "../src/report/types.js";
import { loadOrt } from "../src/runtime/ort.js";
import { TASKS } from "../src/tasks/index.js";
import { codeSpan, escapeMarkdown } from "../src/util/escape.js";
import { REPO_ROOT } from "./helpers/action.js";
import { writeClassifierFixture } from "./helpers/models.js";
import { CNN, writeCircleLabels, writeScoreModel } from "./helpers/score-model.js";

const EX = path.join(REPO_ROOT, "examples");
const MEASURE = "measure:\n  threads: 1\n  warmup: 1\n  runs: 5\n  kernel_benchmark: false\n";

interface Case {
  readonly name: string;
  readonly task: keyof typeof TASKS;
  /** Writes the config into dir; returns its path. */
  readonly write: (dir: string) => Promise<string>;
  /** Metrics the case must produce (what the issue promises for it); every other record is checked too. */
  readonly expected: readonly string[];
}

const CASES: readonly Case[] = [
  {
    name: "language-modeling (tiny-lm example)",
    task: "language-modeling",
    expected: ["perplexity", "kl_mean", "kl_p99", "kl_max", "top1_agreement", "model_size", "bits_per_weight", "peak_memory", "latency_p50"],
    write: async (dir) => {
      const lm = path.join(EX, "tiny-lm");
      const file = path.join(dir, "quantgate.yml");
      await writeFile(
        file,
        `allow_outside_workspace: true\nmodel: ${lm}/model.onnx\nrecipe: { format: int4, block_size: 32 }\nevaluation:\n  task: language-modeling\n  dataset: ${lm}/eval.txt\n  tokenizer: ${lm}/tokenizer.json\n  sequence_length: 64\n  samples: 4\n  batch_size: 4\n${MEASURE}output_dir: out\n`,
      );
      return file;
    },
  },
  {
    name: "classification (MLP on JSONL with labels)",
    task: "classification",
    expected: ["accuracy", "macro_f1", "kl_mean", "top1_agreement", "model_size"],
    write: (dir) => writeClassifierFixture(dir, "  max_kl_mean: 10"),
  },
  {
    name: "fidelity (cnn-classifier image folders: labels, per-output rules, user metric)",
    task: "fidelity",
    expected: ["accuracy", "kl_mean", "top1_agreement", "output.logits.cosine", "output.logits.relative_l2", "metric.agree_share", "model_size"],
    write: async (dir) => {
      const cnn = path.join(EX, "cnn-classifier");
      await writeFile(
        path.join(dir, "metric.mjs"),
        `export default function (f, q) {\n  let same = 0;\n  for (let i = 0; i < f.length; i++) {\n    const a = Array.from(f[i].logits.data), b = Array.from(q[i].logits.data);\n    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) same++;\n  }\n  return { agree_share: same / f.length };\n}\n`,
      );
      const file = path.join(dir, "quantgate.yml");
      await writeFile(
        file,
        `allow_outside_workspace: true\nmodel: ${cnn}/model.onnx\nrecipe: { format: int8, block_size: 32, symmetric: true, algorithm: mse }\nevaluation:\n  task: fidelity\n  dataset: ${cnn}/eval\n  format: images\n  samples: 40\n  preprocess: { scale: 0.00392156862745098, mean: [0.5], std: [0.25] }\n  outputs:\n    - { name: logits, kind: logits, min_cosine: 0.9, max_relative_l2: 0.5, max_kl_mean: 1 }\n  metric:\n    module: metric.mjs\n    limits:\n      agree_share: { min: 0.5 }\n${MEASURE}output_dir: out\n`,
      );
      return file;
    },
  },
  {
    name: "fidelity (recurrent example, stateful chunks)",
    task: "fidelity",
    expected: ["kl_mean", "top1_agreement", "output.logits.cosine", "output.logits.kl_mean", "model_size"],
    write: async (dir) => {
      const rec = path.join(EX, "recurrent");
      const file = path.join(dir, "quantgate.yml");
      await writeFile(
        file,
        `allow_outside_workspace: true\nmodel: ${rec}/model.onnx\nrecipe: { format: int8, block_size: 32, symmetric: true, op_types: [matmul, gemm, gather] }\nevaluation:\n  task: fidelity\n  dataset: ${rec}/eval_ids.npy\n  format: npy\n  input: ids\n  stateful:\n    chunk_input: ids\n    axis: 1\n    state: [{ input: state, output: state_out }]\n  outputs:\n    - { name: logits, kind: logits }\n${MEASURE}output_dir: out\n`,
      );
      return file;
    },
  },
  {
    name: "fidelity (score and embedding outputs: decisions against a labels file, recall@k)",
    task: "fidelity",
    expected: [
      "accuracy",
      "decision_agreement",
      "decision_accuracy",
      "score_max_abs_change",
      "score_mean_abs_change",
      "recall_at_k",
      "output.score.relative_l2",
      "output.embedding.cosine",
    ],
    write: async (dir) => {
      const model = await writeScoreModel(dir);
      const labels = await writeCircleLabels(path.join(dir, "circle.csv"));
      const file = path.join(dir, "quantgate.yml");
      await writeFile(
        file,
        `allow_outside_workspace: true\nmodel: ${model}\nrecipe: { format: int4, block_size: 32 }\nevaluation:\n  task: fidelity\n  dataset: ${CNN}/eval\n  format: images\n  preprocess: { scale: 0.00392156862745098, mean: [0.5], std: [0.25] }\n  outputs:\n    - { name: logits, kind: logits }\n    - { name: score, decision: { threshold: 0.5, labels: ${labels} } }\n    - { name: embedding, recall_at_k: 5 }\n${MEASURE}output_dir: out\n`,
      );
      return file;
    },
  },
  {
    name: "text-recognition (example: CTC decode, labels file)",
    task: "text-recognition",
    expected: ["cer", "wer", "cer_vs_float", "wer_vs_float", "model_size", "latency_p50"],
    write: (dir) => exampleConfig(dir, "text-recognition", "int4", ["labels", "calibration", "dictionary"]),
  },
  {
    name: "segmentation (example: argmax masks, mask labels)",
    task: "segmentation",
    expected: ["iou", "dice", "iou_pooled", "dice_pooled", "iou_vs_float", "dice_vs_float", "pixel_agreement", "model_size", "latency_p50"],
    write: (dir) => exampleConfig(dir, "segmentation", "int4", ["labels", "calibration"]),
  },
];

/** A committed example's config with `format` and absolute paths, written into dir. */
async function exampleConfig(dir: string, example: string, format: string, keys: readonly string[]): Promise<string> {
  const src = path.join(EX, example);
  const yaml = (await readFile(path.join(src, "quantgate.yml"), "utf8"))
    .replace("format: int8", `format: ${format}`)
    .replace(
      new RegExp(`^([ ]*)(model|dataset|${keys.join("|")}): ([^\\s#]+)`, "gm"),
      (_, indent: string, key: string, p: string) => `${indent}${key}: ${path.join(src, p)}`,
    )
    .replace(/^measure:\n( {2}.*\n)*/m, MEASURE)
    .replace(/^gate:\n( {2}.*\n)*/m, "");
  const file = path.join(dir, "quantgate.yml");
  await writeFile(file, `allow_outside_workspace: true\n${yaml}output_dir: out\n`);
  return file;
}

const runs = new Map<string, Report>();

beforeAll(async () => {
  const ort = await loadOrt();
  for (const c of CASES) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-metric-model-"));
    const config = await loadConfig(await c.write(dir));
    const run = await runGate(config, { ort });
    runs.set(c.name, run.report);
  }
}, 600_000);

/** A base entry of the same run with every quantized value moved a little (so every metric has a delta). */
function shifted(report: Report): Report {
  return { ...report, metrics: report.metrics.map((m) => ({ ...m, quantized: m.quantized * 1.01 + 1e-6 })) };
}

/** A limit no value breaks, in the rule's direction (a lower bound of 0 on these metrics). */
const lenient = (def: RuleDef): number => (ruleDirection(def.kind) === "min" ? 0 : 1e12);

describe.each(CASES)("tasks x metrics: $name", (c) => {
  it("runs without stage errors and produces the metrics the task promises", () => {
    const report = runs.get(c.name)!;
    expect(report.gate.errors).toEqual([]);
    expect(report.evaluation!.task).toBe(c.task);
    expect(report.metrics.map((m) => m.key)).toEqual(expect.arrayContaining([...c.expected]));
    const s = report.evaluation!.samples;
    expect(s.evaluated).toBeGreaterThan(0);
    expect(s.evaluated).toBeLessThanOrEqual(s.total);
  });

  it("shows every metric in the summary, the terminal, the outputs, the history entry and the dashboard", () => {
    const report = runs.get(c.name)!;
    const meta = { config: "cfg", commit: "b".repeat(40), branch: "main" };
    const base = toHistoryEntry(shifted(report), { ...meta, commit: "a".repeat(40) }, {});
    const entry = toHistoryEntry(report, meta, {});
    const settings = regressionSchema.parse({ metrics: Object.fromEntries(report.metrics.map((m) => [m.key, { max_worse_pct: 1e9 }])) });
    const regression = evaluateRegression(entry, base, settings);
    const body = renderBody({ ...report, ci: { mode: "check", baseBranch: "main", regression } });
    const terminal = renderTerminal(report);
    const outputs = metricOutputs(report.metrics);
    const dashboard = dashboardModel({ schema: HISTORY_SCHEMA, config: "cfg", entries: [base, entry] });
    expect(body).toMatch(/evaluated \d+ of \d+ samples/);
    for (const m of report.metrics) {
      const label = escapeMarkdown(m.label);
      // the full table: label, quantized value (and float value where the metric has one)
      const table = body.slice(body.indexOf("| Metric | Float | Quantized"));
      const row = table.split("\n").find((l) => l.startsWith(`| ${label}`) && l.includes(showValue(m.quantized, m.unit)));
      expect(row, `${m.key} in the summary table`).toBeDefined();
      if (m.float !== undefined) expect(row).toContain(showValue(m.float, m.unit));
      expect(terminal, `${m.key} in the terminal`).toContain(m.label);
      expect(outputs[metricOutputName(m.key, "quantized")], `${m.key} output`).toBe(String(Number(m.quantized.toPrecision(6))));
      if (m.float !== undefined) expect(outputs[metricOutputName(m.key, "float")]).toBeDefined();
      expect(entry.metrics[m.key]?.quantized, `${m.key} in history`).toBe(Number.isInteger(m.quantized) ? m.quantized : Number(m.quantized.toPrecision(6)));
      expect(dashboard.charts.find((x) => x.id === m.key)?.series[0]!.values, `${m.key} on the dashboard`).toHaveLength(2);
      // the base-branch regression rule of the metric is judged, and its delta leads the body
      const judged = regression.rules.find((r) => r.rule === `regression.metrics.${m.key}.max_worse_pct`);
      expect(judged?.status, `${m.key} regression`).toBe("pass");
      expect(judged?.observed).toBeDefined();
      const baseRow = body.indexOf(codeSpan(`regression.metrics.${m.key}.max_worse_pct`));
      expect(baseRow, `${m.key} in the base-branch table`).toBeGreaterThan(-1);
      expect(baseRow).toBeLessThan(body.indexOf("| Metric | Float | Quantized"));
    }
    // every named regression rule (regression.<key>) on a metric the task produced is judged against the base
    for (const def of (REGRESSION_RULES as readonly RuleDef[]).filter((d) => report.metrics.some((m) => m.key === d.metric))) {
      const named = evaluateRegression(entry, base, regressionSchema.parse({ [def.key]: 1e12 })).rules.find((r) => r.rule === `regression.${def.key}`);
      expect(named?.observed, `regression.${def.key} on ${def.metric}: ${named?.message}`).toBeDefined();
      expect(named?.status).toBe("pass");
    }
  });

  it("judges every gate rule a metric declares, and every rule of the task's own config", () => {
    const report = runs.get(c.name)!;
    for (const m of report.metrics) {
      for (const key of m.rules) {
        const def = (GATE_RULES as readonly RuleDef[]).find((d) => d.key === key);
        if (key === SLOWER_THAN_FLOAT.key) {
          const r = evaluateGate(gateSchema.parse({ [key]: true }), report.metrics).rules[0]!;
          expect(r.observed, `${key}: ${r.message}`).toBeDefined();
          continue;
        }
        if (!def) {
          const own = report.gate.rules.find((r) => r.rule === key);
          expect(own?.observed, `${key} on ${m.key}`).toBeDefined();
          continue;
        }
        const limits = gateSchema.parse({ [key]: lenient(def) });
        const r = evaluateGate(limits, report.metrics).rules.find((x) => x.rule === key)!;
        expect(r.observed, `${key} on ${m.key}: ${r.message}`).toBeDefined();
        expect(r.status).toBe("pass");
      }
    }
    for (const t of report.evaluation!.rules ?? []) expect(report.gate.rules.find((r) => r.rule === t.rule)?.observed).toBeDefined();
  });

  it("fails closed when a configured rule's metric was not produced", () => {
    const report = runs.get(c.name)!;
    const produced = new Set(report.metrics.map((m) => m.key));
    const missing = (GATE_RULES as readonly RuleDef[]).find((d) => !produced.has(d.metric))!;
    const g = evaluateGate(gateSchema.parse({ [missing.key]: lenient(missing) }), report.metrics);
    expect(g.verdict).toBe("fail");
    expect(g.rules[0]!.message).toMatch(/no measurement/);
    const entry = toHistoryEntry(report, { config: "cfg", commit: "c".repeat(40) }, {});
    const reg = evaluateRegression(entry, entry, regressionSchema.parse({ metrics: { "no.such.metric": { max_worse: 1 } } }));
    expect(reg.rules[0]).toMatchObject({ status: "fail" });
    expect(reg.rules[0]!.message).toMatch(/no measurement/);
  });
});

it("escapes names from the model and config in the summary, the terminal and the outputs", () => {
  const report = runs.get(CASES[2]!.name)!;
  const hostile = {
    key: "metric.x|y\n## z",
    label: "<img src=x onerror=alert(1)> | `x`\n# heading",
    unit: "value" as const,
    direction: "lower" as const,
    quantized: 1,
    rules: [],
  };
  const body = renderBody({ ...report, metrics: [...report.metrics, hostile] });
  expect(body).not.toContain("<img");
  expect(body).not.toMatch(/^# heading/m);
  const row = body.split("\n").find((l) => l.includes("onerror"))!;
  // one table row: the label's pipe and newline cannot open cells or lines
  expect(row.split(/(?<!\\)\|/).length).toBe(
    body
      .split("\n")
      .find((l) => l.startsWith("| Metric | Float"))!
      .split("|").length,
  );
  expect(renderTerminal({ ...report, metrics: [hostile] })).not.toMatch(/\n# heading/);
  expect(Object.keys(metricOutputs([hostile]))).toEqual(["metric-metric-x-y-z-quantized"]);
});

it("names every task in the registry that the cases cover", () => {
  expect(new Set(CASES.map((c) => c.task))).toEqual(new Set(Object.keys(TASKS)));
});
