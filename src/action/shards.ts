// Sharded evaluation over an Actions matrix: `mode: quantize` quantizes and emits once and uploads the model
// with a manifest; `mode: evaluate` (`shard: i/n`) downloads it, checks its hash and evaluates the i-th slice
// of the data into mergeable state; `mode: merge` downloads every shard's state, refuses a missing or failed
// shard or one that evaluated another model, merges them exactly and hands one evaluation to the gate.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { artifactName, type ArtifactClient } from "../artifact/index.js";
import { canonical } from "../cache/index.js";
import { resolvePath, type Config } from "../config/load.js";
import { sha256, type DataFileHash } from "../data/index.js";
import { UserError } from "../errors.js";
import { runGate, type GateRun, type GateRunOptions, type QuantizedOutcome } from "../pipeline.js";
import { LOCKFILE_NAME } from "../report/lockfile.js";
import type { StageRecord } from "../report/types.js";
import { createSession } from "../runtime/ort.js";
import { taskOf } from "../tasks/index.js";
import type { Task, TaskEvaluation, TaskPartial } from "../tasks/types.js";
import type { Evaluation } from "../config/schema.js";
import { TOOL_VERSION } from "../version.js";

export const SHARD_MODES = ["quantize", "evaluate", "merge"] as const;
export type ShardMode = (typeof SHARD_MODES)[number];

export const MANIFEST_FILE = "quantgate-shards.json";
export const SHARD_RESULT_FILE = "quantgate-shard-result.json";
const MANIFEST_SCHEMA = "quantgate-shards/1";
const RESULT_SCHEMA = "quantgate-shard-result/1";

export interface ShardSpec {
  /** 1-based, as written in the workflow (`shard: 2/4`). */
  readonly index: number;
  readonly count: number;
}

/** `i/n` with 1 <= i <= n; the message names the input and the value. */
export function parseShard(input: string, text: string | undefined): ShardSpec {
  const m = text === undefined ? null : /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UserError(`input "${input}": expected i/n (for example 2/4, from the matrix), got "${text ?? ""}"`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index < 1 || index > count) throw new UserError(`input "${input}": shard ${index}/${count} is out of range (1 <= i <= n)`);
  return { index, count };
}

/** What the quantize job hands the shard and merge jobs beside the quantized model and lockfile. */
export interface ShardManifest {
  readonly schema: typeof MANIFEST_SCHEMA;
  readonly tool: string;
  readonly config: string;
  readonly task: string;
  /** sha256 of the canonical evaluation settings: every job must read the same ones. */
  readonly evaluation: string;
  readonly recipe: string;
  /** The float model and data every shard evaluates against (each shard reads them from its checkout and checks these hashes). */
  readonly floatModel: { readonly path: string; readonly sha256: string };
  readonly data: readonly DataFileHash[];
  readonly quantizedModel: { readonly file: string; readonly sha256: string; readonly sizeBytes: number };
  readonly outcome: QuantizedOutcome;
  readonly stages: readonly StageRecord[];
}

/** One shard's upload: its mergeable state, or why it failed. */
export interface ShardResult {
  readonly schema: typeof RESULT_SCHEMA;
  readonly shard: ShardSpec;
  readonly quantizedSha256: string;
  readonly floatSha256: string;
  readonly evaluation: string;
  readonly data: readonly DataFileHash[];
  readonly status: "ok" | "error";
  readonly error?: string;
  readonly partial?: TaskPartial;
  readonly stages: readonly StageRecord[];
  readonly runtime: { readonly platform: string; readonly arch: string; readonly cpu: string };
}

export interface ShardJob {
  readonly config: Config;
  readonly options: GateRunOptions;
  readonly client: ArtifactClient;
  /** The config id (artifact names are derived from it, so every job of the run finds the others'). */
  readonly id: string;
  readonly log: (message: string) => void;
  readonly retentionDays?: number;
}

export const quantizedArtifactName = (id: string): string => artifactName(`${id}-quantized`);
export const shardArtifactName = (id: string, s: ShardSpec): string => artifactName(`${id}-shard-${s.index}-of-${s.count}`);

const evaluationHash = (config: Config): string => sha256(canonical(config.evaluation));
const short = (hash: string): string => hash.slice(0, 12);

