// The quantize stage: resolve the recipe per weight, quantize it (kernels for the hot loops, the
// algorithms of the papers where the recipe asks), and measure the error of what will be emitted.
import type { ActivationStats } from "../calibrate/index.js";
import { FORMAT_BITS, isIntFormat, type Recipe, type WeightFormat } from "../config/schema.js";
import { UserError } from "../errors.js";
import { activeKernels } from "../kernels/active.js";
import { roundToHalf } from "../onnx/model.js";
import { matchesAny, type WeightSite } from "../onnx/weights.js";
import { awqSearch } from "./algorithms/awq.js";
import { blockwiseCodes, codeEntropy } from "./algorithms/entropy.js";
import { gptqQuantize } from "./algorithms/gptq.js";
import { lowRankCorrection, refineGroupScales } from "./algorithms/lowrank.js";
import {
  dequantizeBlockwise,
  quantizeBlockwiseWeighted,
  transpose,
  weightErrorSums,
  weightErrorSumsOfCodes,
  type BlockwiseQuantized,
  type BlockwiseSpec,
  type IntBits,
} from "./blockwise.js";
import { fitCodebook } from "./codebook.js";
import { dequantizeTable, quantizeTable, type TableQuantized } from "./tables.js";

/** Output rows AWQ's alpha search evaluates (exact for those rows; each costs k^2 per grid point with a Gram matrix). */
const AWQ_SEARCH_ROWS = 64;

export type BlockwiseQuantizer = (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec, threads?: number) => BlockwiseQuantized;
export type Algorithm = Recipe["algorithm"];
export type AnyQuantized = BlockwiseQuantized | TableQuantized;

export function isTable(q: AnyQuantized): q is TableQuantized {
  return "table" in q;
}

export interface WeightPlan {
  readonly site: WeightSite;
  readonly format: WeightFormat;
  readonly spec: BlockwiseSpec;
  readonly algorithm: Algorithm;
  /** Which override patterns applied, in order, and any planner that changed the format. */
  readonly overrides: readonly string[];
}

