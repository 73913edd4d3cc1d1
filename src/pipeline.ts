// One gate run: config -> load model -> calibrate -> quantize -> emit -> evaluate -> measure -> gate -> report.
// The action and the CLI only call runGate; every stage error is recorded and fails the gate.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { copyFile, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { calibrate, convPatchSpecOf, type ActivationStats, type CalibrationResult } from "./calibrate/index.js";
import { defaultGramBudget, planGramPassesFor, type GramPasses } from "./calibrate/passes.js";
import { pathResolver, prepareOutputDir, resolvePath, type Config } from "./config/load.js";
import { sha256, type ModelInputInfo } from "./data/index.js";
import { feedTypeOf, type Feeds } from "./data/tensors.js";
import { emitChecked, loadError } from "./emit/check.js";
import {
  findTiedEmbeddings,
  matMulNBitsActivationTypes,
  quantizeTiedEmbeddings,
  tiedHeadActivations,
  type TiedEmission,
  type TiedQuantization,
} from "./emit/tied.js";
import type { EmittedLayer } from "./emit/index.js";
import { lockExecution, pinsFromLockfile, resolveForms, type FormChoice } from "./emit/select.js";
import { chooseAccuracyLevel, judgeAccuracy, type QuantizedExecution } from "./emit/accuracy-level.js";
import { declaredDims } from "./data/records.js";
import { evaluateGate } from "./gate/index.js";
import { taskOf } from "./tasks/index.js";
import { measurementRecords } from "./tasks/measurements.js";
import type { MetricRecord, PhasedEvalContext, TaskData, TaskEvaluation } from "./tasks/types.js";
import { planLmInputs, type LmInputOverrides } from "./tasks/lm-inputs.js";
import { constantFeeds, dataInputs, type ConstantInputs } from "./tasks/common.js";
import { compareGenerations, DECODE_ROUNDS, decodeMetricRecords, measureDecode, measureDecodeSlowdown } from "./measure/decode.js";
import { latencyBasis } from "./measure/latency-rule.js";
import {
  INTERLEAVE_MEMORY_SHARE,
  measureModels,
  singleTokenFeeds,
  timeModels,
  slowerThanFloatWarning,
  summarizeStorage,
  type LatencyComparison,
  type ModelRunMeasurement,
  type StorageSummary,
} from "./measure/index.js";
import { externalDataFiles, loadModel, saveModelDetailed, valueInfoTensorType, type LoadedModel, type ModelProto } from "./onnx/model.js";
import { findWeights, type WeightDiscovery } from "./onnx/weights.js";
import { checkFiniteWeights, validateModel } from "./onnx/validate.js";
import { checkFeedShapes, declaredClasses, explainLmFailure } from "./data/checks.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "./quantize/blockwise.js";
import { isTable, planWeights, quantizeWeights, specFor, type BlockwiseQuantizer, type QuantizedWeight } from "./quantize/index.js";
import type { BlockwiseQuantized } from "./quantize/blockwise.js";
import { planMixedPrecision } from "./quantize/mixed-plan.js";
import { planQuantx } from "./quantize/quantx.js";
import { quantizeInPasses } from "./quantize/passes.js";
import { measureLayerKl } from "./quantize/sensitivity.js";
import { UserError } from "./errors.js";
import { collectGarbage } from "./util/gc.js";
import type { Kernels } from "./kernels/index.js";
import { benchmarkKernels, type BenchFormat, type KernelBenchResult } from "./kernels/bench.js";
import type { TableFormat } from "./kernels/index.js";
import type { IntBits } from "./quantize/blockwise.js";
import { isIntFormat } from "./config/schema.js";
import { canonical, workCacheKey, type WorkCache } from "./cache/index.js";
import { WorkReuse } from "./cache/reuse.js";
import type { QuantizedLayerReport, Report, StageRecord } from "./report/types.js";
import { buildLockfile, diffLockfiles, LOCKFILE_NAME, readLockfile, writeLockfile, type LayerChange, type Lockfile } from "./report/lockfile.js";
import { createSession, type LoadedOrt, type Session } from "./runtime/ort.js";
import { clearOutputs } from "./util/atomic.js";
import { REPORT_SCHEMA, TOOL_NAME, TOOL_VERSION } from "./version.js";
import type { WeightFormat } from "./config/schema.js";

/** Calibration rows that go into each Gram matrix (its cost is k^2 per row). */
const GRAM_ROWS = 2048;
/** Calibration batches each one-layer-quantized model runs to measure its KL (mixed.method kl). */
const SENSITIVITY_BATCHES = 2;

export type StageName = "load" | "data" | "calibrate" | "quantize" | "emit" | "evaluate" | "measure" | "gate";

export interface Progress {
  stageStart(stage: StageName, detail?: string): void;
  stageEnd(stage: StageName, ms: number, error?: string): void;
}

export interface GateRunOptions {
  readonly ort: LoadedOrt;
  readonly quantizer?: { readonly name: string; readonly quantize: BlockwiseQuantizer; readonly kernels?: Kernels };
  /** onnxruntime-node folder for the measuring child, when not the normal dependency. */
  readonly ortDir?: string;
  readonly progress?: Progress;
  /** Restores unchanged work (quantized model, evaluation) keyed by hashes of model, recipe, data, tool and runtime. */
  readonly cache?: WorkCache;
  /**
   * Calibration statistics and the float model's outputs on the evaluation data, kept apart from the recipe: a
   * search shares one across its runs so that each is computed once (src/cache/reuse.ts). Default: one per run,
   * over the work cache when there is one (kept for later runs with another recipe); none without a cache.
   */
  readonly reuse?: WorkReuse;
  /** Sharded runs (src/action/shards.ts): the quantize stages' outcome of an earlier job, its model already at the quantized path. */
  readonly restored?: QuantizedOutcome;
  /**
   * Sharded runs: the earlier job's quantized model, kept outside the outputs this run clears (the artifact
   * folder); copied to the quantized path once the previous run's outputs are gone. Required with `restored`.
   */
  readonly restoredModel?: string;
  /** Sharded runs: replaces the evaluate stage (a slice of the data, or the shards' merged results); never cached. */
  readonly evaluate?: (data: TaskData, models: { readonly float: string; readonly quantized: string }) => Promise<TaskEvaluation>;
  /** Sharded runs: stop after emit (quantize job) or evaluate (shard job); later stages are skipped. */
  readonly until?: "emit" | "evaluate";
  /** Bytes of Gram matrices alive at once; over it they are collected in passes (default: defaultGramBudget). */
  readonly gramBudgetBytes?: number;
}

