// One markdown body for the job summary, the terminal and the PR comment. It leads with what a reviewer
// needs: the verdict and the rules that failed or warn, with numbers; then the base-branch deltas; then every
// metric record; details folded below. Names from the model and the config are escaped.
import { fmt, type RuleResult, type Unit } from "../gate/index.js";
import type { MetricRecord, SampleCount } from "../tasks/types.js";
import { codeSpan, escapeMarkdown as esc } from "../util/escape.js";
import type { ModelRunMeasurement } from "../measure/index.js";
import type { Report } from "./types.js";

const STATUS_ICON: Record<string, string> = { pass: "✅ pass", warn: "⚠️ warn", fail: "❌ fail" };
const ICON: Record<string, string> = { pass: "✅", warn: "⚠️", fail: "❌" };

/** Units whose float-vs-quantized change reads best as a relative change. */
const RELATIVE_UNITS: ReadonlySet<Unit> = new Set<Unit>(["bytes", "ms", "perplexity", "tokens/s", "count"]);

export function showValue(value: number | undefined, unit: Unit): string {
  return value === undefined || !Number.isFinite(value) ? "—" : fmt(value, unit);
}

/** Quantized against float, direction-aware in sign only (the rules judge). */
export function deltaText(record: MetricRecord): string {
  const { float, quantized, unit } = record;
  if (float === undefined || !Number.isFinite(float) || !Number.isFinite(quantized)) return "—";
  if (RELATIVE_UNITS.has(unit)) {
    if (float === 0) return "—";
    const pct = (quantized / float - 1) * 100;
    return `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%`;
  }
  const d = quantized - float;
  if (unit === "ratio") return `${d >= 0 ? "+" : ""}${(d * 100).toFixed(2)} pts`;
  return `${d >= 0 ? "+" : ""}${fmt(d, unit)}`;
}

export function limitText(r: RuleResult, op = r.direction === "max" ? "≤" : "≥"): string {
  const parts: string[] = [];
  if (r.limit.fail !== undefined) parts.push(`${op} ${fmt(r.limit.fail, r.unit)}`);
  if (r.limit.warn !== undefined) parts.push(`warn ${op} ${fmt(r.limit.warn, r.unit)}`);
  return parts.join(", ");
}

export function worstStatus(rules: readonly RuleResult[]): "pass" | "warn" | "fail" | undefined {
  if (rules.length === 0) return undefined;
  return rules.some((r) => r.status === "fail") ? "fail" : rules.some((r) => r.status === "warn") ? "warn" : "pass";
}

/** The rules of this run (not the base-branch ones) that judged a record. */
export function rulesOfRecord(record: MetricRecord, rules: readonly RuleResult[]): RuleResult[] {
  return rules.filter((r) => !r.rule.startsWith("regression.") && (r.metric === record.key || (r.metric === undefined && record.rules.includes(r.rule))));
}

export function samplesText(s: SampleCount | undefined): string | undefined {
  if (!s) return undefined;
  const unit = s.sequenceUnit ?? "sequences";
  const seq = s.sequences !== undefined ? ` (${s.sequences.toLocaleString("en-US")} ${unit})` : "";
  const left = s.leftOut ? `; not evaluated: ${s.leftOut}` : "";
  return `evaluated ${s.evaluated.toLocaleString("en-US")} of ${s.total.toLocaleString("en-US")} samples${seq}${left}`;
}

/** Rows of the full metric table, shared by the markdown body and the terminal. */
export interface MetricRow {
  readonly record: MetricRecord;
  readonly rules: RuleResult[];
  readonly status: "pass" | "warn" | "fail" | undefined;
}

export function metricRows(report: Pick<Report, "metrics" | "gate">): MetricRow[] {
  return report.metrics.map((record) => {
    const rules = rulesOfRecord(record, report.gate.rules);
    return { record, rules, status: worstStatus(rules) };
  });
}