export interface WeightError {
  /** Root mean square of W - dequant(Q(W)) (of the weight as emitted: AWQ scales and low-rank branch included). */
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

export interface LowRankBranch {
  /** [k][rank]: x @ a (values rounded to float16) */
  readonly a: Float32Array;
  /** [rank][n] */
  readonly b: Float32Array;
  /** The same factors as float16 bits, as stored. */
  readonly aHalf: Uint16Array;
  readonly bHalf: Uint16Array;
  readonly rank: number;
}

export interface QuantizedWeight {
  readonly plan: WeightPlan;
  readonly q: AnyQuantized;
  /** AWQ: the activation is multiplied by these (1/s per input channel) before the quantized product. */
  readonly inputScales?: Float32Array;
  readonly lowRank?: LowRankBranch;
  readonly error: WeightError;
  /** What the algorithm found, for the report (e.g. AWQ's alpha). */
  readonly notes: string[];
  /** Empirical entropy and Huffman code length of the codes, bits per code. */
  readonly entropy: { readonly entropyBits: number; readonly huffmanBits: number; readonly codeBits: number };
}

/** Entropy of the codes (padding past K excluded). */
export function codesEntropy(q: AnyQuantized): QuantizedWeight["entropy"] {
  const asBlockwise: BlockwiseQuantized = isTable(q)
    ? {
        n: q.n,
        k: q.k,
        blocksPerRow: q.blocksPerRow,
        codes: q.codes,
        scales: q.scales,
        zeroPoints: new Uint8Array(0),
        spec: { bits: 4, blockSize: q.blockSize, symmetric: true, clipSearch: false },
      }
    : q;
  const alphabet = isTable(q) ? q.table.length : 1 << q.spec.bits;
  const e = codeEntropy(blockwiseCodes(asBlockwise), alphabet);
  return { entropyBits: e.entropyBits, huffmanBits: e.huffmanBits, codeBits: isTable(q) ? q.codeBits : q.spec.bits };
}

export function specFor(format: WeightFormat, blockSize: number, symmetric: boolean, algorithm: Algorithm): BlockwiseSpec {
  return { bits: FORMAT_BITS[format] as IntBits, blockSize, symmetric, clipSearch: algorithm === "mse" };
}

/**
 * The recipe resolved per weight. An algorithm is never swapped for another: GPTQ and AWQ on a weight they
 * cannot run on (a table format, or a Conv/Gather/LSTM weight, whose inputs are not the K inputs of a
 * matrix product) stop the run with every such weight named.
 */
export function planWeights(sites: readonly WeightSite[], recipe: Recipe): WeightPlan[] {
  const refused: string[] = [];
  const plans = sites.map((site) => {
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
    if (algorithm === "awq" || algorithm === "gptq") {
      const where = `${site.opType} weight "${site.name}" (node "${site.nodeName}")`;
      if (!isIntFormat(format)) refused.push(`${where}: ${algorithm} works on the int formats, not ${format}`);
      else if (site.kind === "dequant" && !(algorithm === "gptq" && site.opKind === "conv")) {
        // GPTQ runs on Conv through the im2col view of its input; AWQ's per-input-channel scale has no
        // equivalent there, and ConvTranspose, Gather and LSTM/GRU inputs are not exposed that way.
        refused.push(
          `${where}: ${algorithm} needs the K inputs of a matrix product${algorithm === "gptq" ? " or a Conv's im2col rows" : ""}, which a ${site.opType} weight does not expose`,
        );
      }
    }
    if (format === "mxfp4") blockSize = 32;
    return { site, format, spec: specFor(format, blockSize, symmetric, algorithm), algorithm, overrides: applied };
  });
  if (refused.length > 0) {
    throw new UserError(
      `the recipe's algorithm cannot run on ${refused.length} weight(s), and QuantGate does not substitute another silently:\n  ${refused.join("\n  ")}\n` +
        `give them an algorithm that can (recipe.overrides: [{ match: "<name>", algorithm: mse }]) or exclude them`,
    );
  }
  return plans;
}

/** The weight as [n][k] float32 (MatMul's B transposed), with Gemm alpha folded in. */
export function weightRowsNK(site: WeightSite): Float32Array {
  const w = site.values;
  const wT = site.transposed ? w.slice() : transpose(w, site.k, site.n);
  if (site.alpha !== 1) {
    const raw = activeKernels();
    // Math.fround(w * alpha) with alpha a float32 value is the float32 product (one column of scale alpha).
    const alpha = Math.fround(site.alpha);
    if (raw?.scaleColumns && alpha === site.alpha) raw.scaleColumns(wT, wT.length, 1, Float32Array.of(alpha), wT, 1);
    else for (let i = 0; i < wT.length; i++) wT[i] = Math.fround(wT[i]! * site.alpha);
  }
  return wT;
}

export function dequantize(q: AnyQuantized): Float32Array {
  return isTable(q) ? dequantizeTable(q) : dequantizeBlockwise(q);
}

export interface QuantizeContext {
  readonly quantize: BlockwiseQuantizer;
  readonly stats: ReadonlyMap<string, ActivationStats> | undefined;
  /** Per Conv weight name, the im2col statistics of each group (GPTQ on Conv). */
  readonly convStats?: ReadonlyMap<string, readonly ActivationStats[]>;
  readonly recipe: Recipe;
  readonly threads: number;
}

function needStats(plan: WeightPlan, stats: ActivationStats | undefined, what: string, gram: boolean, calibrated: boolean): ActivationStats {
  if (!stats || (gram && !stats.gram)) {
    const input = plan.site.node.input[0] ?? "";
    throw new UserError(
      calibrated
        ? `${what} for ${plan.site.name}: calibration ran but captured no float32 activation "${input}" for it (${plan.site.graphLabel}); its activations may be float16 or on a path the calibration inputs never take`
        : `${what} for ${plan.site.name} needs calibration data: set evaluation.calibration in the config`,
    );
  }
  return stats;
}

export function quantizeWeight(plan: WeightPlan, ctx: QuantizeContext): QuantizedWeight {
  const { site, spec, format, algorithm } = plan;
  const { n, k } = site;
  const wT = weightRowsNK(site);
  const stats = site.kind === "product" ? ctx.stats?.get(site.node.input[0] ?? "") : undefined;
  const notes: string[] = [];
  let q: AnyQuantized;
  let inputScales: Float32Array | undefined;
  if (!isIntFormat(format)) {
    const table = format === "codebook" ? fitCodebook(wT, k, spec.blockSize, ctx.recipe.codebook.levels, ctx.recipe.codebook.method) : undefined;
    q = quantizeTable(wT, n, k, format, spec.blockSize, table, ctx.threads);
    if (table) notes.push(`${ctx.recipe.codebook.method} codebook of ${table.length} levels`);
  } else if (algorithm === "gptq" && site.kind === "dequant") {
    q = gptqConv(plan, wT, ctx);
    notes.push(`gptq on the im2col view, damp ${ctx.recipe.gptq.damp}, one Hessian per group`);
  } else if (algorithm === "gptq") {
    const s = needStats(plan, stats, "GPTQ", true, ctx.stats !== undefined);
    const g = ctx.recipe.gptq;
    q = gptqQuantize(wT, n, k, s.gram!, spec, { dampRatio: g.damp, actOrder: g.act_order, lazyBatch: g.lazy_batch, threads: ctx.threads });
    notes.push(`gptq damp ${g.damp}${g.act_order ? ", act-order" : ""}, Hessian from ${s.gramRows} rows`);
  } else if (algorithm === "awq") {
    const s = needStats(plan, stats, "AWQ", false, ctx.stats !== undefined);
    const res = awqSearch(wT, n, k, s, spec, (w, rows, cols, sp) => ctx.quantize(w, rows, cols, sp, ctx.threads), {
      grid: ctx.recipe.awq.grid,
      searchRows: AWQ_SEARCH_ROWS,
      threads: ctx.threads,
    });
    q = res.q;
    inputScales = res.inverseScales;
    notes.push(`awq alpha ${res.alpha.toFixed(2)}, output error ${(res.error / Math.max(res.errorRtn, 1e-30)).toFixed(3)}x of RTN`);
  } else if (algorithm === "mse" && stats && ctx.recipe.mse_importance) {
    // Clip search weighted by the calibration E[x^2] per input channel: output error, not weight error.
    const mean = stats.meanSquare.reduce((a, v) => a + v, 0) / k || 1;
    q = quantizeBlockwiseWeighted(
      wT,
      n,
      k,
      spec,
      Float32Array.from(stats.meanSquare, (v) => v / mean),
      ctx.threads,
    );
    notes.push("clip search weighted by calibration E[x^2]");
  } else {
    q = ctx.quantize(wT, n, k, spec, ctx.threads);
  }
  if (!isTable(q) && ctx.recipe.lowrank.refine_scales && !inputScales && stats) {
    q = refineGroupScales(wT, q, stats, { threads: ctx.threads });
    notes.push("block scales refined on calibration data");
  }
  let lowRank: LowRankBranch | undefined;
  const rank = site.kind === "product" ? Math.min(ctx.recipe.lowrank.rank, n, k) : 0;
  if (rank > 0) {
    const s = needStats(plan, stats, "low-rank error correction", false, ctx.stats !== undefined);
    const c = lowRankCorrection(wT, effectiveWeightNK({ q, inputScales }, ctx.threads), n, k, rank, s, { threads: ctx.threads });
    // The branch is stored in float16: the error reported is that of the rounded factors.
    const a = roundToHalf(c.a);
    const b = roundToHalf(c.b);
    lowRank = { a: a.values, b: b.values, aHalf: a.bits, bHalf: b.bits, rank: c.rank };
    notes.push(`rank-${c.rank} correction: output error ${(c.errorAfter / Math.max(c.errorBefore, 1e-30)).toFixed(3)}x, +${c.extraParams} float16 params`);
  }
  // A plain block-wise weight is compared code by code in the kernels (no dequantized copy).
  const effective = !inputScales && !lowRank && !isTable(q) ? q : effectiveWeightNK({ q, inputScales, lowRank }, ctx.threads);
  return { plan, q, inputScales, lowRank, error: weightError(wT, effective, n, k, stats), notes, entropy: codesEntropy(q) };
}

/** The [n][k] weight the emitted graph computes with: dequantized codes, AWQ scales folded back, low-rank branch added. */
export function effectiveWeightNK(w: Pick<QuantizedWeight, "q" | "inputScales" | "lowRank">, threads = 1): Float32Array {
  const { q, inputScales, lowRank } = w;
  const { n, k } = q;
  const out = dequantize(q);
  const raw = activeKernels();
  if (inputScales && raw?.scaleColumns && inputScales.length === k) raw.scaleColumns(out, n, k, inputScales, out, threads);
  else if (inputScales) {
    for (let row = 0; row < n; row++) for (let col = 0; col < k; col++) out[row * k + col] = Math.fround(out[row * k + col]! * inputScales[col]!);
  }
  if (lowRank && raw?.addLowRank && lowRank.rank > 0 && lowRank.a.length === k * lowRank.rank && lowRank.b.length === lowRank.rank * n) {
    raw.addLowRank(out, lowRank.a, lowRank.b, n, k, lowRank.rank, threads);
  } else if (lowRank) {
    const r = lowRank.rank;
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < k; col++) {
        let s = 0;
        for (let j = 0; j < r; j++) s += lowRank.a[col * r + j]! * lowRank.b[j * n + row]!;
        out[row * k + col] = Math.fround(out[row * k + col]! + s);
      }
    }
  }
  return out;
}