/** What the calibrate, quantize and emit stages produce, and what the work cache keeps of it. */
export interface QuantizedOutcome {
  /** The load stage's skipped weights plus those that stayed float at emit (refused by ONNX Runtime). */
  readonly skipped?: WeightDiscovery["skipped"];
  readonly layerReports: QuantizedLayerReport[];
  readonly layers: EmittedLayer[];
  readonly forms: FormChoice[];
  /** The accuracy level and how forms were chosen (pinned or timed), for the report and the lockfile. */
  readonly execution?: QuantizedExecution;
  readonly quantizedSize: number;
  readonly warnings: string[];
  readonly calibration: Report["calibration"];
}

export interface GateRun {
  readonly report: Report;
  readonly outputDir: string;
  readonly reportPath: string;
  readonly quantizedModelPath: string | undefined;
  /** What the calibrate, quantize and emit stages produced (sharded runs carry it to later jobs). */
  readonly outcome?: QuantizedOutcome;
}

/** The model's graph inputs that data feeds (initializers excluded), with their element types and declared dims. */
export function modelInputs(model: LoadedModel): ModelInputInfo[] {
  const initializers = new Set(model.graph.initializer.map((t) => t.name));
  return model.graph.input
    .filter((i) => !initializers.has(i.name))
    .map((i) => {
      const t = valueInfoTensorType(i);
      const type = t ? feedTypeOf(t.elemType) : undefined;
      if (!type) throw new UserError(`${model.path}: model input "${i.name}" has an unsupported or undeclared element type`);
      return { name: i.name, type, rank: t?.rank, dims: declaredDims(i) };
    });
}

