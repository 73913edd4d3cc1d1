/* WebAssembly SIMD128 kernels: int4 / int8 GEMV and GEMM, float32 GEMV/GEMM. Other formats keep
 * the scalar references (qg_kernel_impl() says which). No FMA in SIMD128: multiply then add. */
#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#include "../../qg_internal.h"

static inline float hsum4(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

/* 16 codes (int4: 8 bytes; int8: 16 bytes) of a block as four f32x4 of (code - zp). */
static inline void decode16(int bits, const uint8_t* p, v128_t zp, v128_t out[4]) {
  v128_t c;
  if (bits == 4) {
    const v128_t v = wasm_v128_load64_zero(p);
    const v128_t lo = wasm_v128_and(v, wasm_i8x16_splat(15)), hi = wasm_u8x16_shr(v, 4);
    c = wasm_i8x16_shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  } else {
    c = wasm_v128_load(p);
  }
  const v128_t c0 = wasm_u16x8_extend_low_u8x16(c), c1 = wasm_u16x8_extend_high_u8x16(c);
  out[0] = wasm_f32x4_convert_i32x4(wasm_i32x4_sub(wasm_u32x4_extend_low_u16x8(c0), zp));
  out[1] = wasm_f32x4_convert_i32x4(wasm_i32x4_sub(wasm_u32x4_extend_high_u16x8(c0), zp));
  out[2] = wasm_f32x4_convert_i32x4(wasm_i32x4_sub(wasm_u32x4_extend_low_u16x8(c1), zp));
  out[3] = wasm_f32x4_convert_i32x4(wasm_i32x4_sub(wasm_u32x4_extend_high_u16x8(c1), zp));
}

static inline void gemm_int_simd(int bits, const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  if (w->bs % 16) { qg_gemm_int_ref(w, x, m, y, n0, n1); return; }
  const int64_t full = w->k / w->bs, steps = w->bs / 16, k = w->k;
  const int64_t step_bytes = bits == 4 ? 8 : 16;
  v128_t acc[QG_GEMM_TILE_M];
  for (int64_t row = n0; row < n1; row++) {
    const uint8_t* pr = w->packed + row * w->row_bytes;
    for (int64_t mi = 0; mi < m; mi++) acc[mi] = wasm_f32x4_splat(0.0f);
    for (int64_t b = 0; b < full; b++) {
      const int64_t bi = row * w->bpr + b;
      const v128_t zp = wasm_i32x4_splat(w->zp ? w->zp[bi] : 1 << (bits - 1));
      const v128_t s = wasm_f32x4_splat(w->scales[bi]);
      for (int64_t mi = 0; mi < m; mi++) {
        const float* xb = x + mi * k + b * w->bs;
        v128_t t = wasm_f32x4_splat(0.0f);
        for (int64_t st = 0; st < steps; st++) {
          v128_t d[4];
          decode16(bits, pr + b * w->block_bytes + st * step_bytes, zp, d);
          for (int j = 0; j < 4; j++) t = wasm_f32x4_add(t, wasm_f32x4_mul(d[j], wasm_v128_load(xb + 16 * st + 4 * j)));
        }
        acc[mi] = wasm_f32x4_add(acc[mi], wasm_f32x4_mul(s, t));
      }
    }
    for (int64_t mi = 0; mi < m; mi++) {
      float t = hsum4(acc[mi]);
      if (full < w->bpr) { /* scalar tail: the partial last block */
        const int64_t bi = row * w->bpr + full, len = k - full * w->bs;
        const float z = w->zp ? (float)w->zp[bi] : (float)(1 << (bits - 1));
        float a = 0.0f;
        for (int64_t i = 0; i < len; i++) a += ((float)qg_get_code(pr + full * w->block_bytes, i, bits) - z) * x[mi * k + full * w->bs + i];
        t += w->scales[bi] * a;
      }
      y[mi * w->n + row] = t;
    }
  }
}

static void gemm_i4(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) { gemm_int_simd(4, w, x, m, y, n0, n1); }
static void gemm_i8(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) { gemm_int_simd(8, w, x, m, y, n0, n1); }

static void gemm_f32_simd(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  for (int64_t row = n0; row < n1; row++)
    for (int64_t mi = 0; mi < m; mi++) {
      const float *wr = w + row * k, *xr = x + mi * k;
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(wr + i), wasm_v128_load(xr + i)));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(wr + i + 4), wasm_v128_load(xr + i + 4)));
      }
      float t = hsum4(wasm_f32x4_add(a0, a1));
      for (; i < k; i++) t += wr[i] * xr[i];
      y[mi * n + row] = t;
    }
}

void qg_fill_simd128(qg_dispatch* d) {
  d->isa = "simd128";
  d->gemm_int[4] = d->gemv_int[4] = gemm_i4;
  d->gemm_int[8] = d->gemv_int[8] = gemm_i8;
  d->gemm_f32 = gemm_f32_simd;
}
#endif
