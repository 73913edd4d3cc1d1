// The action: read inputs, run the gate, write the job summary and outputs; the one top-level catch.
import * as core from "@actions/core";
import { ConfigError, loadConfig } from "../config/load.js";
import { UserError } from "../errors.js";
import type { GateRun } from "../pipeline.js";
import { runGate } from "../pipeline.js";
import { writeReport } from "../report/write.js";
import { loadKernelQuantizer } from "../quantize/kernels.js";
import { OUTPUTS, readInputs } from "./io.js";
import { resolveOrt } from "./ort-install.js";

function setOutputs(run: GateRun, reportPath: string, summaryPath: string): void {
  const r = run.report;
  const e = r.evaluation;
  const set = (name: string, value: number | string | undefined): void => {
    if (value !== undefined && value !== "") core.setOutput(name, typeof value === "number" ? String(Number(value.toPrecision(6))) : value);
  };
  set(OUTPUTS.verdict, r.verdict);
  set(OUTPUTS.reportPath, reportPath);
  set(OUTPUTS.summaryPath, summaryPath);
  set(OUTPUTS.modelPath, run.quantizedModelPath);
  if (e?.task === "language-modeling") {
    set(OUTPUTS.perplexityFloat, e.perplexityFloat);
    set(OUTPUTS.perplexityQuantized, e.perplexityQuantized);
  } else if (e?.task === "classification") {
    set(OUTPUTS.accuracyFloat, e.accuracyFloat);
    set(OUTPUTS.accuracyQuantized, e.accuracyQuantized);
  }
  set(OUTPUTS.klMean, e?.kl.mean);
  set(OUTPUTS.top1Agreement, e?.top1Agreement);
  set(OUTPUTS.sizeBytes, r.quantized?.sizeBytes);
  set(OUTPUTS.bitsPerWeight, r.storage?.bitsPerWeight);
  set(OUTPUTS.latencyP50Ms, r.quantized?.run?.latency.p50Ms);
  set(OUTPUTS.peakMemoryBytes, r.quantized?.run?.peakRssBytes);
}

export async function run(): Promise<void> {
  try {
    const inputs = readInputs();
    const config = await loadConfig(inputs.configPath, inputs.overrides);
    const ort = await resolveOrt(inputs.onnxruntimePath);
    core.info(`ONNX Runtime ${ort.loaded.version} (${ort.loaded.source})`);
    const quantizer = await loadKernelQuantizer((m) => core.info(m));
    const gateRun = await runGate(config, {
      ort: ort.loaded,
      ortDir: ort.dir,
      quantizer,
      progress: {
        stageStart: (stage, detail) => core.info(`▶ ${stage}${detail ? `: ${detail}` : ""}`),
        stageEnd: (stage, ms, error) =>
          error ? core.error(`${stage} failed after ${(ms / 1000).toFixed(1)}s: ${error}`) : core.info(`✓ ${stage} ${(ms / 1000).toFixed(1)}s`),
      },
    });
    const written = await writeReport(gateRun);
    await core.summary.addRaw(written.markdown).write();
    setOutputs(gateRun, written.reportPath, written.summaryPath);
    for (const w of gateRun.report.warnings) core.warning(w);
    const failed = gateRun.report.gate.rules.filter((r) => r.status === "fail");
    for (const r of gateRun.report.gate.rules.filter((x) => x.status === "warn")) {
      core.warning(r.message, { title: `QuantGate ${r.rule}`, file: config.configPath, startLine: config.lines[`gate.${r.rule}`] });
    }
    for (const r of failed) {
      core.error(r.message, { title: `QuantGate ${r.rule}`, file: config.configPath, startLine: config.lines[`gate.${r.rule}`] });
    }
    if (gateRun.report.verdict === "fail") {
      const reasons = [...gateRun.report.gate.errors, ...failed.map((r) => r.message)];
      core.setFailed(`QuantGate failed: ${reasons.join("; ")}`);
    }
  } catch (err) {
    core.setOutput(OUTPUTS.verdict, "fail");
    if (err instanceof ConfigError) {
      for (const issue of err.issues)
        core.error(`${issue.path || "(root)"}: ${issue.message}`, { title: "QuantGate config", file: err.file, startLine: issue.line });
      core.setFailed(err.message);
    } else if (err instanceof UserError) {
      core.setFailed(err.message);
    } else {
      core.setFailed(`QuantGate internal error (the gate fails closed): ${(err as Error).stack ?? String(err)}`);
    }
  }
}
