// The search's answer in words: the "Suggested recipe" section of the pull-request comment and job summary,
// and the terminal table of the CLI.
import { canonical } from "../cache/index.js";
import { fmt } from "../gate/index.js";
import type { RuleResult } from "../gate/index.js";
import type { Report } from "../report/types.js";
import { escapeMarkdown, singleLine } from "../util/escape.js";
import type { Evaluation, SearchResult } from "./index.js";

const OBJECTIVE_LABEL = {
  size: "stored size",
  bits_per_weight: "bits per weight",
  latency_p50: "latency p50",
  decode_ms_per_token: "decode ms/token",
} as const;

function costText(v: number | undefined, objective: SearchResult["objective"]): string {
  if (v === undefined || !Number.isFinite(v)) return "–";
  if (objective === "size") return fmt(v, "bytes");
  return objective === "bits_per_weight" ? `${v.toFixed(3)} bits` : objective === "decode_ms_per_token" ? `${v.toFixed(3)} ms/token` : `${v.toFixed(3)} ms`;
}

function metricCell(report: Report, key: string): string {
  const m = report.metrics.find((x) => x.key === key);
  return m ? escapeMarkdown(fmt(m.quantized, m.unit as Parameters<typeof fmt>[1])) : "–";
}

type RuleCell = Pick<RuleResult, "rule" | "unit" | "observed" | "status"> | undefined;

function ruleCell(r: RuleCell): string {
  if (!r) return "–";
  return `${r.observed === undefined ? "–" : escapeMarkdown(fmt(r.observed, r.unit))} ${r.status === "pass" ? "✅" : r.status === "warn" ? "⚠️" : "❌"}`;
}

/** One row per gate rule: current (holdout), suggested (holdout), suggested (search part): both scores. */
function ruleRows(current: Report, suggested: Report, searchPart: Evaluation | undefined): string[] {
  const keys = [...new Set([...current.gate.rules, ...suggested.gate.rules].map((r) => r.rule))];
  return keys.map((rule) => {
    const a = current.gate.rules.find((r) => r.rule === rule);
    const b = suggested.gate.rules.find((r) => r.rule === rule);
    const c = searchPart?.rules.find((r) => r.rule === rule);
    const label = escapeMarkdown(singleLine((a ?? b)!.label));
    return `| ${label} | ${ruleCell(a)} | ${ruleCell(b)} | ${ruleCell(c)} |`;
  });
}

function savings(current: Evaluation, winner: Evaluation, objective: SearchResult["objective"]): string {
  const a = current.cost;
  const b = winner.cost;
  if (a === undefined || b === undefined || !(a > 0)) return "";
  const d = a - b;
  if (Math.abs(d) < 1e-12) return "Same cost as the current recipe.";
  const pct = ((d / a) * 100).toFixed(1);
  return d > 0
    ? `Saves **${escapeMarkdown(costText(d, objective))}** of ${OBJECTIVE_LABEL[objective]} (${pct}% less than the current recipe).`
    : `Costs ${escapeMarkdown(costText(-d, objective))} more ${OBJECTIVE_LABEL[objective]} than the current recipe (${pct.replace("-", "")}% more), which ${current.verdict === "pass" ? "also passes" : "fails the gate"}.`;
}

