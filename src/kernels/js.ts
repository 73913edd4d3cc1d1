// The "js" backend: RawKernels over the TypeScript reference (src/quantize/blockwise.ts), so the
// pipeline works where neither the addon nor WebAssembly loads. Integer formats only; the table
// formats report no kernel (hasKernel() is false) and throw if called.
import { sumQuadraticFormsRef } from "../quantize/algorithms/linalg.js";
import { dequantizeCodesRef, packBitsRef, quantizeBlockwiseRef, transposeRef, unpackBitsRef, weightErrorRef } from "../quantize/blockwise.js";
import { FORMAT_IDS, KERNEL_OPS } from "./formats.js";
import type { RawKernels } from "./raw.js";

const f = Math.fround;

function code(packed: Uint8Array, base: number, i: number, bits: number): number {
  const pos = i * bits;
  let v = packed[base + (pos >> 3)]!;
  if ((pos & 7) + bits > 8) v |= packed[base + (pos >> 3) + 1]! << 8;
  return (v >> (pos & 7)) & ((1 << bits) - 1);
}

function unsupported(what: string): never {
  throw new Error(`${what} has no TypeScript kernel; load the native or wasm backend`);
}

export function jsRawKernels(): RawKernels {
  const intIds: number[] = [FORMAT_IDS.int8, FORMAT_IDS.int4, FORMAT_IDS.int3, FORMAT_IDS.int2];
  return {
    isa: () => "typescript",
    kernelImpl(op, format) {
      if (format === FORMAT_IDS.f32 && (op === KERNEL_OPS.gemv || op === KERNEL_OPS.gemm)) return 1;
      return intIds.includes(format) ? 1 : 0;
    },
    forceRef: () => undefined,
    structSizes: () => [],
    formatField: () => -1,
    quantizeInt(wT, n, k, bits, blockSize, symmetric, clipSearch, codes, scales, zeroPoints) {
      const q = quantizeBlockwiseRef(wT.length === n * k ? wT : wT.subarray(0, n * k), n, k, {
        bits: bits as 2 | 3 | 4 | 8,
        blockSize,
        symmetric,
        clipSearch,
      });
      codes.set(q.codes);
      scales.set(q.scales);
      zeroPoints.set(q.zeroPoints);
    },
    packBits(codes, bits, groupLength, out) {
      out.set(packBitsRef(codes, bits, groupLength));
    },
    unpackBits(packed, bits, groupLength, groups, out) {
      out.set(unpackBitsRef(packed, bits, groupLength, groups));
    },
    dequantizeInt(packed, scales, zeroPoints, n, k, bits, bs, out) {
      const bpr = Math.ceil(k / bs),
        bb = Math.ceil((bs * bits) / 8),
        mid = 1 << (bits - 1);
      for (let r = 0; r < n; r++)
        for (let i = 0; i < k; i++) {
          const b = Math.floor(i / bs),
            bi = r * bpr + b;
          const c = code(packed, bi * bb, i % bs, bits);
          out[r * k + i] = f((c - (zeroPoints ? zeroPoints[bi]! : mid)) * scales[bi]!);
        }
    },
    gemmInt(packed, scales, zeroPoints, n, k, bits, bs, x, m, y) {
      const bpr = Math.ceil(k / bs),
        bb = Math.ceil((bs * bits) / 8),
        mid = 1 << (bits - 1);
      for (let r = 0; r < n; r++)
        for (let mi = 0; mi < m; mi++) {
          let acc = 0;
          for (let b = 0; b < bpr; b++) {
            const bi = r * bpr + b,
              z = zeroPoints ? zeroPoints[bi]! : mid,
              len = Math.min(bs, k - b * bs);
            let s = 0;
            for (let i = 0; i < len; i++) s = f(s + f((code(packed, bi * bb, i, bits) - z) * x[mi * k + b * bs + i]!));
            acc = f(acc + f(scales[bi]! * s));
          }
          y[mi * n + r] = acc;
        }
    },
    gemvInt4Q8: () => unsupported("gemvBlockwiseInt8"),
    quantizeLut: () => unsupported("quantizeTable"),
    dequantizeLut: () => unsupported("dequantizeTable"),
    gemmLut: () => unsupported("gemmTable"),
    codebookFit: () => unsupported("fitCodebook"),
    gemmF32(w, n, k, x, m, y) {
      for (let r = 0; r < n; r++)
        for (let mi = 0; mi < m; mi++) {
          let acc = 0;
          for (let i = 0; i < k; i++) acc = f(acc + f(w[r * k + i]! * x[mi * k + i]!));
          y[mi * n + r] = acc;
        }
    },
    f32ToF16(input, out) {
      const view = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < input.length; i++) {
        view.setFloat32(0, input[i]!);
        const x = view.getUint32(0),
          sign = (x >>> 16) & 0x8000,
          ax = x & 0x7fffffff;
        if (ax >= 0x7f800000) out[i] = sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0);
        else if (ax >= 0x477ff000) out[i] = sign | 0x7c00;
        else if (ax < 0x38800000) {
          view.setUint32(0, ax);
          const s = view.getFloat32(0) * 16777216;
          const r = Math.round(s),
            tie = Math.abs(s - Math.trunc(s)) === 0.5;
          out[i] = sign | (tie && r % 2 ? r - 1 : r);
        } else out[i] = sign | ((ax + 0xfff + ((ax >>> 13) & 1) - 0x38000000) >>> 13);
      }
    },
    f16ToF32(input, out) {
      for (let i = 0; i < input.length; i++) {
        const h = input[i]!,
          s = h & 0x8000 ? -1 : 1,
          e = (h >> 10) & 31,
          m = h & 1023;
        out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      }
    },
    readSum(buffer) {
      let s = 0;
      for (let i = 0; i < buffer.length; i++) s += buffer[i]!;
      return s;
    },
    transposeF32(input, rows, cols, out) {
      out.set(transposeRef(input.subarray(0, rows * cols), rows, cols));
    },
    dequantizeCodes(codes, scales, zeroPoints, n, k, blockSize, out) {
      dequantizeCodesRef(codes, scales, zeroPoints, n, k, blockSize, out);
    },
    weightError(w, deq, n, k, sums, colErr, colNorm) {
      weightErrorRef(w, deq, n, k, sums, colErr, colNorm);
    },
    histogramU8(codes, alphabet, histogram) {
      histogram.fill(0, 0, alphabet);
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i]!;
        if (c >= alphabet) return false;
        histogram[c]!++;
      }
      return true;
    },
    quantizeIntWeighted(wT, n, k, bits, blockSize, symmetric, clipSearch, importance, codes, scales, zeroPoints) {
      const q = quantizeBlockwiseRef(wT.subarray(0, n * k), n, k, { bits: bits as 2 | 3 | 4 | 8, blockSize, symmetric, clipSearch }, importance);
      codes.set(q.codes);
      scales.set(q.scales);
      zeroPoints.set(q.zeroPoints);
    },
    gptq: () => unsupported("gptq"),
    sumQuadraticForms: (h, d, rows, k) => sumQuadraticFormsRef(h, d, rows, k),
    weightErrorCodes(w, codes, scales, zeroPoints, n, k, blockSize, sums, colErr, colNorm) {
      const deq = new Float32Array(n * k);
      dequantizeCodesRef(codes, scales, zeroPoints, n, k, blockSize, deq);
      weightErrorRef(w, deq, n, k, sums, colErr, colNorm);
    },
    gemmInt4Q8: () => unsupported("gemmBlockwiseInt8"),
  };
}