/** What the CI layer adds: the base-branch deltas (after the verdict) and lines for the folded details and footer. */
export interface MarkdownExtras {
  /** Markdown of the base-branch comparison, placed right after the verdict. */
  readonly base?: string;
  /** Folded sections placed with the other details. */
  readonly details?: readonly string[];
  /** Lines (links, notes) placed before the footer. */
  readonly footer?: readonly string[];
}

function verdictLines(report: Report): string[] {
  const out: string[] = [];
  const failed = report.gate.rules.filter((r) => r.status === "fail");
  const warned = report.gate.rules.filter((r) => r.status === "warn");
  const errors = report.gate.errors;
  const counts = [
    errors.length ? `${errors.length} error${errors.length > 1 ? "s" : ""}` : "",
    failed.length ? `${failed.length} rule${failed.length > 1 ? "s" : ""} failed` : "",
    warned.length ? `${warned.length} warning${warned.length > 1 ? "s" : ""}` : "",
  ].filter(Boolean);
  const verdict = report.verdict === "pass" ? "✅ **QuantGate passed**" : "❌ **QuantGate failed**";
  const passed = report.gate.rules.length - failed.length - warned.length;
  const tail = counts.length ? counts.join(", ") : passed === 0 ? "no rules configured" : `all ${passed} rule${passed === 1 ? "" : "s"} pass`;
  out.push(`## ${verdict}: ${tail} · ${codeSpan(report.configPath)}`);
  out.push("");
  for (const e of errors) out.push(`- ❌ error in ${esc(e)}`);
  for (const r of [...failed, ...warned]) {
    const word = r.direction === "max" ? "at most" : "at least";
    const bound = r.status === "fail" ? r.limit.fail : (r.limit.warn ?? r.limit.fail);
    const limit = bound === undefined ? "" : ` (${word} ${fmt(bound, r.unit)})`;
    if (r.observed === undefined) out.push(`- ${ICON[r.status]} ${codeSpan(r.rule)}: ${esc(r.message.replace(`${r.rule}: `, ""))}`);
    else
      out.push(
        `- ${ICON[r.status]} ${esc(r.label)} **${fmt(r.observed, r.unit)}** ${r.status === "fail" ? "breaks" : "is past the warning level of"} ${codeSpan(r.rule)}${limit}`,
      );
  }
  if (errors.length || failed.length || warned.length) out.push("");
  return out;
}

export function renderMarkdown(report: Report, extras: MarkdownExtras = {}): string {
  const out: string[] = verdictLines(report);
  const r = report.recipe;
  const samples = samplesText(report.evaluation?.samples ?? undefined);
  out.push(
    [
      samples ? `${report.evaluation?.task ? `${esc(report.evaluation.task)}: ` : ""}${samples}` : "",
      `model ${codeSpan(report.float.path)}`,
      `recipe **${esc(r.format)}** block ${r.block_size} ${r.symmetric ? "symmetric" : "asymmetric"} ${esc(r.algorithm.toUpperCase())}`,
      `${report.weights.quantized.length} weights quantized, ${report.weights.skipped.length} skipped`,
      `ONNX Runtime ${esc(report.runtime.onnxruntime)}, kernels: ${esc(report.runtime.kernels)}`,
    ]
      .filter(Boolean)
      .join(" · "),
  );
  out.push("");
  if (extras.base) {
    out.push(extras.base.trimEnd());
    out.push("");
  }
  out.push("| Metric | Float | Quantized | Delta | Limit | Status |");
  out.push("| --- | ---: | ---: | ---: | --- | --- |");
  for (const row of metricRows(report)) {
    const m = row.record;
    const label = `${esc(m.label)}${m.note ? ` <sub>${esc(m.note)}</sub>` : ""}`;
    const limits = row.rules.length ? row.rules.map((x) => `${limitText(x)} (${codeSpan(x.rule)})`).join("<br>") : "—";
    out.push(
      `| ${label} | ${showValue(m.float, m.unit)} | ${showValue(m.quantized, m.unit)} | ${deltaText(m)} | ${limits} | ${row.status ? STATUS_ICON[row.status] : ""} |`,
    );
  }
  // Rules whose metric is not in the table (it was never produced) still show: they failed closed.
  const keys = new Set(report.metrics.map((m) => m.key));
  const orphans = report.gate.rules.filter((x) => !x.rule.startsWith("regression.") && (x.metric === undefined || !keys.has(x.metric)));
  for (const x of orphans) out.push(`| ${esc(x.label)} | — | — | — | ${limitText(x)} (${codeSpan(x.rule)}) | ${STATUS_ICON[x.status]} |`);
  if (report.warnings.length > 0) {
    out.push("");
    for (const w of report.warnings) out.push(`> ⚠️ ${esc(w)}`);
  }
  const slower = slowerThanFloatLine(report);
  if (slower) out.push("", slower);
  out.push(...executionSection(report));
  out.push(...detailSections(report, extras.details ?? []));
  if (extras.footer?.length) {
    out.push("");
    out.push(extras.footer.join(" · "));
  }
  out.push("");
  out.push(`<sub>quantgate ${esc(report.tool.version)} · model ${report.hashes.model.slice(0, 12)} · recipe ${report.hashes.recipe.slice(0, 12)}</sub>`);
  return out.join("\n") + "\n";
}

