// The action: read inputs, run the gate, write the job summary and outputs; the one top-level catch.
import * as core from "@actions/core";
import { actionsArtifactUploader } from "../artifact/index.js";
import { actionsCacheClient } from "../cache/actions.js";
import type { WorkCache } from "../cache/index.js";
import { ConfigError, loadConfig } from "../config/load.js";
import { UserError } from "../errors.js";
import { readGithubContext } from "../github/context.js";
import type { GateRun, GateRunOptions } from "../pipeline.js";
import { runGate } from "../pipeline.js";
import { loadKernelQuantizer } from "../quantize/kernels.js";
import { CiRun, type CiDeps, type CiOutcome } from "./ci.js";
import { OUTPUTS, readInputs } from "./io.js";
import { metricOutputs } from "./outputs.js";
import { resolveOrt } from "./ort-install.js";
import { applyRelease } from "./release.js";
import { runSearch, searchFiles } from "../search/index.js";
import { renderSuggestion } from "../search/markdown.js";

function setOutputs(run: GateRun, outcome: CiOutcome): void {
  const r = outcome.report;
  const { reportPath, summaryPath } = outcome;
  const set = (name: string, value: number | string | undefined): void => {
    if (value !== undefined && value !== "") core.setOutput(name, typeof value === "number" ? String(Number(value.toPrecision(6))) : value);
  };
  set(OUTPUTS.verdict, r.verdict);
  set(OUTPUTS.reportPath, reportPath);
  set(OUTPUTS.summaryPath, summaryPath);
  set(OUTPUTS.modelPath, run.quantizedModelPath);
  for (const [name, value] of Object.entries(metricOutputs(r.metrics ?? []))) set(name, value);
  set(OUTPUTS.commentUrl, outcome.comment?.url);
  set(OUTPUTS.artifactId, outcome.artifact?.id);
  set(OUTPUTS.artifactUrl, outcome.artifact?.url);
  set(OUTPUTS.baseCommit, outcome.baseCommit);
  set(OUTPUTS.historyLocation, outcome.historyLocation);
  set(OUTPUTS.dashboardPath, outcome.dashboardPath);
  set(OUTPUTS.releaseRecordPath, outcome.releaseRecordPath);
  set(OUTPUTS.cacheHits, outcome.cacheHits.length > 0 ? outcome.cacheHits.join(",") : undefined);
}

/** `deps` replaces the artifact, cache and GitHub clients (tests); the runner calls run() without it. */
export async function run(deps: Partial<CiDeps> = {}): Promise<void> {
  try {
    const inputs = readInputs();
    const loaded = await loadConfig(inputs.configPath, inputs.overrides);
    if (inputs.ci.mode === "release" && !loaded.release) core.warning("mode is release but the config has no release: block; the normal limits apply");
    const { config, origins } = inputs.ci.mode === "release" ? applyRelease(loaded) : { config: loaded, origins: new Map<string, string>() };
    const ci = new CiRun(
      readGithubContext(),
      config,
      inputs.ci,
      { log: { info: (m) => core.info(m), warning: (m) => core.warning(m) }, uploader: actionsArtifactUploader, cacheClient: actionsCacheClient, ...deps },
      origins,
    );
    await ci.restoreWorkCache();
    const ort = await resolveOrt(inputs.onnxruntimePath);
    core.info(`ONNX Runtime ${ort.loaded.version} (${ort.loaded.source})`);
    const quantizer = await loadKernelQuantizer((m) => core.info(m));
    // `cache` is the work cache the pipeline restores unchanged work from (see src/cache/index.ts).
    const options: GateRunOptions & { readonly cache?: WorkCache } = {
      ort: ort.loaded,
      ortDir: ort.dir,
      quantizer,
      cache: ci.workCache,
      progress: {
        stageStart: (stage, detail) => core.info(`▶ ${stage}${detail ? `: ${detail}` : ""}`),
        stageEnd: (stage, ms, error) =>
          error ? core.error(`${stage} failed after ${(ms / 1000).toFixed(1)}s: ${error}`) : core.info(`✓ ${stage} ${(ms / 1000).toFixed(1)}s`),
      },
    };
    const search = inputs.ci.mode === "search" ? await runSearch(config, { ...options, log: (m) => core.info(m) }) : undefined;
    const gateRun = search ? search.currentRun : await runGate(config, options);
    const outcome = await ci.finish(gateRun, search ? { markdown: renderSuggestion(search), files: searchFiles(search) } : undefined);
    await core.summary.addRaw(outcome.body).write();
    setOutputs(gateRun, outcome);
    for (const w of outcome.report.warnings) core.warning(w);
    for (const a of outcome.annotations) {
      const props = { title: a.title, file: a.file, startLine: a.line };
      if (a.level === "error") core.error(a.message, props);
      else core.warning(a.message, props);
    }
    if (search?.verdict === "fail") core.setFailed(`QuantGate search: ${search.message}`);
    else if (outcome.report.verdict === "fail") {
      const failed = outcome.report.gate.rules.filter((r) => r.status === "fail");
      const reasons = [...outcome.report.gate.errors, ...failed.map((r) => r.message)];
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
