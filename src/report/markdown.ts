// One markdown body for the job summary, the terminal and (later) the PR comment.
import { fmt, type RuleResult, type Unit } from "../gate/index.js";
import type { Report } from "./types.js";

interface Row {
  readonly metric: string;
  readonly unit: Unit;
  readonly float: number | undefined;
  readonly quantized: number | undefined;
  readonly rules: readonly string[];
  /** Delta shown as a relative change (size, memory, latency, perplexity). */
  readonly relative?: boolean;
}

const STATUS_ICON: Record<string, string> = { pass: "✅ pass", warn: "⚠️ warn", fail: "❌ fail" };

function show(value: number | undefined, unit: Unit): string {
  return value === undefined || !Number.isFinite(value) ? "—" : fmt(value, unit);
}

function delta(row: Row): string {
  if (row.float === undefined || row.quantized === undefined) return "—";
  if (row.relative) {
    if (row.float === 0) return "—";
    const pct = (row.quantized / row.float - 1) * 100;
    return `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%`;
  }
  const d = row.quantized - row.float;
  return `${d >= 0 ? "+" : ""}${row.unit === "ratio" ? d.toFixed(4) : fmt(d, row.unit)}`;
}

function limitText(rules: readonly RuleResult[]): string {
  if (rules.length === 0) return "—";
  return rules
    .map((r) => {
      const op = r.direction === "max" ? "≤" : "≥";
      const parts = [];
      if (r.limit.fail !== undefined) parts.push(`${op} ${fmt(r.limit.fail, r.unit)}`);
      if (r.limit.warn !== undefined) parts.push(`warn ${op} ${fmt(r.limit.warn, r.unit)}`);
      return `${parts.join(", ")} (\`${r.rule}\`)`;
    })
    .join("<br>");
}

function statusText(rules: readonly RuleResult[]): string {
  if (rules.length === 0) return "";
  const worst = rules.some((r) => r.status === "fail") ? "fail" : rules.some((r) => r.status === "warn") ? "warn" : "pass";
  return STATUS_ICON[worst]!;
}

export function metricRows(report: Report): Row[] {
  const e = report.evaluation;
  const rows: Row[] = [];
  if (e?.task === "language-modeling") {
    rows.push({
      metric: "Perplexity",
      unit: "ratio",
      float: e.perplexityFloat,
      quantized: e.perplexityQuantized,
      rules: ["max_perplexity_increase_pct"],
      relative: true,
    });
  }
  if (e?.task === "classification") {
    rows.push({
      metric: "Accuracy",
      unit: "ratio",
      float: e.accuracyFloat,
      quantized: e.accuracyQuantized,
      rules: ["max_accuracy_drop", "max_accuracy_drop_pct"],
    });
    rows.push({ metric: "Macro-F1", unit: "ratio", float: e.macroF1Float, quantized: e.macroF1Quantized, rules: [] });
  }
  if (e) {
    rows.push({ metric: "KL divergence (mean)", unit: "nats", float: 0, quantized: e.kl.mean, rules: ["max_kl_mean"] });
    rows.push({ metric: "KL divergence (p99)", unit: "nats", float: 0, quantized: e.kl.p99, rules: ["max_kl_p99"] });
    rows.push({ metric: "Top-1 agreement", unit: "ratio", float: 1, quantized: e.top1Agreement, rules: ["min_top1_agreement"] });
  }
  rows.push({
    metric: "Model size",
    unit: "bytes",
    float: report.float.sizeBytes || undefined,
    quantized: report.quantized?.sizeBytes,
    rules: ["max_model_size"],
    relative: true,
  });
  rows.push({
    metric: "Bits per weight",
    unit: "bits",
    float: report.storage ? 32 : undefined,
    quantized: report.storage?.bitsPerWeight,
    rules: ["max_bits_per_weight"],
  });
  if (report.storage?.huffmanBitsPerWeight !== undefined) {
    rows.push({ metric: "Bits per weight, Huffman-coded", unit: "bits", float: 32, quantized: report.storage.huffmanBitsPerWeight, rules: [] });
  }
  rows.push({
    metric: "Peak memory (RSS)",
    unit: "bytes",
    float: report.float.run?.peakRssBytes,
    quantized: report.quantized?.run?.peakRssBytes,
    rules: ["max_peak_memory"],
    relative: true,
  });
  rows.push({
    metric: "Latency p50",
    unit: "ms",
    float: report.float.run?.latency.p50Ms,
    quantized: report.quantized?.run?.latency.p50Ms,
    rules: ["max_latency_p50_ms", "forbid_slower_than_float"],
    relative: true,
  });
  rows.push({
    metric: "Latency p95",
    unit: "ms",
    float: report.float.run?.latency.p95Ms,
    quantized: report.quantized?.run?.latency.p95Ms,
    rules: ["max_latency_p95_ms"],
    relative: true,
  });
  if (report.kernelBenchmark) {
    const kb = report.kernelBenchmark;
    const sum = (pick: (t: (typeof kb.totals)[number]) => number): number => kb.totals.reduce((a, t) => a + pick(t), 0);
    rows.push({
      metric: `Kernel GEMV, all layers (${kb.backend} ${kb.isa})`,
      unit: "ms",
      float: sum((t) => t.f32GemvMs),
      quantized: sum((t) => t.gemvMs),
      rules: ["max_kernel_gemv_ms"],
      relative: true,
    });
  }
  return rows;
}

