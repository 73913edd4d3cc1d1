// The action: read inputs, run the gate, write the job summary and outputs; the one top-level catch.
import * as core from "@actions/core";
import { actionsArtifactUploader, artifactClient, type ArtifactClient, type ArtifactUploader } from "../artifact/index.js";
import { actionsCacheClient } from "../cache/actions.js";
import type { WorkCache } from "../cache/index.js";
import { ConfigError, loadConfig } from "../config/load.js";
import { UserError } from "../errors.js";
import { readGithubContext } from "../github/context.js";
import type { GateRun, GateRunOptions } from "../pipeline.js";
import { runGate } from "../pipeline.js";
import { loadKernelQuantizer } from "../quantize/kernels.js";
import { CiRun, type CiDeps, type CiOutcome } from "./ci.js";
import { INPUTS, OUTPUTS, readInputs } from "./io.js";
import { metricOutputs } from "./outputs.js";
import { resolveOrt } from "./ort-install.js";
import { applyRelease } from "./release.js";
import { evaluateJob, mergeRun, parseShard, quantizeJob, type ShardJob } from "./shards.js";

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

function artifactUploaderOf(client: ArtifactClient): ArtifactUploader {
  return { upload: (name, files, root, retentionDays) => client.uploadArtifact(name, files, root, retentionDays ? { retentionDays } : {}) };
}

/** `deps` replaces the artifact, cache and GitHub clients (tests); the runner calls run() without it. */
export async function run(deps: Partial<CiDeps> & { readonly artifacts?: ArtifactClient } = {}): Promise<void> {
  try {
    const inputs = readInputs();
    const loaded = await loadConfig(inputs.configPath, inputs.overrides);
    if (inputs.ci.mode === "release" && !loaded.release) core.warning("mode is release but the config has no release: block; the normal limits apply");
    const { config, origins } = inputs.ci.mode === "release" ? applyRelease(loaded) : { config: loaded, origins: new Map<string, string>() };
    const ci = new CiRun(
      readGithubContext(),
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
    const gateRun = shardMode === "merge" ? await mergeRun(job, inputs.ci.shards ?? 1) : await runGate(config, options);
    const outcome = await ci.finish(gateRun);
    await core.summary.addRaw(outcome.body).write();
    setOutputs(gateRun, outcome);
    for (const w of outcome.report.warnings) core.warning(w);
    for (const a of outcome.annotations) {
      const props = { title: a.title, file: a.file, startLine: a.line };
      if (a.level === "error") core.error(a.message, props);
      else core.warning(a.message, props);
    }
    if (outcome.report.verdict === "fail") {
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