/** GPTQ on a Conv weight: rows of each group against the Hessian of that group's im2col rows. */
function gptqConv(plan: WeightPlan, wT: Float32Array, ctx: QuantizeContext): BlockwiseQuantized {
  const { site, spec } = plan;
  const groups = ctx.convStats?.get(site.name);
  if (!groups || groups.some((g) => !g.gram)) {
    throw new UserError(
      ctx.stats === undefined && ctx.convStats === undefined
        ? `GPTQ for ${site.name} needs calibration data: set evaluation.calibration in the config`
        : `GPTQ for Conv weight ${site.name}: calibration captured no im2col rows of its input "${site.node.input[0] ?? ""}" (${site.graphLabel})`,
    );
  }
  const { n, k } = site;
  const rowsPerGroup = n / groups.length;
  const g = ctx.recipe.gptq;
  const parts = groups.map((stats, i) =>
    gptqQuantize(wT.subarray(i * rowsPerGroup * k, (i + 1) * rowsPerGroup * k), rowsPerGroup, k, stats.gram!, spec, {
      dampRatio: g.damp,
      actOrder: g.act_order,
      lazyBatch: g.lazy_batch,
      threads: ctx.threads,
    }),
  );
  const concat = <T extends Uint8Array | Float32Array>(pick: (p: BlockwiseQuantized) => T, make: (len: number) => T): T => {
    const out = make(parts.reduce((a, p) => a + pick(p).length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(pick(p), at);
      at += pick(p).length;
    }
    return out;
  };
  return {
    spec,
    n,
    k,
    blocksPerRow: parts[0]!.blocksPerRow,
    codes: concat(
      (p) => p.codes,
      (len) => new Uint8Array(len),
    ),
    scales: concat(
      (p) => p.scales,
      (len) => new Float32Array(len),
    ),
    zeroPoints: concat(
      (p) => p.zeroPoints,
      (len) => new Uint8Array(len),
    ),
  };
}

export function quantizeWeights(plans: readonly WeightPlan[], ctx: QuantizeContext): QuantizedWeight[] {
  return plans.map((plan) => quantizeWeight(plan, ctx));
}

export function weightError(wT: Float32Array, deq: Float32Array | BlockwiseQuantized, n: number, k: number, act: ActivationStats | undefined): WeightError {
  const { sums, colErr, colNorm } = deq instanceof Float32Array ? weightErrorSums(wT, deq, n, k) : weightErrorSumsOfCodes(wT, deq);
  const [errSq, normSq, maxAbs] = [sums[0]!, sums[1]!, sums[2]!];
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