/** Latency p50 on the basis the gate judges: on-CPU time where the wait for a core was measured, else wall time. */
function latencyOf(run: ModelRunMeasurement): { p50: number; basis: string } {
  return run.onCpu ? { p50: run.onCpu.p50Ms, basis: "on CPU" } : { p50: run.latency.p50Ms, basis: "wall" };
}

/**
 * When the quantized model ran slower than float (median per-round ratio above 1), the visible part of the
 * summary says so with numbers and with what the run decided about execution (accuracy level, forms).
 */
export function slowerThanFloatLine(report: Report): string | undefined {
  const c = report.latencyComparison;
  const f = report.float.run;
  const q = report.quantized?.run;
  if (!c || !f || !q || !(c.ratioP50 > 1)) return undefined;
  const fl = latencyOf(f);
  const ql = latencyOf(q);
  const acc = report.execution.accuracy;
  const why = [
    acc ? `accuracy level ${acc.level} (${esc(acc.how)}): ${esc(acc.reason)}` : `accuracy level ${report.execution.accuracyLevel}`,
    report.execution.formsChosenBy ? `forms chosen by ${esc(report.execution.formsChosenBy)}` : "",
  ].filter(Boolean);
  const because = slowerWhy(report);
  return (
    `> 🐢 **The quantized model is slower than float**: ${c.ratioP50.toFixed(2)}x the float latency per ${c.interleaved === false ? "paired" : "interleaved"} round ` +
    `(${Math.round(c.ratioInterval.level * 100)}% interval ${c.ratioInterval.lo.toFixed(2)}-${c.ratioInterval.hi.toFixed(2)}x over ${c.rounds} rounds; ` +
    `p50 ${fl.basis} ${ql.p50.toFixed(3)} ms vs ${fl.p50.toFixed(3)} ms). Execution chosen: ${why.join("; ")}.` +
    (because.length ? `\n>\n> Why: ${because.join(" ")}` : "")
  );
}

const PACKED_FORMS: ReadonlySet<string> = new Set(["matmulnbits", "matmulbnb4"]);

/**
 * The numbers behind a quantized model that is no faster than float: where its quantized weights execute (a
 * packed low-bit operator, or dequantized to float in the graph, which computes like float), each format's
 * packed operator against float MatMul on the layer it was timed on, and whether the ratio is within noise.
 */