export async function runGate(config: Config, opts: GateRunOptions): Promise<GateRun> {
  const { ort } = opts.ort;
  const quantizer = opts.quantizer ?? {
    name: "js",
    quantize: (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(wT, n, k, spec),
  };
  const stages: StageRecord[] = [];
  const errors: string[] = [];
  const warnings: string[] = [];
  const outputDir = await prepareOutputDir(config);
  // The previous run's report, summary and model go first: a run that fails or is interrupted leaves none behind.
  await clearOutputs(outputDir, config.release ? [config.release.record] : []);

  async function stage<T>(name: StageName, detail: string, fn: () => Promise<T>): Promise<T | undefined> {
    // The previous stage's buffers go before this one allocates (src/util/gc.ts).
    collectGarbage();
    opts.progress?.stageStart(name, detail);
    const t0 = performance.now();
    try {
      const value = await fn();
      const ms = performance.now() - t0;
      stages.push({ stage: name, status: "ok", ms });
      opts.progress?.stageEnd(name, ms);
      return value;
    } catch (err) {
      const ms = performance.now() - t0;
      const message = (err as Error).message;
      stages.push({ stage: name, status: "error", ms, error: message });
      errors.push(`${name}: ${message}`);
      opts.progress?.stageEnd(name, ms, message);
      return undefined;
    }
  }
  const skip = (name: StageName, note: string): void => {
    stages.push({ stage: name, status: "skipped", ms: 0, note });
  };

  const modelPath = resolvePath(config, config.model, "model");
  const configText = await readFile(config.configPath);
  const recipeHash = sha256(canonical(config.recipe));

  // load model
  const loaded = await stage("load", modelPath, async () => {
    const model = await loadModel(modelPath);
    validateModel(model);
    const discovery = findWeights(model.graph, config.recipe);
    checkFiniteWeights(modelPath, discovery.weights);
    // A model with external data is hashed with its data files (streamed, never held).
    return { model, discovery, modelHash: await modelFileHash(modelPath, externalDataFiles(model.graph)) };
  });
  const model = loaded?.model;
  const discovery: WeightDiscovery = loaded?.discovery ?? { weights: [], skipped: [] };
  warnings.push(...(config.notices ?? []));
  // The float baseline: the model itself, or its float original when the model is already quantized.
  const floatModelPath = config.reference_model ? resolvePath(config, config.reference_model) : modelPath;
  const already = discovery.skipped.filter((s) => s.alreadyQuantizedBits !== undefined);
  // An already-quantized model with a float reference is evaluated as it is, against the reference.
  const asIs = loaded !== undefined && discovery.weights.length === 0 && already.length > 0 && config.reference_model !== undefined;
  if (loaded && discovery.weights.length === 0 && !asIs) {
    const hint =
      already.length > 0
        ? `; ${already.length} tensors are already quantized (${already.map((s) => `${s.name}: ${s.alreadyQuantizedBits}-bit`).join(", ")}): set reference_model to its float original to evaluate it as it is`
        : "";
    errors.push(
      `load: no quantizable weights found in ${config.model} (${discovery.skipped.length} skipped: ${discovery.skipped.map((s) => `${s.name || s.nodeName}: ${s.reason}`).join("; ")})${hint}`,
    );
  }

  // data
  const task = taskOf(config.evaluation);
  const data: TaskData | undefined = model
    ? await stage("data", config.evaluation.dataset, async () => {
        const inputs = modelInputs(model);
        const loadedData = await task.load(config.evaluation, {
          resolve: pathResolver(config),
          inputs,
          classesOf: (outputName) => declaredClasses(model.graph, outputName),
        });
        checkFeedShapes(loadedData.calibrationBatches, inputs, (i) => `calibration sample ${i}`);
        if (loadedData.measureFeeds) checkFeedShapes([loadedData.measureFeeds], inputs, () => `${config.evaluation.dataset}: sample 0`);
        return loadedData;
      })
    : undefined;

  const quantizedModelPath = path.join(outputDir, `${path.basename(modelPath, ".onnx")}.quantized.onnx`);
  const reuse = opts.reuse ?? (opts.cache ? new WorkReuse({ cache: opts.cache }) : undefined);
  const runtimeKey = { onnxruntime: opts.ort.version, platform: process.platform, arch: process.arch, kernels: quantizer.name, cpu: os.cpus()[0]?.model };
  const keyBase =
    loaded && data ? { model: loaded.modelHash, recipe: recipeHash, data: data.files, toolVersion: TOOL_VERSION, runtime: runtimeKey } : undefined;
  const quantKey = keyBase && workCacheKey({ ...keyBase, kind: "quantized", settings: { evaluation: config.evaluation, threads: config.measure.threads } });
  let outcome: QuantizedOutcome | undefined = opts.restored;
  if (outcome) {
    if (!opts.restoredModel) throw new Error("a restored quantize outcome needs the quantized model file it describes (restoredModel)");
    await copyFile(opts.restoredModel, quantizedModelPath);
    if (existsSync(`${opts.restoredModel}.data`)) await copyFile(`${opts.restoredModel}.data`, `${quantizedModelPath}.data`);
    for (const name of ["calibrate", "quantize", "emit"] as const) skip(name, "done by the quantize job");
  }
  if (opts.cache && quantKey && !outcome) {
    const hit = await opts.cache.restore(quantKey);
    if (hit && (await opts.cache.restoreFile(quantKey, "model.onnx", quantizedModelPath))) {
      // A quantized model written with external data has its data file in the entry too.
      await opts.cache.restoreFile(quantKey, "model.onnx.data", `${quantizedModelPath}.data`);
      outcome = hit.meta as QuantizedOutcome;
      for (const name of ["calibrate", "quantize", "emit"] as const) skip(name, "restored from the work cache");
    }
  }

  if (asIs && !outcome) {
    // Nothing to quantize: the model as given is the quantized model, and reference_model the float one.
    // With external data, written again so that its data file sits beside it under the quantized name.
    if (model!.externalTensors > 0) await saveModelDetailed(model!.proto, quantizedModelPath);
    else await copyFile(modelPath, quantizedModelPath);
    for (const name of ["calibrate", "quantize", "emit"] as const)
      skip(name, `already quantized (${already.length} tensors); evaluated against reference_model`);
    outcome = {
      skipped: discovery.skipped,
      layerReports: [],
      layers: [],
      forms: [],
      quantizedSize: model!.sizeBytes,
      warnings: [`${config.model} is already quantized: evaluated as it is against reference_model ${config.reference_model}`],
      calibration: null,
    };
  }

  /** Conv weights the recipe quantizes with GPTQ (none when the recipe does not resolve: the quantize stage says why). */
  function convGptqSites(): WeightDiscovery["weights"] {
    try {
      return planWeights(discovery.weights, config.recipe)
        .filter((p) => p.algorithm === "gptq" && p.site.opKind === "conv")
        .map((p) => p.site);
    } catch {
      return [];
    }
  }

  // calibrate
  let calibration: CalibrationResult | undefined;
  let calibrationFailed = false;
  /** Gram matrices over the budget: collected in passes by the quantize stage, each group then released. */
  let gramPasses: GramPasses | undefined;
  if (outcome) {
    // restored
  } else if (model && data && data.calibrationBatches.length > 0 && (discovery.weights.some((w) => w.kind === "product") || convGptqSites().length > 0)) {
    const r = config.recipe;
    const needsGram =
      r.algorithm === "gptq" || r.algorithm === "awq" || r.lowrank.rank > 0 || r.overrides.some((o) => o.algorithm === "gptq" || o.algorithm === "awq");
    // Activation statistics describe the K inputs of a product; Conv and Gather sites have none.
    const products = discovery.weights.filter((w) => w.kind === "product");
    const activations = products.map((w) => w.node.input[0]!);
    const gram = { names: new Set(needsGram ? activations : []), maxRows: GRAM_ROWS };
    // A product computes in its weight's consumer type: float16 models have float16 activations.
    const types = new Map(products.map((w) => [w.node.input[0]!, w.consumerType]));
    // GPTQ on a Conv reads the im2col rows of its input (one Hessian per group).
    const convs = convGptqSites().map((w) => ({ key: w.name, activation: w.node.input[0]!, spec: convPatchSpecOf(w.node, w.dims) }));
    for (const c of convs) types.set(c.activation, discovery.weights.find((w) => w.name === c.key)!.consumerType);
    // A tied embedding's LM head (kept float by the discovery, quantized once at emit) is calibrated like a product.
    if (r.tied_embedding === "quantize" && model.proto.graph) {
      for (const h of tiedHeadActivations(model.proto.graph)) {
        if (activations.includes(h.name)) continue;
        activations.push(h.name);
        if (needsGram) gram.names.add(h.name);
        types.set(h.name, h.dataType);
      }
    }
    // Calibration runs the float model with its activations exposed: a model ONNX Runtime refuses is named by its file.
    const named = (err: unknown): never => {
      const message = (err as Error).message;
      const where = /could not load (in-memory model|.*?quantgate-calibration-[0-9a-f-]+\.onnx):/;
      if (!where.test(message)) throw err;
      throw new UserError(`${modelPath}: ${message.replace(where, "could not load the float model (with activations exposed for calibration):")}`);
    };
    const calibrateOpts = { modelPath, expose: convs.map((c) => c.activation) };
    // Grams over the budget (src/calibrate/passes.ts) are collected in passes by the quantize stage, which needs
    // each weight's own statistics only (not mixed precision or quantx, which compare all layers first).
    const channels = new Map([
      ...products.map((w) => [w.node.input[0]!, w.k] as const),
      ...findTiedEmbeddings(model.graph).flatMap((t) => t.heads.map((h) => [h.node.input[0]!, t.hidden] as const)),
    ]);
    const budgetBytes = opts.gramBudgetBytes ?? defaultGramBudget(model.sizeBytes);
    const batches = data.calibrationBatches;
    const planned =
      r.mixed || r.quantx
        ? undefined
        : planGramPassesFor({
            ort,
            model: model.proto,
            activations,
            types,
            channels,
            gram,
            convs,
            batches,
            threads: config.measure.threads,
            modelPath,
            budgetBytes,
          });
    gramPasses = planned && { ...planned, run: (group) => planned.run(group).catch(named) };
    const compute = (names: ReadonlySet<string> = gram.names): Promise<CalibrationResult> =>
      calibrate(
        ort,
        model.proto,
        activations,
        data.calibrationBatches,
        config.measure.threads,
        { ...gram, names },
        types,
        gramPasses ? [] : convs,
        calibrateOpts,
      ).catch(named);
    // With passes, this stage collects the channel statistics only (no Grams; the conv inputs exposed, not collected).
    const work = {
      model: loaded!.modelHash,
      batches: data.calibrationBatches,
      activations,
      gram: gramPasses ? { names: new Set<string>(), maxRows: gram.maxRows } : gram,
      types,
      convs: gramPasses ? convs.map((c) => ({ key: c.key, activation: c.activation, spec: "exposed" })) : convs,
      threads: config.measure.threads,
    };
    const detail = gramPasses
      ? `, Gram matrices in ${gramPasses.groups.length} passes of at most ${Math.round(budgetBytes / 2 ** 20)} MiB with the quantize stage`
      : "";
    calibration = await stage("calibrate", `${data.calibrationBatches.length} batches${detail}`, () =>
      reuse ? reuse.calibration({ ...work, toolVersion: TOOL_VERSION, runtime: runtimeKey }, compute) : compute(work.gram.names),
    );
    calibrationFailed = calibration === undefined;
  } else {
    skip("calibrate", "no calibration data configured");
  }

  // quantize (not after a failed calibration: its error is the one to read, not "calibration is not configured")
  /** With Gram passes, the statistics (Gram included) of a tied embedding's LM head input, kept for emit. */
  let passedHeadStats: Map<string, ActivationStats> | undefined;
  let passesMs = 0;
  if (calibrationFailed) skip("quantize", "calibration failed");
  const quantized: QuantizedWeight[] | undefined =
    model && discovery.weights.length > 0 && !outcome && !calibrationFailed
      ? await stage("quantize", `${discovery.weights.length} weights`, async () => {
          const plans = planWeights(discovery.weights, config.recipe);
          const ctx = {
            quantize: quantizer.quantize,
            stats: calibration?.stats,
            convStats: calibration?.convStats,
            recipe: config.recipe,
            threads: config.measure.threads,
          };
          let planned = plans;
          const mixed = config.recipe.mixed;
          if (mixed) {
            let measured: Map<string, number> | undefined;
            if (mixed.method === "kl") {
              if (!data || data.calibrationBatches.length === 0)
                throw new UserError("recipe.mixed.method kl measures each layer on calibration data: set evaluation.calibration");
              const atLow = plans.map((p) => ({ ...p, format: mixed.low, spec: specFor(mixed.low, p.spec.blockSize, p.spec.symmetric, p.algorithm) }));
              measured = await measureLayerKl(ort, model.proto, atLow, ctx, data.calibrationBatches.slice(0, SENSITIVITY_BATCHES), config.measure.threads);
            }
            planned = planMixedPrecision(plans, calibration?.stats, mixed, measured).plans;
          } else if (config.recipe.quantx) planned = planQuantx(plans, ctx, config.recipe.quantx).plans;
          if (!gramPasses) return quantizeWeights(planned, ctx);
          const heads = new Set(
            model.proto.graph && config.recipe.tied_embedding === "quantize" ? tiedHeadActivations(model.proto.graph).map((h) => h.name) : [],
          );
          const passed = await quantizeInPasses(planned, ctx, gramPasses.groups, gramPasses.run, heads);
          passedHeadStats = passed.kept;
          passesMs = passed.calibrationMs;
          return passed.weights;
        })
      : undefined;
  gramPasses?.close();

  // Activation statistics and Gram matrices are done with once the weights are quantized: released here.
  const calibrationSummary = calibration ? { batches: calibration.batches, layers: calibration.stats.size, ms: calibration.ms + passesMs } : null;
  // Except those of a tied embedding's LM head input: the tied table is quantized at emit (GPTQ/MSE read them).
  const tiedHeadStats = new Map<string, NonNullable<ReturnType<CalibrationResult["stats"]["get"]>>>();
  if (calibration && config.recipe.tied_embedding === "quantize" && model?.proto.graph) {
    for (const h of tiedHeadActivations(model.proto.graph)) {
      const st = passedHeadStats?.get(h.name) ?? calibration.stats.get(h.name);
      if (st) tiedHeadStats.set(h.name, st);
    }
  }
  calibration = undefined;

  /**
   * Tied input/output embeddings (kept float by the weight discovery: a Gather and a Transposed LM head read them)
   * quantized once in the emitted model (src/emit/tied.ts), for int4/int8 recipes unless recipe.tied_embedding is
   * float. The result must load in ONNX Runtime; if it does not, the embedding stays float with the reason.
   */
  type Checked = Awaited<ReturnType<typeof emitChecked>>;
  const withTiedEmbeddings = async (e: Checked, level: number, again: () => Promise<Checked>): Promise<Checked & { tied: TiedReport[] }> => {
    const r = config.recipe;
    if (r.tied_embedding !== "quantize" || (r.format !== "int4" && r.format !== "int8")) return { ...e, tied: [] };
    const spec = specFor(r.format, r.block_size, r.symmetric, r.algorithm);
    const results = quantizeTiedEmbeddings(
      e.proto,
      {
        quantize: quantizer.quantize,
        algorithm: r.algorithm,
        stats: (a) => tiedHeadStats.get(a),
        gptq: r.gptq,
        mseImportance: r.mse_importance,
        threads: config.measure.threads,
      },
      spec,
      level,
    );
    if (results.length === 0) return { ...e, tied: [] };
    const skippedTied = (name: string, reason: string): WeightDiscovery["skipped"][number] => {
      const prior = e.skipped.find((s) => s.name === name);
      return { name, nodeName: prior?.nodeName ?? "", opType: prior?.opType ?? "Gather", shape: prior?.shape, reason: `tied embedding kept float: ${reason}` };
    };
    if (results.some((t) => "storedBytes" in t)) {
      const error = await loadError(ort, e.proto);
      if (error !== undefined) {
        const fresh = await again();
        const reason = `ONNX Runtime refused the shared form (${error.split("\n")[0]})`;
        const names = new Set(results.map((t) => t.site));
        return { ...fresh, skipped: [...fresh.skipped.filter((s) => !names.has(s.name)), ...results.map((t) => skippedTied(t.site, reason))], tied: [] };
      }
    }
    const tied: TiedReport[] = [];
    const notes: string[] = [];
    const skipped = e.skipped.filter((s) => !results.some((t) => t.site === s.name));
    for (const t of results) {
      if (!("storedBytes" in t)) {
        skipped.push(skippedTied(t.site, t.reason));
        continue;
      }
      const init = model!.graph.initializer.find((x) => x.name === t.site);
      const dims = init ? init.dims.map(Number) : [];
      tied.push({ emission: t, spec: t.quantization.q.spec, dims, error: quantizationError(t.table, t.quantization.q), quantization: t.quantization });
      if (t.quantization.algorithm !== r.algorithm) notes.push(`tied embedding ${t.site}: ${t.quantization.note}`);
    }
    return {
      ...e,
      skipped,
      tied,
      notes: [...e.notes, ...notes],
    };
  };

  /** Evaluates a quantized model file against the float (or reference) model on the configured task. */
  const evaluateQuantized = async (taskData: TaskData, quantPath: string): Promise<TaskEvaluation> => {
    const threads = config.measure.threads;
    const openFloat = async () => {
      const open = () => createSession(ort, floatModelPath, threads);
      if (!reuse) return open();
      const work = {
        model: config.reference_model ? sha256(await readFile(floatModelPath)) : (loaded?.modelHash ?? ""),
        data: taskData.files,
        evaluation: config.evaluation,
        threads,
        toolVersion: TOOL_VERSION,
        runtime: runtimeKey,
      };
      return reuse.floatSession(ort, work, open);
    };
    if (task.evaluatePhased) {
      // One session at a time: the float model is scored and released before the quantized one is loaded.
      const phased = task.evaluatePhased.bind(task);
      return withLmExplanation(() =>
        evaluateInPhases(ort, { float: openFloat, quantized: () => createSession(ort, quantPath, threads) }, threads, (ctx) =>
          phased(config.evaluation, taskData, ctx),
        ),
      );
    }
    const floatSession = await openFloat();
    const quantSession = await createSession(ort, quantPath, threads);
    try {
      return await withLmExplanation(() => task.evaluate(config.evaluation, taskData, { ort, float: floatSession, quantized: quantSession, threads }));
    } finally {
      await floatSession.release();
      await quantSession.release();
    }
  };
  const withLmExplanation = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      // A raw broadcast error from a window longer than the model accepts is explained in terms of the config.
      const ev = config.evaluation as { sequence_length?: number; batch_size?: number };
      if (ev.sequence_length === undefined) throw err;
      throw explainLmFailure(err, ev.sequence_length, ev.batch_size ?? 1, config.configPath, config.lines["evaluation.sequence_length"]);
    }
  };

  // emit
  let evaluatedInEmit: TaskEvaluation | undefined;
  let externalNote: string | undefined;
  // The emit stage runs in a function of its own: its locals (the emitted proto, packed codes, the tied table's
  // float copy: 2.0 GB at 1.1B parameters) go with its frame. Left in runGate's frame, V8 kept them reachable
  // from its registers through evaluate and measure, even with the variables cleared.
  const emitStage = async (model: NonNullable<typeof loaded>["model"], quantized: QuantizedWeight[]): Promise<void> => {
    // A committed lockfile for this model and recipe pins the forms and the accuracy level (no re-timing).
    let committedLock: Lockfile | undefined;
    try {
      committedLock = await readLockfile(path.join(config.baseDir, LOCKFILE_NAME));
    } catch (err) {
      warnings.push(`committed lockfile not used for pinning: ${(err as Error).message}`);
    }
    const pinInfo = pinsFromLockfile(committedLock, loaded?.modelHash ?? "", recipeHash);
    const timedHere = `timing on this runner (${os.cpus()[0]?.model ?? "unknown CPU"}, ${config.measure.threads} thread(s))`;
    const result = await stage("emit", "choosing ONNX Runtime forms and accuracy level", async () => {
      // Forms timed for the first level built; a packed form chosen there is kept at the other level.
      let firstChoices: FormChoice[] | undefined;
      const emitAt = async (level: number, file: string) => {
        const r = await resolveForms(ort, quantized, level, config.measure.threads, pinInfo.pins, firstChoices);
        firstChoices ??= r.choices;
        // Loaded in ONNX Runtime before it is written: refused forms fall back, or the weight stays float (listed).
        const checked = await emitChecked(ort, model.proto, quantized, r.formMap, level, discovery);
        const e = await withTiedEmbeddings(checked, level, () => emitChecked(ort, model.proto, quantized, r.formMap, level, discovery));
        const saved = await saveModelDetailed(e.proto, file);
        if (saved.externalReason) externalNote = `quantized model written with external data (${path.basename(file)}.data): ${saved.externalReason}`;
        return { ...r, e, size: saved.bytes, file, level };
      };
      const builds = new Map<number, Awaited<ReturnType<typeof emitAt>>>();
      const candidatePath = (level: number): string => quantizedModelPath.replace(/\.onnx$/, `.level${level}.tmp.onnx`);
      const levelFeeds: Feeds | undefined = data?.measureFeeds;
      const dropCandidates = (): Promise<unknown> =>
        Promise.all([0, 4].flatMap((l) => [rm(candidatePath(l), { force: true }), rm(`${candidatePath(l)}.data`, { force: true })]));
      const levelResult = await chooseAccuracyLevel<TaskEvaluation>({
        forced: config.recipe.accuracy_level,
        pinned: pinInfo.pins?.accuracyLevel,
        notApplicable: !quantized.some((w) => w.plan.site.kind === "product" && !isTable(w.q))
          ? "no weight executes on MatMulNBits, so the level changes nothing"
          : !data
            ? "no evaluation data to judge level 4 by: exact level kept"
            : undefined,
        evaluate: async (level) => {
          const b = await emitAt(level, candidatePath(level));
          builds.set(level, b);
          const ev = await evaluateQuantized(data!, b.file);
          return judgeAccuracy(level, ev, config.gate);
        },
        time: levelFeeds
          ? async (levels) => {
              const files = levels.map(candidatePath);
              const oneToken = singleTokenFeeds(levelFeeds);
              const shapeOf = (f: Feeds): string =>
                Object.values(f)
                  .map((t) => `[${t.dims.join(",")}]`)
                  .join(" ");
              const timings = [{ shape: `evaluation batch ${shapeOf(levelFeeds)}`, p50Ms: await timeModels(files, levelFeeds, config.measure, opts.ortDir) }];
              // A model with fixed sequence dims cannot run one token: then only the evaluation batch is timed.
              const oneTokenMs = oneToken ? await timeModels(files, oneToken, config.measure, opts.ortDir).catch(() => undefined) : undefined;
              if (oneTokenMs) timings.unshift({ shape: "one token [1,1]", p50Ms: oneTokenMs });
              return timings;
            }
          : undefined,
      }).finally(dropCandidates);
      // The candidates' files are gone (removed whether the choice succeeded or not): the chosen build's
      // model is written again in place (its proto is kept), never left under a temporary name.
      const level = levelResult.choice.level;
      const built = builds.get(level);
      const chosen = built
        ? { ...built, size: (await saveModelDetailed(built.e.proto, quantizedModelPath)).bytes, file: quantizedModelPath }
        : await emitAt(level, quantizedModelPath);
      evaluatedInEmit = levelResult.evaluation;
      const formsChosenBy = chosen.pinned.length > 0 && chosen.choices.length === 0 ? pinInfo.note : `${timedHere}; ${pinInfo.note}`;
      return {
        choices: chosen.choices,
        e: chosen.e,
        size: chosen.size,
        accuracy: levelResult.choice,
        formMap: chosen.formMap,
        formsChosenBy,
        pinned: chosen.pinned,
      };
    });
    if (result) {
      const emitWarnings: string[] = [];
      for (const c of result.choices) {
        if (c.slowerThanFloat) {
          const t = c.candidates.find((x) => x.form === c.chosen)?.p50Ms ?? NaN;
          emitWarnings.push(
            `${c.format} runs slower than float on this runner: ${c.chosen} ${t.toFixed(3)} ms vs float MatMul ${c.floatP50Ms.toFixed(3)} ms at ${c.k}x${c.n} (M=1)`,
          );
        }
      }
      emitWarnings.push(...result.e.notes);
      if (externalNote) emitWarnings.push(externalNote);
      outcome = {
        skipped: result.e.skipped,
        layerReports: [
          ...withActivationTypes(layerReportsOf(result.e.weights, result.e.layers), result.e.layers, result.e.proto),
          ...result.e.tied.map((t) => tiedLayerReport(t, config.recipe.algorithm)),
        ],
        layers: result.e.layers,
        forms: result.choices,
        execution: {
          accuracyLevel: result.accuracy.level,
          accuracy: result.accuracy,
          formsChosenBy: result.formsChosenBy,
          pinnedFormats: result.pinned,
          lock: lockExecution(result.formMap, result.accuracy.level, result.pinned.length > 0 && pinInfo.pins ? pinInfo.pins.chosenBy : timedHere),
        },
        quantizedSize: result.size,
        warnings: emitWarnings,
        calibration: calibrationSummary,
      };
      const dataFile = `${quantizedModelPath}.data`;
      const files: Record<string, string> = { "model.onnx": quantizedModelPath, ...(existsSync(dataFile) ? { "model.onnx.data": dataFile } : {}) };
      if (opts.cache && quantKey) await opts.cache.save(quantKey, files, outcome);
    }
  };
  if (model && quantized) await emitStage(model, quantized);
  // The quantized codes are in the written model now: released before the evaluation loads models.
  quantized?.splice(0);
  warnings.push(...(outcome?.warnings ?? []));
  const forms = outcome?.forms ?? [];
  const quantizedSize = outcome?.quantizedSize;
  const layerReports = outcome?.layerReports ?? [];

  // evaluate
  let evaluation: TaskEvaluation | undefined;
  const evalKey = keyBase && workCacheKey({ ...keyBase, kind: "evaluation", settings: { evaluation: config.evaluation, threads: config.measure.threads } });
  const cachedEvaluation = opts.cache && evalKey && outcome && !opts.evaluate ? await opts.cache.restoreValue<TaskEvaluation>(evalKey) : undefined;
  if (opts.until === "emit") {
    skip("evaluate", "sharded: evaluated by the shard jobs");
  } else if (model && data && outcome && opts.evaluate) {
    const custom = opts.evaluate;
    evaluation = await stage("evaluate", "float vs quantized (sharded)", () => custom(data, { float: floatModelPath, quantized: quantizedModelPath }));
  } else if (cachedEvaluation && Array.isArray(cachedEvaluation.metrics)) {
    evaluation = cachedEvaluation;
    skip("evaluate", "restored from the work cache");
  } else if (model && data && outcome) {
    evaluation = evaluatedInEmit ?? (await stage("evaluate", "float vs quantized", () => evaluateQuantized(data, quantizedModelPath)));
    if (evaluatedInEmit) stages.push({ stage: "evaluate", status: "ok", ms: 0, note: "evaluated while choosing the accuracy level (emit)" });
    if (evaluation && opts.cache && evalKey) await opts.cache.saveValue(evalKey, evaluation);
  }
  warnings.push(...(evaluation?.warnings ?? []));

  // measure
  let storage: StorageSummary | undefined;
  let floatRun: ModelRunMeasurement | undefined;
  let quantRun: ModelRunMeasurement | undefined;
  let kernelBench: KernelBenchResult | undefined;
  let latencyComparison: LatencyComparison | undefined;
  let decodeRecords: MetricRecord[] = [];
  /**
   * Greedy decoding with the KV cache fed back (src/measure/decode.ts), float and quantized each in a child of its
   * own, for a model whose past key/value inputs all have present outputs; undefined for any other model.
   */
  const measureLlmDecode = async (m: LoadedModel, taskData: TaskData) => {
    const d = config.measure.decode;
    if (d.prompts === 0 || !taskData.promptSource) return undefined;
    const lm = config.evaluation as { inputs?: LmInputOverrides; input_name?: string; constant_inputs?: ConstantInputs };
    const overrides: LmInputOverrides = { ...lm.inputs, ...(lm.input_name ? { input_ids: lm.input_name } : {}) };
    // evaluation.constant_inputs are fed on every decode call, as in scoring.
    const constants = constantFeeds(lm.constant_inputs ?? {}, modelInputs(m));
    const inputs = dataInputs(lm.constant_inputs ?? {}, modelInputs(m)).map((i) => ({ name: i.name, type: i.type, ...(i.dims ? { shape: i.dims } : {}) }));
    const outputs = m.graph.output.map((o) => ({ name: o.name, type: "float32" }));
    if (!planLmInputs(inputs, outputs, overrides).canDecode) return undefined;
    const source = taskData.promptSource.slice(0, d.prompts);
    const short = source.find((ids) => ids.length < d.prompt_tokens);
    if (short) {
      throw new UserError(
        `measure.decode.prompt_tokens (${d.prompt_tokens}) is longer than the evaluation windows (${short.length} tokens): lower it or raise evaluation.sequence_length`,
      );
    }
    const settings = {
      prompts: source.map((ids) => ids.slice(0, d.prompt_tokens)),
      decodeTokens: d.decode_tokens,
      threads: config.measure.threads,
      warmup: Math.min(config.measure.warmup, 2),
      overrides,
      constants,
    };
    const float = await measureDecode(floatModelPath, settings, opts.ortDir);
    const quant = await measureDecode(quantizedModelPath, settings, opts.ortDir);
    // The slowdown rule's ratios come from interleaved rounds in one process where both models fit in memory.
    const interleave = float.peakRssBytes + quant.peakRssBytes <= os.totalmem() * INTERLEAVE_MEMORY_SHARE;
    const slowdown = await measureDecodeSlowdown(
      floatModelPath,
      quantizedModelPath,
      settings,
      Math.min(config.measure.runs, DECODE_ROUNDS),
      interleave,
      opts.ortDir,
    );
    const divergence = compareGenerations(float.generated, quant.generated);
    return {
      records: decodeMetricRecords(float, quant, d.prompt_tokens, d.decode_tokens, slowdown),
      details: {
        promptTokens: d.prompt_tokens,
        decodeTokens: d.decode_tokens,
        prompts: source.length,
        // Where the greedy generations first differ (token index among the generated ones), per prompt.
        firstDivergence: divergence.map((x) => ({
          prompt: x.prompt,
          firstDivergence: x.firstDivergence ?? null,
          compared: x.compared,
          float: x.float,
          quantized: x.quantized,
        })),
      },
    };
  };
  if (opts.until) {
    skip("measure", "sharded: measured by the merge job");
  } else if (model && outcome && data) {
    await stage("measure", `${config.measure.runs} runs, ${config.measure.threads} thread(s)`, async () => {
      storage = summarizeStorage(
        outcome!.layers,
        outcome!.layerReports.filter((l) => l.origin === "tied embedding"),
      );
      if (config.measure.memory) {
        const feeds = data.measureFeeds;
        if (!feeds) throw new Error(`the ${task.name} task gave no input to measure latency and memory with`);
        const measured = await measureModels(floatModelPath, quantizedModelPath, feeds, config.measure, opts.ortDir);
        floatRun = measured.float;
        quantRun = measured.quantized;
        latencyComparison = measured.comparison;
        const slower = slowerThanFloatWarning(measured);
        if (slower) warnings.push(slower);
      }
      const decode = await measureLlmDecode(model!, data);
      if (decode) {
        decodeRecords = decode.records;
        if (evaluation) evaluation = { ...evaluation, details: { ...evaluation.details, llmDecode: decode.details } };
      }
      const kernels = opts.quantizer?.kernels;
      if (config.measure.kernel_benchmark && kernels) kernelBench = runKernelBenchmark(kernels, outcome!.layerReports, config.measure.threads);
    });
  }

  const floatSizeBytes = config.reference_model
    ? await stat(floatModelPath).then(
        (st) => st.size,
        () => undefined,
      )
    : model?.sizeBytes;

  // gate
  if (storage && layerReports.length > 0) {
    const params = layerReports.reduce((a, l) => a + l.k * l.n, 0);
    const weighted = (pick: (l: QuantizedLayerReport) => number): number => layerReports.reduce((a, l) => a + pick(l) * l.k * l.n, 0) / params;
    storage = { ...storage, entropyBitsPerWeight: weighted((l) => l.entropyBitsPerWeight), huffmanBitsPerWeight: weighted((l) => l.huffmanBitsPerWeight) };
  }
  const records = [
    ...(evaluation?.metrics ?? []),
    ...measurementRecords({
      floatSizeBytes,
      quantizedSizeBytes: quantizedSize,
      storage,
      floatRun,
      quantizedRun: quantRun,
      kernelBench,
    }),
    ...decodeRecords,
  ];
  // The task's own rules (fidelity's per-output and user-metric limits) are judged with the gate's.
  const latency = quantRun ? { ...latencyBasis(quantRun), ratioPerRound: latencyComparison?.ratioPerRound } : undefined;
  const gate = evaluateGate(config.gate, records, errors, evaluation?.rules ?? [], latency);
  stages.push({ stage: "gate", status: "ok", ms: 0 });

  let lockChanges: LayerChange[] = [];
  const lockPath = path.join(outputDir, LOCKFILE_NAME);
  let lockWritten: string | undefined;
  if (layerReports.length > 0) {
    const lock = buildLockfile(config.model, loaded?.modelHash ?? "", recipeHash, layerReports, outcome?.execution?.lock);
    try {
      lockChanges = diffLockfiles(await readLockfile(path.join(config.baseDir, LOCKFILE_NAME)), lock);
    } catch (err) {
      warnings.push(`committed lockfile not compared: ${(err as Error).message}`);
    }
    await writeLockfile(lockPath, lock);
    lockWritten = lockPath;
  }

  const report: Report = {
    schema: REPORT_SCHEMA,
    tool: { name: TOOL_NAME, version: TOOL_VERSION },
    runtime: {
      onnxruntime: opts.ort.version,
      onnxruntimeSource: opts.ort.source,
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      cpu: os.cpus()[0]?.model ?? "unknown",
      kernels: quantizer.name,
    },
    createdAt: new Date().toISOString(),
    configPath: path.relative(process.cwd(), config.configPath) || config.configPath,
    hashes: { model: loaded?.modelHash ?? "", recipe: recipeHash, config: sha256(configText), data: data?.files ?? [] },
    recipe: config.recipe,
    weights: { quantized: layerReports, skipped: outcome?.skipped ?? discovery.skipped },
    execution: {
      accuracyLevel: outcome?.execution?.accuracyLevel ?? config.recipe.accuracy_level ?? 0,
      forms,
      ...(outcome?.execution
        ? { accuracy: outcome.execution.accuracy, formsChosenBy: outcome.execution.formsChosenBy, pinnedFormats: outcome.execution.pinnedFormats }
        : {}),
    },
    calibration: outcome?.calibration ?? null,
    cache: opts.cache?.summary() ?? null,
    evaluation: evaluation ?? null,
    metrics: records,
    float: { path: config.reference_model ?? config.model, sizeBytes: floatSizeBytes ?? 0, run: floatRun },
    quantized: quantizedSize !== undefined ? { path: path.relative(config.baseDir, quantizedModelPath), sizeBytes: quantizedSize, run: quantRun } : null,
    storage: storage ?? null,
    latencyComparison: latencyComparison ?? null,
    kernelBenchmark: kernelBench ?? null,
    lockfile: lockWritten ? { path: lockWritten, committed: path.join(config.baseDir, LOCKFILE_NAME), changes: lockChanges } : null,
    warnings,
    stages,
    gate,
    verdict: gate.verdict,
  };
  return {
    report,
    outputDir,
    reportPath: path.join(outputDir, "quantgate-report.json"),
    quantizedModelPath: quantizedSize !== undefined ? quantizedModelPath : undefined,
    outcome,
  };
}

