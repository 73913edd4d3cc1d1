// The quantize stage: resolve the recipe per weight, quantize it through the kernels, measure its error.
import type { Recipe, WeightFormat } from "../config/schema.js";
import { FORMAT_BITS } from "../config/schema.js";
import { tensorToFloat32 } from "../onnx/model.js";
import { matchesAny, type WeightSite } from "../onnx/weights.js";
import type { ActivationStats } from "../calibrate/index.js";
import { dequantizeBlockwise, transpose, type BlockwiseQuantized, type BlockwiseSpec } from "./blockwise.js";

export type BlockwiseQuantizer = (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec, threads?: number) => BlockwiseQuantized;

export interface WeightPlan {
  readonly site: WeightSite;
  readonly format: WeightFormat;
  readonly spec: BlockwiseSpec;
  /** Which override patterns applied, in order. */
  readonly overrides: readonly string[];
}

export interface WeightError {
  /** Root mean square of W - dequant(Q(W)). */
  readonly rmse: number;
  /** ||W - Q(W)||_F / ||W||_F */
  readonly relativeError: number;
  readonly maxAbsError: number;
  /**
   * Expected squared output error per token under the calibration data, sum_k E[x_k^2] * sum_n dW[k,n]^2,
   * relative to the same sum for W: the share of the layer's output energy lost to quantization.
   */
  readonly outputErrorRatio: number | undefined;
}

export interface QuantizedWeight {
  readonly plan: WeightPlan;
  readonly q: BlockwiseQuantized;
  readonly error: WeightError;
}

export function planWeights(sites: readonly WeightSite[], recipe: Recipe): WeightPlan[] {
  return sites.map((site) => {
    let format: WeightFormat = recipe.format;
    let blockSize = recipe.block_size;
    let symmetric = recipe.symmetric;
    let algorithm = recipe.algorithm;
    const applied: string[] = [];
    for (const o of recipe.overrides) {
      if (!matchesAny([o.match], site.name, site.nodeName)) continue;
      applied.push(o.match);
      format = o.format ?? format;
      blockSize = o.block_size ?? blockSize;
      symmetric = o.symmetric ?? symmetric;
      algorithm = o.algorithm ?? algorithm;
    }
    return {
      site,
      format,
      spec: { bits: FORMAT_BITS[format], blockSize, symmetric, clipSearch: algorithm === "mse" },
      overrides: applied,
    };
  });
}

/** The weight as [n][k] float32 (MatMul's B transposed), with Gemm alpha folded in. */
export function weightRowsNK(site: WeightSite): Float32Array {
  const w = tensorToFloat32(site.tensor);
  const wT = site.transposed ? w : transpose(w, site.k, site.n);
  if (site.alpha !== 1) for (let i = 0; i < wT.length; i++) wT[i] = Math.fround(wT[i]! * site.alpha);
  return wT;
}

export function quantizeWeights(
  plans: readonly WeightPlan[],
  quantize: BlockwiseQuantizer,
  stats: ReadonlyMap<string, ActivationStats> | undefined,
  threads = 1,
): QuantizedWeight[] {
  return plans.map((plan) => {
    const { site, spec } = plan;
    const wT = weightRowsNK(site);
    const q = quantize(wT, site.n, site.k, spec, threads);
    return { plan, q, error: weightError(wT, q, stats?.get(site.node.input[0] ?? "")) };
  });
}

export function weightError(wT: Float32Array, q: BlockwiseQuantized, act: ActivationStats | undefined): WeightError {
  const deq = dequantizeBlockwise(q);
  const { n, k } = q;
  let errSq = 0;
  let normSq = 0;
  let maxAbs = 0;
  const colErr = new Float64Array(k);
  const colNorm = new Float64Array(k);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      const w = wT[row * k + col]!;
      const d = w - deq[row * k + col]!;
      errSq += d * d;
      normSq += w * w;
      colErr[col]! += d * d;
      colNorm[col]! += w * w;
      if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
    }
  }
  let outputErrorRatio: number | undefined;
  if (act && act.meanSquare.length === k) {
    let num = 0;
    let den = 0;
    for (let col = 0; col < k; col++) {
      num += act.meanSquare[col]! * colErr[col]!;
      den += act.meanSquare[col]! * colNorm[col]!;
    }
    outputErrorRatio = den > 0 ? num / den : 0;
  }
  return {
    rmse: Math.sqrt(errSq / (n * k)),
    relativeError: normSq > 0 ? Math.sqrt(errSq / normSq) : 0,
    maxAbsError: maxAbs,
    outputErrorRatio,
  };
}
