// The local CLI: `quantgate run -c quantgate.yml` runs the same pipeline as the action and prints the verdict.
import { copyFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { cacheSummaryLine, WORK_CACHE_DIR, WorkCache } from "./cache/index.js";
import { clearStaleOutputs, loadConfig, type ConfigOverrides } from "./config/load.js";
import { UserError } from "./errors.js";
import { fmt, type RuleResult, type Unit } from "./gate/index.js";
import { runGate, type StageName } from "./pipeline.js";
import type { Kernels } from "./kernels/index.js";
import { loadKernelQuantizer } from "./quantize/kernels.js";
import { metricRows, samplesText } from "./report/markdown.js";
import type { Report } from "./report/types.js";
import { writeReport } from "./report/write.js";
import { loadOrt, loadOrtFrom } from "./runtime/ort.js";
import { singleLine } from "./util/escape.js";
import { runSearch } from "./search/index.js";
import { renderSearchTerminal } from "./search/markdown.js";
import { TOOL_VERSION } from "./version.js";

const USAGE = `quantgate ${TOOL_VERSION}

Usage: quantgate run [-c quantgate.yml] [options]
       quantgate search [-c quantgate.yml] [--cache] [--threads <n>] [--output-dir <dir>]
         find the cheapest recipe that passes every gate rule (config key search:), verified on a
         holdout part of the evaluation data; writes the quantgate.yml patch and lockfile under
         <output_dir>/search (nothing is changed in place); exit 0 when a recipe is suggested

Options:
  -c, --config <file>       config file (default quantgate.yml)
      --model <file>        override model
      --format <f>          override recipe.format (int4, int8, int2)
      --block-size <n>      override recipe.block_size
      --symmetric <bool>    override recipe.symmetric
      --algorithm <a>       override recipe.algorithm (rtn, mse)
      --threads <n>         override measure.threads
      --output-dir <dir>    override output_dir
      --preset <name>       override recipe.preset (int8, int4-rtn, int4-awq, int4-gptq, int3-quantx,
                            nf4, mxfp4, mixed-3.5bpw, lowrank-int3)
      --update-lock         write the precision lockfile (quantgate.lock.json) beside the config
      --cache               reuse unchanged work (quantized model, evaluation) from .quantgate/cache
                            beside the config; latency and memory are always measured again
      --onnxruntime-path <dir>  load onnxruntime-node from this folder
  -h, --help

Exit status: 0 pass, 1 gate failed, 2 bad input or usage.`;

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function renderTerminal(report: Report): string {
  const show = (v: number | undefined, unit: Unit): string => (v === undefined || !Number.isFinite(v) ? "-" : fmt(v, unit));
  const limitOf = (r: RuleResult): string => `${r.direction === "max" ? "<=" : ">="} ${r.limit.fail !== undefined ? fmt(r.limit.fail, r.unit) : "-"}`;
  const rows = metricRows(report).map(({ record, rules, status }) => [
    singleLine(record.label),
    show(record.float, record.unit),
    show(record.quantized, record.unit),
    rules.map(limitOf).join(", "),
    status === "fail" ? "FAIL" : (status ?? ""),
  ]);
  const header = ["Metric", "Float", "Quantized", "Limit", "Status"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => pad(c, widths[i]!, i === 1 || i === 2)).join("  ");
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)];
  const samples = samplesText(report.evaluation?.samples);
  if (samples) out.push("", samples);
  // Names from models and configs can carry newlines and terminal escape sequences: one inert line each.
  for (const e of report.gate.errors) out.push(`ERROR ${singleLine(e)}`);
  for (const r of report.gate.rules.filter((x) => x.status !== "pass")) out.push(`${r.status.toUpperCase()} ${singleLine(r.message)}`);
  for (const w of report.warnings) out.push(`warning: ${singleLine(w)}`);
  out.push("");
  out.push(`Verdict: ${report.verdict.toUpperCase()}`);
  return out.join("\n");
}

export const ISSUES_URL = "https://github.com/quantgate/quantgate/issues";

/** One line on the kernels: which backend runs, and when the native addon is missing, how to build it. */
export function kernelLine(kernels: Pick<Kernels, "backend" | "isa" | "fallbackReasons">): string {
  if (kernels.backend === "native") return `kernels: native (${kernels.isa})`;
  const native = kernels.fallbackReasons.find((r) => r.startsWith("native:"));
  if (!native || native.startsWith("native: skipped")) return `kernels: ${kernels.backend} (${kernels.isa})`;
  if (native.startsWith("native: no addon")) return `native kernels not built; using ${kernels.backend} (npm run build:kernels)`;
  return `native kernels did not load (${singleLine(native.slice("native: ".length))}); using ${kernels.backend}`;
}