/** sha256 of the model file, or for a model with external data of the file and its data files in order (streamed). */
async function modelFileHash(modelPath: string, dataFiles: readonly string[]): Promise<string> {
  const bytes = await readFile(modelPath);
  if (dataFiles.length === 0) return sha256(bytes);
  const h = createHash("sha256").update(bytes);
  for (const f of dataFiles) {
    for await (const chunk of createReadStream(f, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  }
  return h.digest("hex");
}

/**
 * Runs a phased evaluation: `open` loads a model's session; opening the quantized model releases the float
 * one first, so the two are never loaded together. Every session is released at the end. The float session may
 * be the work reuse's replaying one (src/cache/reuse.ts), which opens the real model only when a run is new.
 */
async function evaluateInPhases(
  ort: LoadedOrt["ort"],
  opens: { readonly float: () => Promise<Session>; readonly quantized: () => Promise<Session> },
  threads: number,
  run: (ctx: PhasedEvalContext) => Promise<TaskEvaluation>,
): Promise<TaskEvaluation> {
  let current: { which: "float" | "quantized"; session: Session } | undefined;
  const close = async (): Promise<void> => {
    const c = current;
    current = undefined;
    if (c) await c.session.release();
  };
  try {
    return await run({
      ort,
      threads,
      open: async (which) => {
        if (current?.which === which) return current.session;
        await close();
        current = { which, session: await opens[which]() };
        return current.session;
      },
    });
  } finally {
    await close();
  }
}

/** The recipe's formats at the model's own layer shapes, on our kernels (GEMV, M = 1). */
function runKernelBenchmark(kernels: Kernels, layers: readonly QuantizedLayerReport[], threads: number): KernelBenchResult {
  const shapes = new Map<string, { name: string; k: number; n: number }>();
  const formats = new Map<string, BenchFormat>();
  for (const l of layers) {
    if (!shapes.has(`${l.k}x${l.n}`)) shapes.set(`${l.k}x${l.n}`, { name: l.name, k: l.k, n: l.n });
    if (isIntFormat(l.format as WeightFormat)) {
      const spec = { bits: l.bits as IntBits, blockSize: l.blockSize, symmetric: l.symmetric, clipSearch: false };
      formats.set(`${spec.bits}/${spec.blockSize}/${spec.symmetric}`, spec);
    } else if (l.format !== "bnb-fp4") {
      formats.set(`${l.format}/${l.blockSize}`, { format: l.format as TableFormat, blockSize: l.blockSize });
    }
  }
  return benchmarkKernels(kernels, [...shapes.values()], [...formats.values()], { threads, runs: 15, warmup: 3 });
}

interface TiedReport {
  readonly emission: TiedEmission;
  readonly spec: BlockwiseSpec;
  /** [vocab, hidden] */
  readonly dims: readonly number[];
  readonly error: { readonly rmse: number; readonly relativeError: number };
  readonly quantization: TiedQuantization;
}

/** RMS error of a block-wise quantization of rows [n][k], and relative to the weights' RMS. */
function quantizationError(w: Float32Array, q: BlockwiseQuantized): { rmse: number; relativeError: number } {
  const { n, k, blocksPerRow } = q;
  const bs = q.spec.blockSize;
  let err = 0;
  let ref = 0;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const b = r * blocksPerRow + Math.floor(c / bs);
      const v = (q.codes[r * blocksPerRow * bs + c]! - q.zeroPoints[b]!) * q.scales[b]!;
      const x = w[r * k + c]!;
      err += (v - x) * (v - x);
      ref += x * x;
    }
  }
  const rmse = Math.sqrt(err / (n * k));
  return { rmse, relativeError: ref > 0 ? Math.sqrt(err / ref) : 0 };
}