type ShardableTask = Task<Evaluation> & Required<Pick<Task<Evaluation>, "slice" | "partial" | "merge">>;

function shardableTask(config: Config): ShardableTask {
  const task = taskOf(config.evaluation);
  if (!task.slice || !task.partial || !task.merge)
    throw new UserError(`evaluation.task "${config.evaluation.task}" cannot be sharded yet (no slice/partial/merge); use mode check`);
  return task as ShardableTask;
}

function stageErrors(run: GateRun): string[] {
  return run.report.gate.errors;
}

async function upload(job: ShardJob, name: string, root: string, files: string[]): Promise<number | undefined> {
  try {
    const r = await job.client.uploadArtifact(name, files, root, job.retentionDays ? { retentionDays: job.retentionDays } : {});
    job.log(`artifact ${name}: ${files.length} files uploaded`);
    return r.id;
  } catch (err) {
    // Later jobs need this artifact: a failed upload fails the job.
    throw new Error(`uploading artifact "${name}" failed: ${(err as Error).message}`);
  }
}

/** Downloads an artifact of this run into `dest`; undefined when there is none of that name. */
async function download(client: ArtifactClient, name: string, dest: string): Promise<boolean> {
  let id: number;
  try {
    id = (await client.getArtifact(name)).artifact.id;
  } catch (err) {
    if ((err as Error).name === "ArtifactNotFoundError" || /not found/i.test((err as Error).message)) return false;
    throw new Error(`looking up artifact "${name}" failed: ${(err as Error).message}`);
  }
  await mkdir(dest, { recursive: true });
  await client.downloadArtifact(id, { path: dest });
  return true;
}

async function fileHash(file: string): Promise<string> {
  return sha256(await readFile(file));
}

/**
 * Where a job downloads the quantize job's artifact: a folder of its own inside the output folder, which the
 * clearing of the previous run's outputs at the start of a run leaves alone (the run copies the model from it).
 */
export const ARTIFACT_DIR = path.join(".quantgate-shard", "quantized");

/** Downloads the quantize job's artifact into `dir` (emptied first) and checks the model against the manifest. */
async function fetchQuantized(job: ShardJob, dir: string): Promise<ShardManifest> {
  const name = quantizedArtifactName(job.id);
  await rm(dir, { recursive: true, force: true });
  if (!(await download(job.client, name, dir)))
    throw new UserError(`no artifact "${name}" in this run: the mode: quantize job must run first (needs: in the workflow) and succeed`);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as ShardManifest;
  if (manifest.schema !== MANIFEST_SCHEMA) throw new UserError(`${manifestPath}: not a QuantGate shard manifest (${String(manifest.schema)})`);
  if (manifest.tool !== TOOL_VERSION)
    throw new UserError(`${manifestPath}: written by QuantGate ${manifest.tool}, this job runs ${TOOL_VERSION}; use the same version in every job`);
  if (manifest.evaluation !== evaluationHash(job.config))
    throw new UserError(
      `${manifestPath}: the quantize job read other evaluation settings than this job (${job.config.configPath}); every job must use the same config`,
    );
  const modelPath = path.join(dir, manifest.quantizedModel.file);
  const actual = await fileHash(modelPath).catch(() => "missing");
  if (actual !== manifest.quantizedModel.sha256)
    throw new UserError(
      `quantized model ${manifest.quantizedModel.file} from artifact "${name}" has sha256 ${short(actual)}, the manifest says ${short(manifest.quantizedModel.sha256)}: refusing to evaluate another model`,
    );
  return manifest;
}

