// The action: read inputs, run the gate, write the job summary and outputs; the one top-level catch.
import { appendFile } from "node:fs/promises";
import * as core from "@actions/core";
import { actionsArtifactUploader, artifactClient, type ArtifactClient, type ArtifactUploader } from "../artifact/index.js";
import { actionsCacheClient } from "../cache/actions.js";
import type { WorkCache } from "../cache/index.js";
import { clearStaleOutputs, ConfigError, loadConfig, type Config } from "../config/load.js";
import { fsReason, UserError } from "../errors.js";
import { isPrivilegedEvent, readGithubContext, type GithubContext } from "../github/context.js";
import type { GateRun, GateRunOptions } from "../pipeline.js";
import { runGate } from "../pipeline.js";
import { loadKernelQuantizer } from "../quantize/kernels.js";
import { CiRun, type CiDeps, type CiOutcome } from "./ci.js";
import { escapeHtml, escapeMarkdown, singleLine } from "../util/escape.js";
import { INPUTS, OUTPUTS, readInputs, type ActionInputs } from "./io.js";
import { metricOutputs } from "./outputs.js";
import { resolveOrt } from "./ort-install.js";
import { applyRelease } from "./release.js";
import { evaluateJob, mergeRun, parseShard, quantizeJob, type ShardJob } from "./shards.js";
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

/** Where to report bugs: an internal error says it is one and how to report it. */
export const ISSUES_URL = "https://github.com/quantgate/quantgate/issues";

/** What the failure message says, and whether it is ours (a bug) rather than the user's input. */
export function describeFailure(err: unknown): { message: string; internal: boolean } {
  if (err instanceof UserError) return { message: err.message, internal: false };
  const e = err as Error;
  return {
    message:
      `QuantGate internal error (the gate fails closed): ${e?.name ?? "Error"}: ${e?.message ?? String(err)}\n` +
      `This is a bug in QuantGate, not in your model or config: please report it at ${ISSUES_URL} with this log (re-run with debug logging for the stack trace).`,
    internal: true,
  };
}

/** The job summary of a run that could not finish: what failed, as inert text. */
export function failureSummary(step: string, message: string): string {
  return ["## QuantGate: ❌ fail", "", `The gate could not run: it failed while ${escapeMarkdown(step)}.`, "", `<pre>${escapeHtml(message)}</pre>`, ""].join(
    "\n",
  );
}

/**
 * Appends to the job summary. @actions/core refuses a summary file that does not exist yet; then the file is
 * created directly. A runner where neither works is an error that names the file.
 */
async function writeJobSummary(body: string): Promise<void> {
  const file = process.env.GITHUB_STEP_SUMMARY;
  try {
    await core.summary.addRaw(body).write();
    return;
  } catch (err) {
    core.summary.emptyBuffer();
    if (file) {
      try {
        await appendFile(file, body.endsWith("\n") ? body : `${body}\n`);
        core.warning(`the job summary file ${file} did not exist; QuantGate created it`);
        return;
      } catch (appendErr) {
        throw new UserError(`cannot write the job summary ${file}: ${fsReason(appendErr)}`);
      }
    }
    throw new UserError(`cannot write the job summary (GITHUB_STEP_SUMMARY is not set): ${(err as Error).message}`);
  }
}

/** Refuses config-defined code on events whose token can write to the repository, unless allowed. */
function checkEventPolicy(ctx: GithubContext, config: Config, allowPrCode: boolean): void {
  if (ctx.eventName === "pull_request_target") {
    core.warning(
      "QuantGate runs on pull_request_target: the token can write to this repository. Check out and gate only trusted code, " +
        'and never run code from the pull request\'s tree (see docs/ci.md, "Pull requests from forks").',
    );
  }
  const ev = config.evaluation;
  if (isPrivilegedEvent(ctx) && ev.task === "fidelity" && ev.metric && !allowPrCode) {
    const line = config.lines["evaluation.metric.module"] ?? config.lines["evaluation.metric"];
    throw new UserError(
      `${config.paths.file}${line ? `:${line}` : ""} evaluation.metric.module: refusing to run "${ev.metric.module}" on a ${ctx.eventName} event, ` +
        `whose token can write to the repository while the module may come from a pull request. Set the input allow-pr-code: true only if the checked-out tree is trusted.`,
      config.paths.file,
      line,
    );
  }
}

function artifactUploaderOf(client: ArtifactClient): ArtifactUploader {
  return { upload: (name, files, root, retentionDays) => client.uploadArtifact(name, files, root, retentionDays ? { retentionDays } : {}) };
}