/** Each MatMulNBits layer's report says which activation type its node computes in (float16 models may run it in float16). */
function withActivationTypes(reports: QuantizedLayerReport[], layers: readonly EmittedLayer[], proto: ModelProto): QuantizedLayerReport[] {
  const types = proto.graph ? matMulNBitsActivationTypes(proto.graph) : new Map<string, string>();
  return reports.map((r, i) => {
    const t = layers[i]?.nodes.map((n) => types.get(n)).find((x) => x !== undefined);
    return t ? { ...r, notes: [...r.notes, `MatMulNBits with ${t} activations`] } : r;
  });
}

/** The layer report of a tied embedding quantized once (one packed copy for the Gather and the LM head). */
function tiedLayerReport(t: TiedReport, algorithm: string): QuantizedLayerReport {
  const [vocab = 0, hidden = 0] = t.dims;
  const weights = vocab * hidden;
  const bits = weights > 0 ? (t.emission.storedBytes * 8) / weights : 0;
  return {
    name: t.emission.site,
    node: "",
    op: "Gather+MatMul",
    origin: "tied embedding",
    shape: [...t.dims],
    graph: "main graph",
    k: hidden,
    n: vocab,
    format: t.spec.bits === 8 ? "int8" : "int4",
    bits: t.spec.bits,
    blockSize: t.spec.blockSize,
    symmetric: t.spec.symmetric,
    algorithm: t.quantization.algorithm,
    notes: [
      ...(t.quantization.algorithm !== algorithm ? [t.quantization.note] : [`${t.quantization.note} (recipe: ${algorithm})`]),
      `MatMulNBits with ${t.emission.activationType} activations (the LM head)`,
      `tied input/output embedding quantized once: GatherBlockQuantized and the LM head's MatMulNBits read one packed copy (${t.emission.storedBytes} bytes, ${t.emission.separateBytes} for two separate copies)`,
      ...t.emission.duplicatesRemoved.map((d) => `stored transposed copy ${d} removed`),
    ],
    lowRankRank: 0,
    overrides: [],
    form: "matmulnbits",
    floatBytes: weights * 4,
    storedBytes: t.emission.storedBytes,
    packedBytes: t.emission.storedBytes,
    bitsPerWeight: bits,
    storedBitsPerWeight: bits,
    entropyBitsPerWeight: bits,
    huffmanBitsPerWeight: bits,
    rmse: t.error.rmse,
    relativeError: t.error.relativeError,
    outputErrorRatio: undefined,
  };
}