/** `mode: quantize`: calibrate, quantize and emit once; upload model, lockfile and manifest. */
export async function quantizeJob(job: ShardJob): Promise<{ run: GateRun; manifest: ShardManifest; artifactId?: number }> {
  const task = shardableTask(job.config);
  const run = await runGate(job.config, { ...job.options, until: "emit" });
  const errors = stageErrors(run);
  if (errors.length > 0 || !run.quantizedModelPath || !run.outcome)
    throw new UserError(`the quantize job failed: ${errors.join("; ") || "no quantized model"}`);
  const model = await readFile(run.quantizedModelPath);
  const manifest: ShardManifest = {
    schema: MANIFEST_SCHEMA,
    tool: TOOL_VERSION,
    config: job.id,
    task: task.name,
    evaluation: evaluationHash(job.config),
    recipe: run.report.hashes.recipe,
    floatModel: { path: job.config.reference_model ?? job.config.model, sha256: floatHash(run) },
    data: run.report.hashes.data,
    quantizedModel: { file: path.basename(run.quantizedModelPath), sha256: sha256(model), sizeBytes: model.length },
    outcome: run.outcome,
    stages: run.report.stages,
  };
  const manifestPath = path.join(run.outputDir, MANIFEST_FILE);
  await writeFile(manifestPath, JSON.stringify(manifest) + "\n");
  // A quantized model written with external data travels with its data file (absent otherwise: filtered below).
  const files = [run.quantizedModelPath, `${run.quantizedModelPath}.data`, manifestPath, path.join(run.outputDir, LOCKFILE_NAME)];
  const present = (
    await Promise.all(
      files.map((f) =>
        readFile(f).then(
          () => f,
          () => undefined,
        ),
      ),
    )
  ).filter((f): f is string => !!f);
  const artifactId = await upload(job, quantizedArtifactName(job.id), run.outputDir, present);
  return { run, manifest, artifactId };
}

/** The float baseline's hash as the shard read it (the reference model where the config names one). */
function floatHash(run: GateRun): string {
  return run.report.hashes.model;
}

/** `mode: evaluate`: the i-th slice of the data against the quantize job's model; uploads mergeable state (also on failure). */
export async function evaluateJob(job: ShardJob, shard: ShardSpec): Promise<{ result: ShardResult; evaluation?: TaskEvaluation }> {
  const task = shardableTask(job.config);
  const outputDir = resolvePath(job.config, job.config.output_dir);
  await mkdir(outputDir, { recursive: true });
  const artifactDir = path.join(outputDir, ARTIFACT_DIR);
  const manifest = await fetchQuantized(job, artifactDir);
  let partial: TaskPartial | undefined;
  const cfg = job.config.evaluation;
  const run = await runGate(job.config, {
    ...job.options,
    restored: manifest.outcome,
    restoredModel: path.join(artifactDir, manifest.quantizedModel.file),
    until: "evaluate",
    evaluate: async (data, models) => {
      const sliced = task.slice(data, shard.index - 1, shard.count);
      const threads = job.config.measure.threads;
      const { ort } = job.options.ort;
      const float = await createSession(ort, models.float, threads);
      const quantized = await createSession(ort, models.quantized, threads);
      try {
        partial = await task.partial(cfg, sliced, { ort, float, quantized, threads });
      } finally {
        await float.release();
        await quantized.release();
      }
      const own = partial;
      try {
        // This slice's own figures, for the job's log and summary; the gate reads only the merge job's.
        return task.merge(cfg, [own]);
      } catch (err) {
        // An empty slice (more shards than batches) has no figures of its own; its state still merges.
        return {
          task: task.name,
          metrics: [],
          samples: { evaluated: 0, total: 0 },
          ms: 0,
          warnings: [`shard ${shard.index}/${shard.count}: ${(err as Error).message}`],
        };
      }
    },
  });
  const errors = [...stageErrors(run)];
  // The model this shard evaluated: the copy at the run's quantized path.
  const quantizedSha256 = run.quantizedModelPath ? await fileHash(run.quantizedModelPath).catch(() => "missing") : "missing";
  if (floatHash(run) !== manifest.floatModel.sha256)
    errors.push(
      `the float model ${manifest.floatModel.path} has sha256 ${short(floatHash(run))} here, ${short(manifest.floatModel.sha256)} in the quantize job`,
    );
  if (canonical(run.report.hashes.data) !== canonical(manifest.data))
    errors.push(`the evaluation data differ from the quantize job's (${run.report.hashes.data.map((d) => `${d.path} ${short(d.sha256)}`).join(", ")})`);
  const result: ShardResult = {
    schema: RESULT_SCHEMA,
    shard,
    quantizedSha256,
    floatSha256: floatHash(run),
    evaluation: evaluationHash(job.config),
    data: run.report.hashes.data,
    status: errors.length === 0 && partial ? "ok" : "error",
    ...(errors.length > 0 || !partial ? { error: errors.join("; ") || "no evaluation" } : { partial }),
    stages: run.report.stages,
    runtime: { platform: process.platform, arch: process.arch, cpu: os.cpus()[0]?.model ?? "unknown" },
  };
  const dir = path.join(outputDir, "shard");
  await mkdir(dir, { recursive: true });
  const resultPath = path.join(dir, SHARD_RESULT_FILE);
  await writeFile(resultPath, JSON.stringify(result) + "\n");
  await upload(job, shardArtifactName(job.id, shard), dir, [resultPath]);
  if (result.status === "error") throw new UserError(`shard ${shard.index}/${shard.count} failed: ${result.error}`);
  return { result, evaluation: run.report.evaluation ?? undefined };
}