export function slowerWhy(report: Report): string[] {
  const out: string[] = [];
  const layers = report.weights.quantized;
  const total = layers.reduce((a, l) => a + l.floatBytes, 0);
  if (layers.length && total > 0) {
    const packed = layers.filter((l) => PACKED_FORMS.has(l.form));
    const rest = layers.filter((l) => !PACKED_FORMS.has(l.form));
    const share = (ls: typeof layers): string => `${Math.round((100 * ls.reduce((a, l) => a + l.floatBytes, 0)) / total)}% of the quantized float bytes`;
    const ops = (ls: typeof layers): string => [...new Set(ls.map((l) => l.op))].map((o) => esc(o)).join(", ");
    const parts: string[] = [];
    if (packed.length) parts.push(`${packed.length} of ${layers.length} quantized weights (${share(packed)}) run on a packed low-bit operator`);
    if (rest.length)
      parts.push(
        `${packed.length ? rest.length : `${rest.length} of ${layers.length} quantized weights`} (${ops(rest)}; ${share(rest)}) are dequantized to float inside the graph, so those layers compute as float and save memory, not time`,
      );
    out.push(`${parts.join("; ")}.`);
  }
  const timed = report.execution.forms
    .map((f) => ({ f, t: f.candidates.find((c) => c.form === f.chosen)?.p50Ms }))
    .filter((x): x is { f: (typeof report.execution.forms)[number]; t: number } => PACKED_FORMS.has(x.f.chosen) && x.t !== undefined);
  if (timed.length)
    out.push(
      `Timed alone at M=1: ${timed
        .map(({ f, t }) => `${esc(f.format)} on ${esc(f.layer)} (${f.k}x${f.n}) ${t.toFixed(3)} ms vs float MatMul ${f.floatP50Ms.toFixed(3)} ms`)
        .join("; ")}.`,
    );
  const c = report.latencyComparison;
  if (c && c.ratioInterval.lo <= 1)
    out.push(
      `The ratio's interval (${c.ratioInterval.lo.toFixed(2)}-${c.ratioInterval.hi.toFixed(2)}x) includes 1: the difference is within this runner's noise.`,
    );
  return out;
}

function memoryText(run: ModelRunMeasurement | undefined): string {
  if (!run) return "—";
  const load = run.loadPeakBytes !== undefined ? fmt(run.loadPeakBytes, "bytes") : "—";
  const during = run.runPeakBytes !== undefined ? fmt(run.runPeakBytes, "bytes") : "—";
  return `${load} | ${during} | ${fmt(run.peakRssBytes, "bytes")}`;
}

function latencyText(run: ModelRunMeasurement | undefined): string {
  if (!run) return "— | —";
  const wall = `${run.latency.p50Ms.toFixed(3)} ms`;
  const cpu = run.onCpu ? `${run.onCpu.p50Ms.toFixed(3)} ms` : "—";
  return `${cpu} | ${wall}`;
}