/** `deps` replaces the artifact, cache and GitHub clients (tests); the runner calls run() without it. */
export async function run(deps: Partial<CiDeps> & { readonly artifacts?: ArtifactClient } = {}): Promise<void> {
  let step = "reading the action inputs";
  let inputs: ActionInputs | undefined;
  const workspace = process.env.GITHUB_WORKSPACE || process.cwd();
  try {
    inputs = readInputs();
    step = "reading the GitHub event (GITHUB_EVENT_PATH)";
    const ctx = readGithubContext();
    step = `loading the config ${inputs.configPath}`;
    const loaded = await loadConfig(inputs.configPath, inputs.overrides, { workspace, forbidOutsideReads: true });
    if (loaded.allow_outside_workspace) core.warning("allow_outside_workspace is honoured by the CLI only: the action reads nothing outside GITHUB_WORKSPACE");
    if (inputs.ci.mode === "release" && !loaded.release) core.warning("mode is release but the config has no release: block; the normal limits apply");
    const { config, origins } = inputs.ci.mode === "release" ? applyRelease(loaded) : { config: loaded, origins: new Map<string, string>() };
    checkEventPolicy(ctx, config, inputs.ci.allowPrCode);
    const ci = new CiRun(
      ctx,
      config,
      inputs.ci,
      {
        log: { info: (m) => core.info(m), warning: (m) => core.warning(m) },
        // An injected artifact client (tests) also receives the run's own artifact.
        uploader: deps.artifacts ? artifactUploaderOf(deps.artifacts) : actionsArtifactUploader,
        cacheClient: actionsCacheClient,
        ...deps,
      },
      origins,
    );
    step = "restoring the work cache";
    await ci.restoreWorkCache();
    step = "loading ONNX Runtime";
    const ort = await resolveOrt(inputs.onnxruntimePath);
    core.info(`ONNX Runtime ${ort.loaded.version} (${ort.loaded.source})`);
    step = "loading the kernels";
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
    const shardMode = inputs.ci.shardMode;
    const job: ShardJob = {
      config,
      options,
      client: deps.artifacts ?? artifactClient(),
      id: ci.id,
      log: (m) => core.info(m),
      retentionDays: inputs.ci.artifactRetentionDays,
    };
    if (shardMode === "quantize") {
      const q = await quantizeJob(job);
      core.setOutput(OUTPUTS.modelPath, q.run.quantizedModelPath);
      core.setOutput(OUTPUTS.modelSha256, q.manifest.quantizedModel.sha256);
      if (q.artifactId !== undefined) core.setOutput(OUTPUTS.artifactId, String(q.artifactId));
      await core.summary
        .addRaw(
          `QuantGate: quantized \`${q.manifest.quantizedModel.file}\` (sha256 \`${q.manifest.quantizedModel.sha256.slice(0, 12)}\`) for sharded evaluation.\n`,
        )
        .write();
      return;
    }
    if (shardMode === "evaluate") {
      const shard = parseShard(INPUTS.shard, inputs.ci.shard);
      const e = await evaluateJob(job, shard);
      core.setOutput(OUTPUTS.modelSha256, e.result.quantizedSha256);
      const n = e.evaluation?.samples.evaluated ?? 0;
      await core.summary.addRaw(`QuantGate: shard ${shard.index}/${shard.count} evaluated ${n} samples; the merge job gates the run.\n`).write();
      return;
    }
    step = inputs.ci.mode === "search" ? "searching for the cheapest passing recipe" : "running the gate";
    const search = inputs.ci.mode === "search" ? await runSearch(config, { ...options, log: (m) => core.info(m) }) : undefined;
    const gateRun = search ? search.currentRun : shardMode === "merge" ? await mergeRun(job, inputs.ci.shards ?? 1) : await runGate(config, options);
    step = "writing the report and the CI steps (comparison, artifact, history, comment)";
    const outcome = await ci.finish(gateRun, search ? { markdown: renderSuggestion(search), files: searchFiles(search) } : undefined);
    step = "writing the job summary";
    await writeJobSummary(outcome.body);
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
    await fail(err, step, inputs, workspace);
  }
}

/** Any failure: verdict fail, no stale outputs, an annotation per config issue, and a job summary saying what failed. */
async function fail(err: unknown, step: string, inputs: ActionInputs | undefined, workspace: string): Promise<void> {
  const { message, internal } = describeFailure(err);
  try {
    core.setOutput(OUTPUTS.verdict, "fail");
  } catch (outputErr) {
    // GITHUB_OUTPUT missing: the failed step still says why.
    core.error(`cannot set the verdict output: ${(outputErr as Error).message}`);
  }
  if (internal) core.debug((err as Error)?.stack ?? String(err));
  if (err instanceof ConfigError) {
    for (const issue of err.issues)
      core.error(singleLine(`${issue.path || "(root)"}: ${issue.message}`), { title: "QuantGate config", file: err.file, startLine: issue.line });
  }
  if (inputs) await clearStaleOutputs(inputs.configPath, inputs.overrides, workspace);
  if (step !== "writing the job summary") {
    try {
      await writeJobSummary(failureSummary(step, message));
    } catch (summaryErr) {
      // Nowhere to write it: the log and the failed step still say what went wrong.
      core.error((summaryErr as Error).message);
    }
  }
  core.setFailed(message);
}