/** Reads every shard's result; any missing, failed or mismatched shard is named, all of them at once. */
export async function collectShards(job: ShardJob, manifest: ShardManifest, count: number, dir: string): Promise<TaskPartial[]> {
  const problems: string[] = [];
  const partials: TaskPartial[] = [];
  for (let index = 1; index <= count; index++) {
    const shard = { index, count };
    const label = `shard ${index}/${count}`;
    const name = shardArtifactName(job.id, shard);
    const dest = path.join(dir, String(index));
    await rm(dest, { recursive: true, force: true });
    if (!(await download(job.client, name, dest))) {
      problems.push(`${label}: no results (artifact "${name}" not found: its job failed before uploading or did not run)`);
      continue;
    }
    let result: ShardResult;
    try {
      result = JSON.parse(await readFile(path.join(dest, SHARD_RESULT_FILE), "utf8")) as ShardResult;
    } catch (err) {
      problems.push(`${label}: artifact "${name}" holds no readable ${SHARD_RESULT_FILE} (${(err as Error).message})`);
      continue;
    }
    if (result.schema !== RESULT_SCHEMA) problems.push(`${label}: not a QuantGate shard result (${String(result.schema)})`);
    else if (result.shard?.index !== index || result.shard?.count !== count)
      problems.push(`${label}: artifact "${name}" holds the results of shard ${result.shard?.index}/${result.shard?.count}`);
    else if (result.quantizedSha256 !== manifest.quantizedModel.sha256)
      problems.push(
        `${label} evaluated another quantized model (sha256 ${short(result.quantizedSha256)}, the quantize job's is ${short(manifest.quantizedModel.sha256)}): refusing to merge`,
      );
    else if (result.floatSha256 !== manifest.floatModel.sha256)
      problems.push(`${label} evaluated against another float model (sha256 ${short(result.floatSha256)})`);
    else if (result.evaluation !== manifest.evaluation) problems.push(`${label} read other evaluation settings than the quantize job`);
    else if (result.status !== "ok" || !result.partial) problems.push(`${label} failed: ${result.error ?? "no results"}`);
    else if (result.partial.task !== manifest.task) problems.push(`${label}: results of task ${result.partial.task}, expected ${manifest.task}`);
    else partials.push(result.partial);
  }
  if (problems.length > 0) throw new UserError(`merge refused: ${problems.join("; ")}`);
  return partials;
}

/** `mode: merge`: every shard's state merged into one evaluation, then measure, gate and report as one run. */
export async function mergeRun(job: ShardJob, count: number): Promise<GateRun> {
  const task = shardableTask(job.config);
  const outputDir = resolvePath(job.config, job.config.output_dir);
  await mkdir(outputDir, { recursive: true });
  const artifactDir = path.join(outputDir, ARTIFACT_DIR);
  const manifest = await fetchQuantized(job, artifactDir);
  const partials = await collectShards(job, manifest, count, path.join(outputDir, "shards"));
  const merged = task.merge(job.config.evaluation, partials);
  job.log(`merged ${count} shard(s): ${merged.samples.evaluated} samples`);
  const run = await runGate(job.config, {
    ...job.options,
    restored: manifest.outcome,
    restoredModel: path.join(artifactDir, manifest.quantizedModel.file),
    evaluate: () => Promise.resolve(merged),
  });
  // The quantize job's stage times stand in for the stages this job skipped.
  const fromQuantize = new Map(manifest.stages.map((s) => [s.stage, s]));
  const stages = run.report.stages.map((s) =>
    s.status === "skipped" && fromQuantize.get(s.stage)?.status === "ok" ? { ...fromQuantize.get(s.stage)!, note: "quantize job" } : s,
  );
  return { ...run, report: { ...run.report, stages } };
}