/** The measure stage's figures and the emit stage's execution choices, folded: memory, latency basis, accuracy level, forms. */
export function executionSection(report: Report): string[] {
  const f = report.float.run;
  const q = report.quantized?.run;
  const acc = report.execution.accuracy;
  const c = report.latencyComparison;
  const body: string[] = [];
  if (f || q) {
    body.push("| Model | Peak memory at load | Peak memory during runs | Peak (RSS) | Latency p50 on CPU | Latency p50 wall |");
    body.push("| --- | ---: | ---: | ---: | ---: | ---: |");
    body.push(`| Float | ${memoryText(f)} | ${latencyText(f)} |`);
    body.push(`| Quantized | ${memoryText(q)} | ${latencyText(q)} |`);
    body.push("");
    const source = q?.memorySource ?? f?.memorySource;
    if (source) body.push(`- Memory: each model in a fresh process; source ${esc(source)}.`);
    const run = q ?? f!;
    body.push(
      run.onCpu && run.waitShare !== undefined
        ? `- Latency basis: on-CPU time (wall time less the ${(run.waitShare * 100).toFixed(0)}% of it spent waiting for a core); the gate's latency limits judge it. ${run.preemptedRuns ?? 0} of ${run.latency.runs} timed runs preempted.`
        : `- Latency basis: wall time (this runner does not expose the wait for a core).`,
    );
  }
  if (c) {
    body.push(
      `- Quantized/float latency: ${c.ratioP50.toFixed(3)}x per round (median of ${c.rounds} ${c.interleaved === false ? "paired rounds, models timed in separate processes" : "interleaved rounds"}; ` +
        `${Math.round(c.ratioInterval.level * 100)}% interval ${c.ratioInterval.lo.toFixed(3)}-${c.ratioInterval.hi.toFixed(3)}x; ${c.preemptedRounds} round(s) preempted).`,
    );
  }
  if (acc) {
    body.push(`- Accuracy level ${acc.level} (${esc(acc.how)}): ${esc(acc.reason)}.`);
    if (acc.candidates.length > 0) {
      body.push("");
      body.push("| Accuracy level | Passes accuracy rules | KL mean | Latency p50 |");
      body.push("| ---: | --- | ---: | --- |");
      for (const e of acc.candidates) {
        const lat = e.latencies?.length ? e.latencies.map((x) => `${esc(x.shape)}: ${x.p50Ms.toFixed(3)} ms`).join("<br>") : "—";
        const passes = e.passes ? "yes" : `no (${e.failing.map((r) => codeSpan(r)).join(", ")})`;
        body.push(`| ${e.level}${e.level === acc.level ? " (chosen)" : ""} | ${passes} | ${e.klMean === undefined ? "—" : e.klMean.toPrecision(4)} | ${lat} |`);
      }
      body.push("");
    }
  } else {
    body.push(`- Accuracy level ${report.execution.accuracyLevel}.`);
  }
  if (report.execution.formsChosenBy) body.push(`- Forms chosen by ${esc(report.execution.formsChosenBy)}.`);
  if (report.execution.pinnedFormats?.length)
    body.push(`- Forms pinned by the lockfile: ${report.execution.pinnedFormats.map((x) => codeSpan(x)).join(", ")}.`);
  if (!f && !q && !acc && !report.execution.formsChosenBy) return [];
  return folded("Execution and measurement", body);
}

function folded(summary: string, body: string[]): string[] {
  return ["", `<details><summary>${summary}</summary>`, "", ...body, "", "</details>"];
}

/** The decode measurement's details (src/pipeline.ts, LLM exports with a KV cache). */
interface DecodeDetails {
  readonly promptTokens: number;
  readonly decodeTokens: number;
  readonly prompts: number;
  readonly firstDivergence: readonly { prompt: number; firstDivergence: number | null; compared: number; float: number[]; quantized: number[] }[];
}

