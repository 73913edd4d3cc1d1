// The versioned JSON report: everything a run measured and decided, with the hashes that make it reproducible.
import type { Recipe } from "../config/schema.js";
import type { FormChoice } from "../emit/select.js";
import type { AccuracyLevelChoice } from "../emit/accuracy-level.js";
import type { ExecForm } from "../emit/index.js";
import type { MetricRecord, TaskEvaluation } from "../tasks/types.js";
import type { GateResult } from "../gate/index.js";
import type { LatencyComparison, ModelRunMeasurement, StorageSummary } from "../measure/index.js";
import type { SkippedWeight } from "../onnx/weights.js";
import type { LayerChange } from "./lockfile.js";
import type { CacheSummary } from "../cache/index.js";
import type { KernelBenchResult } from "../kernels/bench.js";

export interface StageRecord {
  readonly stage: string;
  readonly status: "ok" | "error" | "skipped";
  readonly ms: number;
  readonly error?: string;
  readonly note?: string;
}

export interface QuantizedLayerReport {
  readonly name: string;
  readonly node: string;
  readonly op: string;
  /** Where the weight came from (initializer, Constant node, Cast/Transpose chain, ...). */
  readonly origin: string;
  /** Shape as the op reads it. */
  readonly shape: readonly number[];
  /** "main graph" or the subgraph holding the op. */
  readonly graph: string;
  readonly k: number;
  readonly n: number;
  readonly format: string;
  readonly bits: number;
  readonly blockSize: number;
  readonly symmetric: boolean;
  readonly algorithm: string;
  readonly notes: readonly string[];
  readonly lowRankRank: number;
  readonly overrides: readonly string[];
  readonly form: ExecForm;
  readonly floatBytes: number;
  readonly storedBytes: number;
  readonly packedBytes: number;
  /** Deployable (packed) bits per weight. */
  readonly bitsPerWeight: number;
  /** As stored in the emitted ONNX file. */
  readonly storedBitsPerWeight: number;
  /** Packed bits per weight with the codes at their empirical entropy (the entropy-coded size bound). */
  readonly entropyBitsPerWeight: number;
  /** Packed bits per weight with the codes Huffman-coded. */
  readonly huffmanBitsPerWeight: number;
  readonly rmse: number;
  readonly relativeError: number;
  readonly outputErrorRatio: number | undefined;
}

export interface ModelSide {
  readonly path: string;
  readonly sizeBytes: number;
  readonly run?: ModelRunMeasurement;
}

export interface Report {
  readonly schema: string;
  readonly tool: { readonly name: string; readonly version: string };
  readonly runtime: {
    readonly onnxruntime: string;
    readonly onnxruntimeSource: string;
    readonly node: string;
    readonly platform: string;
    readonly arch: string;
    readonly cpu: string;
    readonly kernels: string;
  };
  readonly createdAt: string;
  readonly configPath: string;
  readonly hashes: {
    readonly model: string;
    readonly recipe: string;
    readonly config: string;
    readonly data: readonly { path: string; sha256: string }[];
  };
  readonly recipe: Recipe;
  readonly weights: { readonly quantized: QuantizedLayerReport[]; readonly skipped: SkippedWeight[] };
  readonly execution: {
    readonly accuracyLevel: number;
    /** Formats timed on this runner (pinned formats are not timed and have no entry). */
    readonly forms: FormChoice[];
    /** How the accuracy level was chosen, with both levels' KL and latency when measured. */
    readonly accuracy?: AccuracyLevelChoice;
    /** Whether forms were chosen by timing on this runner or pinned by the committed lockfile. */
    readonly formsChosenBy?: string;
    readonly pinnedFormats?: readonly string[];
  };
  readonly calibration: { readonly batches: number; readonly layers: number; readonly ms: number } | null;
  /** The task's evaluation: its metric records, sample count and details. */
  readonly evaluation: TaskEvaluation | null;
  /**
   * Every metric of the run, the task's then the measure stage's: what the gate, the summary, the outputs,
   * the history entry and the dashboard iterate over.
   */
  readonly metrics: readonly MetricRecord[];
  readonly float: ModelSide;
  readonly quantized: ModelSide | null;
  readonly storage: StorageSummary | null;
  /** Float and quantized timed in interleaved rounds of one process: the quantized/float ratio per round (absent in older reports). */
  readonly latencyComparison?: LatencyComparison | null;
  /** GEMV of the recipe's formats on our kernels at this model's layer shapes, next to float32. */
  readonly kernelBenchmark: KernelBenchResult | null;
  /** The precision lockfile written for this run and its differences from the committed one. */
  readonly lockfile: { readonly path: string; readonly committed: string; readonly changes: LayerChange[] } | null;
  readonly warnings: string[];
  /** Work-cache hits and misses of this run (absent without a cache). */
  readonly cache: CacheSummary | null;
  readonly stages: StageRecord[];
  readonly gate: GateResult;
  readonly verdict: "pass" | "fail";
}