/** The "Suggested recipe" section (markdown); names from the model and config are escaped. */
export function renderSuggestion(r: SearchResult): string {
  const out: string[] = ["### Suggested recipe", ""];
  const stats = `${r.evaluations.length} full evaluation${r.evaluations.length === 1 ? "" : "s"} on the search part + ${r.holdoutRuns} on the holdout part, ${(r.wallMs / 1000).toFixed(0)} s; objective: ${OBJECTIVE_LABEL[r.objective]}`;
  if (!r.verification || r.verdict !== "pass") {
    out.push(`**No recipe suggested.** ${escapeMarkdown(singleLine(r.message))}`, "", `<sub>${escapeMarkdown(stats)}</sub>`);
    if (r.stoppedEarly) out.push("", `The search ${escapeMarkdown(r.stoppedEarly)}.`);
    return out.join("\n") + "\n";
  }
  const v = r.verification;
  out.push(`**${escapeMarkdown(singleLine(v.winner.candidate.label))}** — ${escapeMarkdown(singleLine(r.message))}.`, "");
  const s = savings(v.current, v.winner, r.objective);
  if (s) out.push(s, "");
  const searchPart = r.best && canonical(r.best.candidate.recipe) === canonical(v.winner.candidate.recipe) ? r.best : undefined;
  const sp = (x: number | undefined, unit: "bytes" | "bits" | "ms"): string => (x === undefined ? "–" : escapeMarkdown(fmt(x, unit)));
  out.push("| | Current (holdout part) | Suggested (holdout part) | Suggested (search part) |", "|---|---:|---:|---:|");
  out.push(`| Recipe | ${escapeMarkdown(singleLine(recipeLabel(v.currentReport)))} | ${escapeMarkdown(singleLine(v.winner.candidate.label))} | |`);
  out.push(
    `| Model size | ${metricCell(v.currentReport, "model_size")} | ${metricCell(v.winnerReport, "model_size")} | ${sp(searchPart?.sizeBytes, "bytes")} |`,
  );
  out.push(
    `| Bits per weight | ${metricCell(v.currentReport, "bits_per_weight")} | ${metricCell(v.winnerReport, "bits_per_weight")} | ${sp(searchPart?.bitsPerWeight, "bits")} |`,
  );
  out.push(
    `| Latency p50 | ${metricCell(v.currentReport, "latency_p50")} | ${metricCell(v.winnerReport, "latency_p50")} | ${sp(searchPart?.latencyP50Ms, "ms")} |`,
  );
  if (r.objective === "decode_ms_per_token") {
    const d = (x: number | undefined): string => (x === undefined ? "–" : escapeMarkdown(`${x.toFixed(3)} ms`));
    out.push(
      `| Decode ms/token p50 | ${metricCell(v.currentReport, "decode_ms_per_token_p50")} | ${metricCell(v.winnerReport, "decode_ms_per_token_p50")} | ${d(searchPart?.cost)} |`,
    );
  }
  out.push(...ruleRows(v.currentReport, v.winnerReport, searchPart));
  out.push(`| Verdict | ${v.current.verdict.toUpperCase()} | ${v.winner.verdict.toUpperCase()} | ${searchPart ? searchPart.verdict.toUpperCase() : "–"} |`);
  out.push("");
  const scores = r.best
    ? `search part: ${r.best.verdict.toUpperCase()} (${costText(r.best.cost, r.objective)}), holdout part: ${v.winner.verdict.toUpperCase()}`
    : "";
  out.push(`Scores of the suggested recipe — ${escapeMarkdown(scores)}. ${escapeMarkdown(r.split.note)}.`, "");
  if (r.patch && r.patch.diff) {
    out.push(
      `<details open><summary>Patch for <code>${escapeMarkdown(r.patch.file)}</code> (not committed; the matching lockfile is in the artifact)</summary>`,
      "",
    );
    const fence = r.patch.diff.includes("```") ? "````" : "```";
    out.push(`${fence}diff`, r.patch.diff.trimEnd(), fence, "", "</details>");
  } else {
    out.push("The current recipe is already the cheapest passing one found: no change to suggest.");
  }
  out.push("", `<sub>${escapeMarkdown(stats)}${r.stoppedEarly ? `; ${escapeMarkdown(r.stoppedEarly)}` : ""}</sub>`);
  for (const n of r.notes) out.push("", `<sub>note: ${escapeMarkdown(singleLine(n))}</sub>`);
  return out.join("\n") + "\n";
}

function recipeLabel(report: Report): string {
  const r = report.recipe;
  const base = `${r.preset ? `${r.preset}: ` : ""}${r.format} b${r.block_size} ${r.algorithm}`;
  return r.mixed ? `${base}, mixed ${r.mixed.target_bpw} bpw` : r.overrides.length ? `${base}, ${r.overrides.length} overrides` : base;
}

/** Plain text for the terminal. */
export function renderSearchTerminal(r: SearchResult): string {
  const rows = r.evaluations.map((e, i) => [
    String(i + 1),
    singleLine(e.candidate.label),
    e.verdict.toUpperCase(),
    costText(e.cost, r.objective),
    singleLine(e.failures[0] ?? ""),
  ]);
  const header = ["#", "Candidate", "Verdict", OBJECTIVE_LABEL[r.objective], "First failure"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => Math.min(x[i]!.length, 90))));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.slice(0, 90).padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line), ""];
  out.push(`holdout: ${r.split.note}`);
  if (r.stoppedEarly) out.push(`search ${r.stoppedEarly}`);
  for (const n of r.notes) out.push(`note: ${singleLine(n)}`);
  if (r.verification) {
    const v = r.verification;
    out.push(
      `holdout verification: suggested ${v.winner.candidate.label} ${v.winner.verdict.toUpperCase()} (${costText(v.winner.cost, r.objective)}), current ${v.current.verdict.toUpperCase()} (${costText(v.current.cost, r.objective)})`,
    );
  }
  if (r.patch?.diff) out.push("", r.patch.diff.trimEnd());
  out.push("", `${r.verdict === "pass" ? "Suggested" : "No suggestion"}: ${singleLine(r.message)}`);
  return out.join("\n");
}