export function renderMarkdown(report: Report): string {
  const out: string[] = [];
  const verdict = report.verdict === "pass" ? "✅ **pass**" : "❌ **fail**";
  out.push(`## QuantGate: ${verdict} — \`${report.configPath}\``);
  out.push("");
  const r = report.recipe;
  out.push(
    `Model \`${report.float.path}\` · recipe **${r.format}** block ${r.block_size} ${r.symmetric ? "symmetric" : "asymmetric"} ${r.algorithm.toUpperCase()}` +
      ` · ${report.weights.quantized.length} weights quantized, ${report.weights.skipped.length} skipped · ONNX Runtime ${report.runtime.onnxruntime}, kernels: ${report.runtime.kernels}`,
  );
  out.push("");
  out.push("| Metric | Float | Quantized | Delta | Limit | Status |");
  out.push("| --- | ---: | ---: | ---: | --- | --- |");
  const byRule = new Map(report.gate.rules.map((x) => [x.rule, x]));
  for (const row of metricRows(report)) {
    const rules = row.rules.map((id) => byRule.get(id)).filter((x): x is RuleResult => x !== undefined);
    out.push(
      `| ${row.metric} | ${show(row.float, row.unit)} | ${show(row.quantized, row.unit)} | ${delta(row)} | ${limitText(rules)} | ${statusText(rules)} |`,
    );
  }
  const fidelity = report.evaluation?.task === "fidelity" ? report.evaluation.rules : [];
  if (fidelity.length > 0) {
    out.push("");
    out.push("| Output fidelity rule | Observed | Limit | Status |");
    out.push("| --- | ---: | --- | --- |");
    for (const r of fidelity) {
      const op = r.direction === "max" ? "≤" : "≥";
      out.push(
        `| \`${r.rule}\` | ${show(r.observed, r.unit)} | ${r.limit.fail !== undefined ? `${op} ${fmt(r.limit.fail, r.unit)}` : "—"}${r.limit.warn !== undefined ? `, warn ${op} ${fmt(r.limit.warn, r.unit)}` : ""} | ${STATUS_ICON[r.status]} |`,
      );
    }
  }
  const failing = report.gate.rules.filter((x) => x.status !== "pass");
  if (report.gate.errors.length > 0 || failing.length > 0) {
    out.push("");
    out.push("### What failed");
    for (const e of report.gate.errors) out.push(`- ❌ error in ${e}`);
    for (const x of failing) out.push(`- ${STATUS_ICON[x.status]}: ${x.message}`);
  }
  if (report.warnings.length > 0) {
    out.push("");
    for (const w of report.warnings) out.push(`> ⚠️ ${w}`);
  }
  const changes = report.lockfile?.changes ?? [];
  if (changes.length > 0) {
    out.push("");
    out.push(`### Precision changes against the committed \`quantgate.lock.json\` (${changes.length})`);
    out.push("");
    out.push("| Weight | Change | Before | After |");
    out.push("| --- | --- | --- | --- |");
    const describe = (e?: { format: string; blockSize: number; algorithm: string; form: string }): string =>
      e ? `${e.format} b${e.blockSize} ${e.algorithm} (${e.form})` : "—";
    for (const c of changes)
      out.push(`| \`${c.name}\` | ${c.change}${c.fields.length ? `: ${c.fields.join(", ")}` : ""} | ${describe(c.before)} | ${describe(c.after)} |`);
  }
  if (report.execution.forms.length > 0) {
    out.push("");
    out.push("<details><summary>Execution forms chosen by measurement</summary>");
    out.push("");
    out.push("| Format | Layer (K×N) | Float MatMul | Candidates | Chosen |");
    out.push("| --- | --- | ---: | --- | --- |");
    for (const f of report.execution.forms) {
      const cands = f.candidates.map((c) => `${c.form}: ${c.p50Ms === undefined ? `refused (${c.refused})` : `${c.p50Ms.toFixed(3)} ms`}`).join("<br>");
      out.push(`| ${f.format} | \`${f.layer}\` (${f.k}×${f.n}) | ${f.floatP50Ms.toFixed(3)} ms | ${cands} | ${f.chosen} |`);
    }
    out.push("");
    out.push("</details>");
  }
  const layers = report.weights.quantized;
  if (layers.length > 0 || report.weights.skipped.length > 0) {
    out.push("");
    out.push(`<details><summary>Weights: ${layers.length} quantized, ${report.weights.skipped.length} skipped</summary>`);
    out.push("");
    out.push("| Weight | Op, shape | Format | Form | Bits/weight (in ONNX) | Rel. error | Output error | Origin, notes |");
    out.push("| --- | --- | --- | --- | ---: | ---: | ---: | --- |");
    for (const l of layers) {
      out.push(
        `| \`${l.name}\` | ${l.op} ${l.shape.join("×")}${l.graph === "main graph" ? "" : ` in ${l.graph}`} | ${l.format} b${l.blockSize} ${l.symmetric ? "sym" : "asym"} ${l.algorithm} | ${l.form} | ${l.bitsPerWeight.toFixed(3)} (${l.storedBitsPerWeight.toFixed(3)}) | ${l.relativeError.toFixed(4)} | ${l.outputErrorRatio === undefined ? "—" : l.outputErrorRatio.toExponential(2)} | ${[l.origin, ...l.notes].join("; ")} |`,
      );
    }
    for (const s of report.weights.skipped)
      out.push(`| \`${s.name || s.nodeName}\` | ${s.opType} ${s.shape ? s.shape.join("×") : "—"} | skipped | ${s.reason} | | | | ${s.origin ?? ""} |`);
    out.push("");
    out.push("</details>");
  }
  if (report.cache && (report.cache.hits.length > 0 || report.cache.misses.length > 0)) {
    out.push("");
    out.push(
      `Work cache: ${report.cache.hits.length} hit(s)${report.cache.hits.length ? ` (${report.cache.hits.join(", ")})` : ""}, ${report.cache.misses.length} miss(es); latency and memory are always measured on this runner.`,
    );
  }
  out.push("");
  out.push(
    `<sub>quantgate ${report.tool.version} · model ${report.hashes.model.slice(0, 12)} · recipe ${report.hashes.recipe.slice(0, 12)} · ${report.stages.map((s) => `${s.stage} ${(s.ms / 1000).toFixed(1)}s${s.status === "ok" ? "" : ` (${s.status})`}`).join(", ")}</sub>`,
  );
  return out.join("\n") + "\n";
}