function detailSections(report: Report, extra: readonly string[]): string[] {
  const out: string[] = [];
  const changes = report.lockfile?.changes ?? [];
  if (changes.length > 0) {
    const describe = (e?: { format: string; blockSize: number; algorithm: string; form: string }): string =>
      e ? esc(`${e.format} b${e.blockSize} ${e.algorithm} (${e.form})`) : "—";
    out.push(
      ...folded(`Precision changes against the committed quantgate.lock.json (${changes.length})`, [
        "| Weight | Change | Before | After |",
        "| --- | --- | --- | --- |",
        ...changes.map(
          (c) =>
            `| ${codeSpan(c.name)} | ${esc(c.change)}${c.fields.length ? `: ${esc(c.fields.join(", "))}` : ""} | ${describe(c.before)} | ${describe(c.after)} |`,
        ),
      ]),
    );
  }
  for (const section of extra) out.push("", section.trimEnd());
  if (report.execution.forms.length > 0) {
    out.push(
      ...folded("Execution forms chosen by measurement", [
        "| Format | Layer (K×N) | Float MatMul | Candidates | Chosen |",
        "| --- | --- | ---: | --- | --- |",
        ...report.execution.forms.map((f) => {
          const cands = f.candidates
            .map((c) => `${c.form}: ${c.p50Ms === undefined ? `refused (${esc(c.refused ?? "")})` : `${c.p50Ms.toFixed(3)} ms`}`)
            .join("<br>");
          const level = f.timedAtLevel !== undefined && f.timedAtLevel !== report.execution.accuracyLevel ? ` (timed at level ${f.timedAtLevel}, kept)` : "";
          return `| ${esc(f.format)} | ${codeSpan(f.layer)} (${f.k}×${f.n}) | ${f.floatP50Ms.toFixed(3)} ms | ${cands} | ${esc(f.chosen)}${level} |`;
        }),
      ]),
    );
  }
  const decode = (report.evaluation?.details as { llmDecode?: DecodeDetails } | undefined)?.llmDecode;
  if (decode && Array.isArray(decode.firstDivergence) && decode.firstDivergence.length > 0) {
    const ids = (t: readonly number[]): string => (t.length > 24 ? `${t.slice(0, 24).join(" ")} …` : t.join(" "));
    out.push(
      ...folded(`Greedy decode, float vs quantized (${decode.prompts} prompts of ${decode.promptTokens} tokens, ${decode.decodeTokens} steps)`, [
        "| Prompt | First divergence | Float tokens | Quantized tokens |",
        "| ---: | --- | --- | --- |",
        ...decode.firstDivergence.map(
          (d) =>
            `| ${d.prompt} | ${d.firstDivergence === null ? `none in ${d.compared} tokens` : `token ${d.firstDivergence} of ${d.compared}`} | ${ids(d.float)} | ${ids(d.quantized)} |`,
        ),
      ]),
    );
  }
  const layers = report.weights.quantized;
  if (layers.length > 0 || report.weights.skipped.length > 0) {
    out.push(
      ...folded(`Weights: ${layers.length} quantized, ${report.weights.skipped.length} skipped`, [
        "| Weight | Op, shape | Format | Form | Bits/weight (in ONNX) | Rel. error | Output error | Origin, notes |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- |",
        ...layers.map(
          (l) =>
            `| ${codeSpan(l.name)} | ${esc(l.op)} ${l.shape.join("×")}${l.graph === "main graph" ? "" : ` in ${esc(l.graph)}`} | ${esc(`${l.format} b${l.blockSize} ${l.symmetric ? "sym" : "asym"} ${l.algorithm}`)} | ${esc(l.form)} | ${l.bitsPerWeight.toFixed(3)} (${l.storedBitsPerWeight.toFixed(3)}) | ${l.relativeError.toFixed(4)} | ${l.outputErrorRatio === undefined ? "—" : l.outputErrorRatio.toExponential(2)} | ${esc([l.origin, ...l.notes].join("; "))} |`,
        ),
        ...report.weights.skipped.map(
          (s) =>
            `| ${codeSpan(s.name || s.nodeName)} | ${esc(s.opType)} ${s.shape ? s.shape.join("×") : "—"} | skipped | ${esc(s.reason)} | | | | ${esc(s.origin ?? "")} |`,
        ),
      ]),
    );
  }
  const stageLines = report.stages.map((s) => `| ${esc(s.stage)} | ${s.status} | ${(s.ms / 1000).toFixed(2)} s | ${esc(s.error ?? s.note ?? "")} |`);
  const cache =
    report.cache && (report.cache.hits.length > 0 || report.cache.misses.length > 0)
      ? [
          "",
          `Work cache: ${report.cache.hits.length} hit(s)${report.cache.hits.length ? ` (${esc(report.cache.hits.join(", "))})` : ""}, ${report.cache.misses.length} miss(es); latency and memory are always measured on this runner.`,
        ]
      : [];
  out.push(...folded("Stages and timings", ["| Stage | Status | Time | Note |", "| --- | --- | ---: | --- |", ...stageLines, ...cache]));
  return out;
}