/** The message for a failure: bad input names itself; anything else is a bug and says how to report it. */
export function cliErrorMessage(err: unknown, debug = process.env.QUANTGATE_DEBUG === "1"): string {
  if (err instanceof UserError) return `error: ${err.message}`;
  const e = err as Error;
  const detail = debug && e?.stack ? e.stack : `${e?.name ?? "Error"}: ${e?.message ?? String(err)}`;
  return (
    `internal error (the gate fails closed): ${detail}\n` +
    `This is a bug in QuantGate, not in your model or config: please report it at ${ISSUES_URL} with the command and this message` +
    (debug ? "." : " (QUANTGATE_DEBUG=1 adds the stack trace).")
  );
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c", default: "quantgate.yml" },
        model: { type: "string" },
        format: { type: "string" },
        "block-size": { type: "string" },
        symmetric: { type: "string" },
        algorithm: { type: "string" },
        threads: { type: "string" },
        "output-dir": { type: "string" },
        "onnxruntime-path": { type: "string" },
        preset: { type: "string" },
        "update-lock": { type: "boolean" },
        cache: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || (positionals[0] !== "run" && positionals[0] !== "search")) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const overrides: ConfigOverrides = {
    model: values.model,
    "recipe.preset": values.preset,
    "recipe.format": values.format,
    "recipe.block_size": values["block-size"],
    "recipe.symmetric": values.symmetric,
    "recipe.algorithm": values.algorithm,
    "measure.threads": values.threads,
    output_dir: values["output-dir"],
  };
  try {
    const config = await loadConfig(values.config, overrides);
    const ortDir = values["onnxruntime-path"];
    const ort = ortDir ? loadOrtFrom(ortDir, `--onnxruntime-path ${ortDir}`) : await loadOrt();
    const quantizer = await loadKernelQuantizer(() => undefined);
    process.stderr.write(`${kernelLine(quantizer.kernels)}\n`);
    const stageNames: StageName[] = ["load", "data", "calibrate", "quantize", "emit", "evaluate", "measure", "gate"];
    const tty = process.stderr.isTTY;
    const cache = values.cache ? new WorkCache(path.join(config.baseDir, WORK_CACHE_DIR)) : undefined;
    if (positionals[0] === "search") {
      const result = await runSearch(config, { ort, cache, ortDir, quantizer, log: (m) => process.stderr.write(`${m}\n`) });
      process.stdout.write(`\n${renderSearchTerminal(result)}\n\nSearch summary: ${path.join(result.outputDir, "search.json")}\n`);
      if (result.patch?.diff) process.stdout.write(`Patch: ${result.patch.patchPath}\n${result.lockfilePath ? `Lockfile: ${result.lockfilePath}\n` : ""}`);
      return result.verdict === "pass" ? 0 : 1;
    }
    const run = await runGate(config, {
      ort,
      cache,
      ortDir,
      quantizer,
      progress: {
        stageStart: (stage, detail) =>
          process.stderr.write(`[${stageNames.indexOf(stage) + 1}/${stageNames.length}] ${stage}${detail ? ` (${detail})` : ""} ...${tty ? "" : "\n"}`),
        stageEnd: (stage, ms, error) =>
          process.stderr.write(`${tty ? "" : `    ${stage}`} ${error ? `FAILED: ${singleLine(error)}` : "done"} in ${(ms / 1000).toFixed(1)}s\n`),
      },
    });
    const written = await writeReport(run);
    if (values["update-lock"] && run.report.lockfile) {
      await copyFile(run.report.lockfile.path, run.report.lockfile.committed);
      process.stderr.write(`lockfile written: ${run.report.lockfile.committed}\n`);
    }
    process.stdout.write(`\n${renderTerminal(run.report)}\n`);
    if (cache) process.stdout.write(`${cacheSummaryLine(cache.summary())}\n`);
    process.stdout.write(
      `\nReport: ${written.reportPath}\nSummary: ${written.summaryPath}\n${run.quantizedModelPath ? `Quantized model: ${run.quantizedModelPath}\n` : ""}`,
    );
    return run.report.verdict === "pass" ? 0 : 1;
  } catch (err) {
    // No stale "pass" report may survive a run that failed before writing its own.
    await clearStaleOutputs(values.config, overrides);
    process.stderr.write(`${cliErrorMessage(err)}\n`);
    return err instanceof UserError ? 2 : 1;
  }
}