function layerReportsOf(quantized: readonly QuantizedWeight[], layers: readonly EmittedLayer[]): QuantizedLayerReport[] {
  return quantized.map((w, i) => {
    const layer = layers[i];
    const { site, spec } = w.plan;
    return {
      name: site.name,
      node: site.nodeName,
      op: site.opType,
      origin: site.origin,
      shape: site.dims,
      graph: site.graphLabel,
      k: site.k,
      n: site.n,
      format: w.plan.format,
      bits: spec.bits,
      blockSize: spec.blockSize,
      symmetric: spec.symmetric,
      algorithm: w.plan.algorithm,
      notes: w.notes,
      lowRankRank: w.lowRank?.rank ?? 0,
      overrides: w.plan.overrides,
      form: layer?.form ?? "matmulnbits",
      floatBytes: site.k * site.n * 4,
      storedBytes: layer?.storedBytes ?? 0,
      packedBytes: layer?.packedBytes ?? 0,
      bitsPerWeight: layer ? (layer.packedBytes * 8) / (site.k * site.n) : 0,
      storedBitsPerWeight: layer ? (layer.storedBytes * 8) / (site.k * site.n) : 0,
      // Entropy-coded size: the codes at their empirical entropy / Huffman length, the rest as packed.
      entropyBitsPerWeight: layer ? (layer.packedBytes * 8) / (site.k * site.n) - w.entropy.codeBits + w.entropy.entropyBits : 0,
      huffmanBitsPerWeight: layer ? (layer.packedBytes * 8) / (site.k * site.n) - w.entropy.codeBits + w.entropy.huffmanBits : 0,
      rmse: w.error.rmse,
      relativeError: w.error.relativeError,
      outputErrorRatio: w.error.outputErrorRatio,
    };
  });
}
