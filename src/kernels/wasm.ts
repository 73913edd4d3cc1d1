// WebAssembly backend: instantiates dist/kernels/quantgate_kernels.wasm (no imports) and adapts its
// C exports to RawKernels. Memory is managed from JS: a bump arena from __heap_base, reset after
// every call; arguments are copied in and results copied out.
import type { RawKernels } from "./raw.js";

type Ptr = number;
// Minimal WebAssembly typings (the project's lib settings carry no DOM types).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: unknown } }>;
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
type Exports = Record<string, (...args: (number | bigint)[]) => number> & {
  memory: WasmMemory;
  __heap_base: { value: number };
};

type Typed = Float32Array | Float64Array | Uint8Array | Uint16Array;

export async function instantiateWasmKernels(bytes: Uint8Array): Promise<RawKernels> {
  const { instance } = await WA.instantiate(bytes, {});
  const ex = instance.exports as unknown as Exports;
  const memory = ex.memory;
  const heapBase = Number(ex.__heap_base.value);
  let top = heapBase;

  const alloc = (bytes: number): Ptr => {
    const ptr = (top + 15) & ~15;
    const end = ptr + bytes;
    if (end > memory.buffer.byteLength) memory.grow(Math.ceil((end - memory.buffer.byteLength) / 65536));
    top = end;
    return ptr;
  };
  /** Copy an argument in (or reserve room for an output); null stays a null pointer. */
  const put = (a: Typed | null, copy = true): Ptr => {
    if (a === null) return 0;
    const ptr = alloc(a.byteLength);
    if (copy) new Uint8Array(memory.buffer, ptr, a.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return ptr;
  };
  const take = (ptr: Ptr, a: Typed): void => {
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(new Uint8Array(memory.buffer, ptr, a.byteLength));
  };
  const call = (name: string, ...args: (number | bigint)[]): number => {
    const fn = ex[name];
    if (typeof fn !== "function") throw new Error(`wasm kernels lack export ${name}`);
    return fn(...args);
  };
  const check = (name: string, rc: number): void => {
    if (rc !== 0) throw new RangeError(`${name}: invalid arguments (code ${rc})`);
  };
  const scoped = <T>(fn: () => T): T => {
    const mark = top;
    try {
      return fn();
    } finally {
      top = mark;
    }
  };
  const I = (v: number): bigint => {
    if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`expected a non-negative integer, got ${v}`);
    return BigInt(v);
  };
  const bool = (b: boolean): number => (b ? 1 : 0);
  const need = (fn: string, name: string, a: Typed | null, count: number): void => {
    if (a && a.length < count) throw new RangeError(`${fn}: '${name}' has ${a.length} elements, needs ${count}`);
  };

  const has = (name: string): boolean => typeof ex[name] === "function";
  // Exports a module built before them lacks: the method is then absent and its caller runs the TypeScript reference.
  const optional: Partial<RawKernels> = {};
  if (has("qg_quantize_table"))
    optional.quantizeTable = (wT, n, k, bs, table, tableLength, scaleMode, codes, scales, _threads) => {
      const bpr = Math.ceil(k / bs);
      need("quantizeTable", "wT", wT, n * k);
      need("quantizeTable", "codes", codes, n * bpr * bs);
      need("quantizeTable", "scales", scales, n * bpr);
      scoped(() => {
        const pw = put(wT),
          pt = put(table),
          pc = put(codes, false),
          ps = put(scales, false);
        check("quantizeTable", call("qg_quantize_table", pw, I(n), I(k), bs, pt, tableLength, scaleMode, pc, ps, 1));
        take(pc, codes);
        take(ps, scales);
      });
    };
  if (has("qg_dequantize_table"))
    optional.dequantizeTable = (codes, scales, table, n, k, bs, out) => {
      need("dequantizeTable", "out", out, n * k);
      need("dequantizeTable", "codes", codes, n * Math.ceil(k / bs) * bs);
      scoped(() => {
        const pc = put(codes),
          ps = put(scales),
          pt = put(table),
          po = put(out, false);
        check("dequantizeTable", call("qg_dequantize_table", pc, ps, pt, table.length, I(n), I(k), bs, po));
        take(po, out);
      });
    };
  if (has("qg_sub_f32_to_f64"))
    optional.subF32ToF64 = (a, b, out) => {
      need("subF32ToF64", "b", b, a.length);
      need("subF32ToF64", "out", out, a.length);
      scoped(() => {
        const pa = put(a),
          pb = put(b),
          po = put(out, false);
        check("subF32ToF64", call("qg_sub_f32_to_f64", pa, pb, I(a.length), po));
        take(po, out);
      });
    };
  if (has("qg_lowrank_et_v"))
    optional.lowrankEtV = (e, n, k, v, count, out, _threads) => {
      need("lowrankEtV", "e", e, n * k);
      need("lowrankEtV", "v", v, count * n);
      need("lowrankEtV", "out", out, k * count);
      scoped(() => {
        const pe = put(e),
          pv = put(v),
          po = put(out, false),
          pw = alloc(Math.max(8, Number(call("qg_lowrank_et_v_workspace_bytes", I(n), I(k), I(count)))));
        check("lowrankEtV", call("qg_lowrank_et_v", pe, I(n), I(k), pv, I(count), po, pw, 1));
        take(po, out);
      });
    };
  if (has("qg_lowrank_apply_g"))
    optional.lowrankApplyG = (e, n, k, h, diagonal, v, count, y, _threads) => {
      need("lowrankApplyG", "e", e, n * k);
      need("lowrankApplyG", "h", h, diagonal ? k : k * k);
      need("lowrankApplyG", "v", v, count * n);
      need("lowrankApplyG", "y", y, count * n);
      scoped(() => {
        const pe = put(e),
          ph = put(h),
          pv = put(v),
          py = put(y, false),
          pw = alloc(Math.max(8, Number(call("qg_lowrank_apply_g_workspace_bytes", I(n), I(k), I(count)))));
        check("lowrankApplyG", call("qg_lowrank_apply_g", pe, I(n), I(k), ph, bool(diagonal), pv, I(count), py, pw, 1));
        take(py, y);
      });
    };
  if (has("qg_lowrank_weighted_rows"))
    optional.lowrankWeightedRows = (e, n, k, h, out, _threads) => {
      need("lowrankWeightedRows", "e", e, n * k);
      need("lowrankWeightedRows", "h", h, k * k);
      need("lowrankWeightedRows", "out", out, n * k);
      scoped(() => {
        const pe = put(e),
          ph = put(h),
          po = put(out, false);
        check("lowrankWeightedRows", call("qg_lowrank_weighted_rows", pe, I(n), I(k), ph, po, 1));
        take(po, out);
      });
    };
  if (has("qg_add_low_rank"))
    optional.addLowRank = (out, a, b, n, k, rank, _threads) => {
      need("addLowRank", "out", out, n * k);
      need("addLowRank", "a", a, k * rank);
      need("addLowRank", "b", b, rank * n);
      scoped(() => {
        const po = put(out),
          pa = put(a),
          pb = put(b),
          pw = alloc(Math.max(8, Number(call("qg_add_low_rank_workspace_bytes", I(k), I(rank)))));
        check("addLowRank", call("qg_add_low_rank", po, pa, pb, I(n), I(k), I(rank), pw, 1));
        take(po, out);
      });
    };
  if (has("qg_scale_columns_f32"))
    optional.scaleColumns = (input, rows, cols, scales, out, _threads) => {
      need("scaleColumns", "input", input, rows * cols);
      need("scaleColumns", "scales", scales, cols);
      need("scaleColumns", "out", out, rows * cols);
      scoped(() => {
        const pi = put(input),
          ps = put(scales),
          po = put(out, false);
        check("scaleColumns", call("qg_scale_columns_f32", pi, I(rows), I(cols), ps, po, 1));
        take(po, out);
      });
    };
  if (has("qg_activation_stats"))
    optional.activationStats = (data, rows, channels, sumAbs, sumSq, gram, gramRows, _threads) => {
      need("activationStats", "data", data, rows * channels);
      need("activationStats", "sumAbs", sumAbs, channels);
      need("activationStats", "sumSq", sumSq, channels);
      need("activationStats", "gram", gram, gramRows > 0 ? channels * channels : 0);
      scoped(() => {
        const pd = put(data),
          pa = put(sumAbs),
          pq = put(sumSq),
          pg = gramRows > 0 ? put(gram) : 0;
        check("activationStats", call("qg_activation_stats", pd, I(rows), I(channels), pa, pq, pg, I(gramRows), 1));
        take(pa, sumAbs);
        take(pq, sumSq);
        if (gramRows > 0) take(pg, gram);
      });
    };
  if (has("qg_transpose_u8"))
    optional.transposeU8 = (input, rows, cols, stride, out, _threads) => {
      need("transposeU8", "input", input, rows > 0 ? (rows - 1) * stride + cols : 0);
      need("transposeU8", "out", out, rows * cols);
      scoped(() => {
        const pi = put(input),
          po = put(out, false);
        check("transposeU8", call("qg_transpose_u8", pi, I(rows), I(cols), I(stride), po, 1));
        take(po, out);
      });
    };
  if (has("qg_normalize_blocks"))
    optional.normalizeBlocks = (wT, n, k, bs, out) => {
      need("normalizeBlocks", "wT", wT, n * k);
      need("normalizeBlocks", "out", out, n * k);
      scoped(() => {
        const pw = put(wT),
          po = put(out, false);
        check("normalizeBlocks", call("qg_normalize_blocks", pw, I(n), I(k), bs, po));
        take(po, out);
      });
    };
  if (has("qg_pack_nibbles_hi"))
    optional.packNibblesHigh = (codes, count, out) => {
      need("packNibblesHigh", "codes", codes, count);
      need("packNibblesHigh", "out", out, Math.ceil(count / 2));
      scoped(() => {
        const pc = put(codes),
          po = put(out, false);
        check("packNibblesHigh", call("qg_pack_nibbles_hi", pc, I(count), po));
        take(po, out);
      });
    };
  if (has("qg_weight_moments"))
    optional.weightMoments = (w, threshold, out) => {
      need("weightMoments", "out", out, 3);
      scoped(() => {
        const pw = put(w),
          po = put(out, false);
        check("weightMoments", call("qg_weight_moments", pw, I(w.length), threshold, po));
        take(po, out);
      });
    };
  if (has("qg_weighted_sq_error"))
    optional.weightedSquaredError = (w, deq, n, k, h, out) => {
      need("weightedSquaredError", "w", w, n * k);
      need("weightedSquaredError", "deq", deq, n * k);
      need("weightedSquaredError", "out", out, 1);
      if (h.length > 0) need("weightedSquaredError", "h", h, k);
      scoped(() => {
        const pw = put(w),
          pd = put(deq),
          ph = h.length > 0 ? put(h) : 0,
          po = put(out, false);
        check("weightedSquaredError", call("qg_weighted_sq_error", pw, pd, I(n), I(k), ph, po));
        take(po, out);
      });
    };
  if (has("qg_refine_scales"))
    optional.refineScales = (wT, n, k, bits, bs, zps, meanSquare, rounds, codes, scales, _threads) => {
      const bpr = Math.ceil(k / bs);
      need("refineScales", "wT", wT, n * k);
      need("refineScales", "zeroPoints", zps, n * bpr);
      need("refineScales", "meanSquare", meanSquare, k);
      need("refineScales", "codes", codes, n * bpr * bs);
      need("refineScales", "scales", scales, n * bpr);
      scoped(() => {
        const pw = put(wT),
          pz = put(zps),
          pm = put(meanSquare),
          pc = put(codes),
          ps = put(scales);
        check("refineScales", call("qg_refine_scales", pw, I(n), I(k), bits, bs, pz, pm, rounds, pc, ps, 1));
        take(pc, codes);
        take(ps, scales);
      });
    };
  if (has("qg_sum_quadratic_forms_segments"))
    optional.sumQuadraticFormsSegments = (h, d, rows, k, segmentRows, out, _threads) => {
      need("sumQuadraticFormsSegments", "h", h, k * k);
      need("sumQuadraticFormsSegments", "d", d, rows * k);
      need("sumQuadraticFormsSegments", "out", out, Math.floor(rows / Math.max(1, segmentRows)));
      scoped(() => {
        const ph = put(h),
          pd = put(d),
          po = put(out, false),
          pw = alloc(Math.max(8, Number(call("qg_quadratic_forms_workspace_bytes", I(rows), I(k)))));
        check("sumQuadraticFormsSegments", call("qg_sum_quadratic_forms_segments", ph, pd, I(rows), I(k), I(segmentRows), pw, 1, po));
        take(po, out);
      });
    };
  if (has("qg_sort_prefix_f32"))
    optional.sortPrefix = (values, x, w, wx, wxx) => {
      const n = values.length;
      need("sortPrefix", "x", x, n);
      need("sortPrefix", "w", w, n + 1);
      need("sortPrefix", "wx", wx, n + 1);
      need("sortPrefix", "wxx", wxx, n + 1);
      return scoped(() => {
        const pv = put(values),
          px = put(x, false),
          pw = put(w, false),
          pa = put(wx, false),
          pb = put(wxx, false);
        if (call("qg_sort_prefix_f32", pv, I(n), px, pw, pa, pb) !== 0) return false;
        take(px, x);
        take(pw, w);
        take(pa, wx);
        take(pb, wxx);
        return true;
      });
    };

  return {
    ...optional,
    isa() {
      const ptr = call("qg_isa");
      const bytesView = new Uint8Array(memory.buffer, ptr);
      return new TextDecoder().decode(bytesView.subarray(0, bytesView.indexOf(0)));
    },
    kernelImpl: (op, format) => call("qg_kernel_impl", op, format),
    forceRef: (on) => void call("qg_force_ref", bool(on)),
    structSizes() {
      return scoped(() => {
        const ptr = alloc(256);
        const count = call("qg_struct_sizes", ptr, 64);
        return Array.from(new Int32Array(memory.buffer, ptr, count));
      });
    },
    formatField: (format, field) => call("qg_format_field", format, field),
    quantizeInt(wT, n, k, bits, bs, sym, clip, codes, scales, zps, _threads) {
      const bpr = Math.ceil(k / bs);
      need("quantizeInt", "wT", wT, n * k);
      need("quantizeInt", "codes", codes, n * bpr * bs);
      need("quantizeInt", "scales", scales, n * bpr);
      need("quantizeInt", "zeroPoints", zps, n * bpr);
      scoped(() => {
        const pw = put(wT),
          pc = put(codes, false),
          ps = put(scales, false),
          pz = put(zps, false);
        check("quantizeInt", call("qg_quantize_int", pw, I(n), I(k), bits, bs, bool(sym), bool(clip), pc, ps, pz, 1));
        take(pc, codes);
        take(ps, scales);
        take(pz, zps);
      });
    },
    packBits(codes, bits, groupLength, out) {
      scoped(() => {
        const pc = put(codes),
          po = put(out, false);
        check("packBits", call("qg_pack_bits", pc, I(codes.length), bits, I(groupLength), po));
        take(po, out);
      });
    },
    unpackBits(packed, bits, groupLength, groups, out) {
      need("unpackBits", "out", out, groups * groupLength);
      scoped(() => {
        const pp = put(packed),
          po = put(out, false);
        check("unpackBits", call("qg_unpack_bits", pp, bits, I(groupLength), I(groups), po));
        take(po, out);
      });
    },
    dequantizeInt(packed, scales, zps, n, k, bits, bs, out) {
      need("dequantizeInt", "out", out, n * k);
      need("dequantizeInt", "packed", packed, n * Math.ceil(k / bs) * Math.ceil((bs * bits) / 8));
      scoped(() => {
        const pp = put(packed),
          ps = put(scales),
          pz = put(zps),
          po = put(out, false);
        check("dequantizeInt", call("qg_dequantize_int", pp, ps, pz, I(n), I(k), bits, bs, po));
        take(po, out);
      });
    },
    gemmInt(packed, scales, zps, n, k, bits, bs, x, m, y, _threads) {
      need("gemmInt", "x", x, m * k);
      need("gemmInt", "y", y, m * n);
      need("gemmInt", "packed", packed, n * Math.ceil(k / bs) * Math.ceil((bs * bits) / 8));
      need("gemmInt", "scales", scales, n * Math.ceil(k / bs));
      scoped(() => {
        const pp = put(packed),
          ps = put(scales),
          pz = put(zps),
          px = put(x),
          py = put(y, false);
        check("gemmInt", call("qg_gemm_int", pp, ps, pz, I(n), I(k), bits, bs, px, I(m), py, 1));
        take(py, y);
      });
    },
    gemvInt4Q8(packed, scales, zps, n, k, bs, x, y, _threads) {
      need("gemvInt4Q8", "x", x, k);
      need("gemvInt4Q8", "y", y, n);
      need("gemvInt4Q8", "packed", packed, n * Math.ceil(k / bs) * (bs / 2));
      scoped(() => {
        const wsBytes = Number(call("qg_gemv_q8_workspace_bytes", I(k), bs));
        if (wsBytes <= 0) throw new RangeError(`gemvInt4Q8: blockSize must be a multiple of 32, not ${bs}`);
        const pp = put(packed),
          ps = put(scales),
          pz = put(zps),
          px = put(x),
          py = put(y, false),
          pw = alloc(wsBytes);
        check("gemvInt4Q8", call("qg_gemv_int4_q8", pp, ps, pz, I(n), I(k), bs, px, py, pw, 1));
        take(py, y);
      });
    },
    quantizeLut(format, wT, n, k, bs, table, tableLength, packed, scales, _threads) {
      need("quantizeLut", "wT", wT, n * k);
      scoped(() => {
        const pw = put(wT),
          pt = put(table),
          pp = put(packed, false),
          ps = put(scales, false);
        check("quantizeLut", call("qg_quantize_lut", format, pw, I(n), I(k), bs, pt, tableLength, pp, ps, 1));
        take(pp, packed);
        if (scales) take(ps, scales);
      });
    },
    dequantizeLut(format, packed, scales, table, n, k, bs, out) {
      need("dequantizeLut", "out", out, n * k);
      scoped(() => {
        const pp = put(packed),
          ps = put(scales),
          pt = put(table),
          po = put(out, false);
        check("dequantizeLut", call("qg_dequantize_lut", format, pp, ps, pt, I(n), I(k), bs, po));
        take(po, out);
      });
    },
    gemmLut(format, packed, scales, table, n, k, bs, x, m, y, _threads) {
      need("gemmLut", "x", x, m * k);
      need("gemmLut", "y", y, m * n);
      scoped(() => {
        const pp = put(packed),
          ps = put(scales),
          pt = put(table),
          px = put(x),
          py = put(y, false);
        check("gemmLut", call("qg_gemm_lut", format, pp, ps, pt, I(n), I(k), bs, px, I(m), py, 1));
        take(py, y);
      });
    },
    codebookFit(w, entries, iterations, table) {
      need("codebookFit", "table", table, 16);
      scoped(() => {
        const pw = put(w),
          pt = put(table, false);
        check("codebookFit", call("qg_codebook_fit", pw, I(w.length), entries, iterations, pt));
        take(pt, table);
      });
    },
    gemmF32(w, n, k, x, m, y, _threads) {
      need("gemmF32", "w", w, n * k);
      need("gemmF32", "x", x, m * k);
      need("gemmF32", "y", y, m * n);
      scoped(() => {
        const pw = put(w),
          px = put(x),
          py = put(y, false);
        check("gemmF32", call("qg_gemm_f32", pw, I(n), I(k), px, I(m), py, 1));
        take(py, y);
      });
    },
    f32ToF16(input, out) {
      scoped(() => {
        const pi = put(input),
          po = put(out, false);
        check("f32ToF16", call("qg_f32_to_f16", pi, I(input.length), po));
        take(po, out);
      });
    },
    f16ToF32(input, out) {
      scoped(() => {
        const pi = put(input),
          po = put(out, false);
        check("f16ToF32", call("qg_f16_to_f32", pi, I(input.length), po));
        take(po, out);
      });
    },
    readSum(buffer, _threads) {
      return scoped(() => call("qg_read_sum", put(buffer), I(buffer.length), 1));
    },
    transposeF32(input, rows, cols, out, _threads) {
      need("transposeF32", "input", input, rows * cols);
      need("transposeF32", "out", out, rows * cols);
      scoped(() => {
        const pi = put(input),
          po = put(out, false);
        check("transposeF32", call("qg_transpose_f32", pi, I(rows), I(cols), po, 1));
        take(po, out);
      });
    },
    dequantizeCodes(codes, scales, zps, n, k, bs, out, _threads) {
      const bpr = Math.ceil(k / bs);
      need("dequantizeCodes", "codes", codes, n * bpr * bs);
      need("dequantizeCodes", "scales", scales, n * bpr);
      need("dequantizeCodes", "zeroPoints", zps, n * bpr);
      need("dequantizeCodes", "out", out, n * k);
      scoped(() => {
        const pc = put(codes),
          ps = put(scales),
          pz = put(zps),
          po = put(out, false);
        check("dequantizeCodes", call("qg_dequantize_codes", pc, ps, pz, I(n), I(k), bs, po, 1));
        take(po, out);
      });
    },
    weightError(w, deq, n, k, sums, colErr, colNorm) {
      need("weightError", "w", w, n * k);
      need("weightError", "deq", deq, n * k);
      need("weightError", "sums", sums, 3);
      need("weightError", "colErr", colErr, k);
      need("weightError", "colNorm", colNorm, k);
      scoped(() => {
        const pw = put(w),
          pd = put(deq),
          ps = put(sums, false),
          pe = put(colErr, false),
          pn = put(colNorm, false);
        check("weightError", call("qg_weight_error", pw, pd, I(n), I(k), ps, pe, pn));
        take(ps, sums);
        take(pe, colErr);
        take(pn, colNorm);
      });
    },
    histogramU8(codes, alphabet, histogram) {
      need("histogramU8", "histogram", histogram, alphabet);
      return scoped(() => {
        const pc = put(codes),
          ph = put(histogram, false);
        const ok = call("qg_histogram_u8", pc, I(codes.length), alphabet, ph) === 0;
        if (ok) take(ph, histogram);
        return ok;
      });
    },
    quantizeIntWeighted(wT, n, k, bits, bs, sym, clip, importance, codes, scales, zps, _threads) {
      const bpr = Math.ceil(k / bs);
      need("quantizeIntWeighted", "wT", wT, n * k);
      need("quantizeIntWeighted", "importance", importance, k);
      need("quantizeIntWeighted", "codes", codes, n * bpr * bs);
      need("quantizeIntWeighted", "scales", scales, n * bpr);
      need("quantizeIntWeighted", "zeroPoints", zps, n * bpr);
      scoped(() => {
        const pw = put(wT),
          pi = put(importance),
          pc = put(codes, false),
          ps = put(scales, false),
          pz = put(zps, false);
        check("quantizeIntWeighted", call("qg_quantize_int_weighted", pw, I(n), I(k), bits, bs, bool(sym), bool(clip), pi, pc, ps, pz, 1));
        take(pc, codes);
        take(ps, scales);
        take(pz, zps);
      });
    },
    gptq(wT, n, k, hessian, bits, bs, sym, clip, dampRatio, actOrder, staticGroups, zeroDead, codes, scales, zps, _threads) {
      const bpr = Math.ceil(k / bs);
      need("gptq", "wT", wT, n * k);
      need("gptq", "hessian", hessian, k * k);
      need("gptq", "codes", codes, n * bpr * bs);
      need("gptq", "scales", scales, n * bpr);
      need("gptq", "zeroPoints", zps, n * bpr);
      if (!Number.isFinite(dampRatio)) throw new TypeError("gptq: argument 'dampRatio' must be a finite number");
      scoped(() => {
        const wsBytes = Number(call("qg_gptq_workspace_bytes", I(n), I(k)));
        const pw = put(wT),
          ph = put(hessian),
          pc = put(codes, false),
          ps = put(scales, false),
          pz = put(zps, false),
          pws = alloc(wsBytes + 64);
        const rc = call(
          "qg_gptq",
          pw,
          I(n),
          I(k),
          ph,
          bits,
          bs,
          bool(sym),
          bool(clip),
          dampRatio,
          bool(actOrder),
          bool(staticGroups),
          bool(zeroDead),
          pc,
          ps,
          pz,
          pws,
          1,
        );
        if (rc === -3) throw new RangeError("gptq: the damped Hessian is not positive definite (NaN or negative eigenvalues in the calibration statistics?)");
        check("gptq", rc);
        take(pc, codes);
        take(ps, scales);
        take(pz, zps);
      });
    },
    sumQuadraticForms(h, d, rows, k, _threads) {
      need("sumQuadraticForms", "h", h, k * k);
      need("sumQuadraticForms", "d", d, rows * k);
      return scoped(() => {
        const wsBytes = Number(call("qg_quadratic_forms_workspace_bytes", I(rows), I(k)));
        const ph = put(h),
          pd = put(d),
          po = alloc(8),
          pws = alloc(wsBytes);
        check("sumQuadraticForms", call("qg_sum_quadratic_forms", ph, pd, I(rows), I(k), pws, 1, po));
        return new Float64Array(memory.buffer, po, 1)[0]!;
      });
    },
    weightErrorCodes(w, codes, scales, zps, n, k, bs, sums, colErr, colNorm) {
      const bpr = Math.ceil(k / bs);
      need("weightErrorCodes", "w", w, n * k);
      need("weightErrorCodes", "codes", codes, n * bpr * bs);
      need("weightErrorCodes", "scales", scales, n * bpr);
      need("weightErrorCodes", "zeroPoints", zps, n * bpr);
      need("weightErrorCodes", "colErr", colErr, k);
      need("weightErrorCodes", "colNorm", colNorm, k);
      scoped(() => {
        const pw = put(w),
          pc = put(codes),
          ps = put(scales),
          pz = put(zps),
          psum = put(sums, false),
          pe = put(colErr, false),
          pn = put(colNorm, false);
        check("weightErrorCodes", call("qg_weight_error_codes", pw, pc, ps, pz, I(n), I(k), bs, psum, pe, pn));
        take(psum, sums);
        take(pe, colErr);
        take(pn, colNorm);
      });
    },
    gemmInt4Q8(packed, scales, zps, n, k, bs, x, m, y, _threads) {
      need("gemmInt4Q8", "x", x, m * k);
      need("gemmInt4Q8", "y", y, m * n);
      need("gemmInt4Q8", "packed", packed, n * Math.ceil(k / bs) * (bs / 2));
      scoped(() => {
        const wsBytes = Number(call("qg_gemm_q8_workspace_bytes", I(m), I(k), bs));
        if (wsBytes <= 0) throw new RangeError(`gemmInt4Q8: blockSize must be a multiple of 32, not ${bs}`);
        const pp = put(packed),
          ps = put(scales),
          pz = put(zps),
          px = put(x),
          py = put(y, false),
          pw = alloc(wsBytes);
        check("gemmInt4Q8", call("qg_gemm_int4_q8", pp, ps, pz, I(n), I(k), bs, px, I(m), py, pw, 1));
        take(py, y);
      });
    },
  };
}
