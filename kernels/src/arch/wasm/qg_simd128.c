/* WebAssembly SIMD128 kernels: int4 / int8 GEMV and GEMM, float32 GEMV/GEMM. Other formats keep
 * the scalar references (qg_kernel_impl() says which). No FMA in SIMD128: multiply then add. */
#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#include <string.h>
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

/* ---------------- integer quantizer: byte-identical to qg_quantize_int_ref ---------------- */

/* qg_round_away on four lanes (trunc, then away from zero when |x - t| >= 0.5; NaN stays NaN). */
static inline v128_t round_away4(v128_t x) {
  const v128_t t = wasm_f32x4_trunc(x);
  const v128_t away = wasm_f32x4_ge(wasm_f32x4_abs(wasm_f32x4_sub(x, t)), wasm_f32x4_splat(0.5f));
  const v128_t one = wasm_v128_or(wasm_f32x4_splat(1.0f), wasm_v128_and(x, wasm_f32x4_splat(-0.0f)));
  return wasm_f32x4_add(t, wasm_v128_and(away, one));
}

/* Codes 0..255 (NaN gives 0, as the reference's Uint8Array store) of four lanes into out[0..3]. */
static inline void store4_u8(uint8_t* out, v128_t q) {
  const v128_t i = wasm_i32x4_trunc_sat_f32x4(q);
  const v128_t b = wasm_u8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(i, i), wasm_i16x8_narrow_i32x4(i, i));
  const uint32_t v = (uint32_t)wasm_i32x4_extract_lane(b, 0);
  memcpy(out, &v, 4);
}

/* lane-wise "if (v < lo) lo = v" etc.: NaN never wins, as in the reference's loop */
static void range_simd(const float* w, int64_t len, float* lo_out, float* hi_out, float* ext_out) {
  v128_t lo = wasm_f32x4_splat(0.0f), hi = lo, am = lo;
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    const v128_t v = wasm_v128_load(w + i);
    lo = wasm_v128_bitselect(v, lo, wasm_f32x4_lt(v, lo));
    hi = wasm_v128_bitselect(v, hi, wasm_f32x4_gt(v, hi));
    const v128_t a = wasm_f32x4_abs(v);
    am = wasm_v128_bitselect(a, am, wasm_f32x4_gt(a, am));
  }
  float l[4], h[4], a[4];
  wasm_v128_store(l, lo);
  wasm_v128_store(h, hi);
  wasm_v128_store(a, am);
  float lo1 = 0.0f, hi1 = 0.0f, amax = 0.0f;
  for (int j = 0; j < 4; j++) {
    lo1 = l[j] < lo1 ? l[j] : lo1;
    hi1 = h[j] > hi1 ? h[j] : hi1;
    amax = a[j] > amax ? a[j] : amax;
  }
  for (; i < len; i++) {
    lo1 = w[i] < lo1 ? w[i] : lo1;
    hi1 = w[i] > hi1 ? w[i] : hi1;
    amax = __builtin_fabsf(w[i]) > amax ? __builtin_fabsf(w[i]) : amax;
  }
  float ext = 0.0f; /* the first element of largest magnitude (+0 when all are zero) */
  if (amax > 0.0f)
    for (int64_t j = 0; j < len; j++)
      if (__builtin_fabsf(w[j]) == amax) { ext = w[j]; break; }
  *lo_out = lo1;
  *hi_out = hi1;
  *ext_out = ext;
}

static void encode_rtn_simd(const float* w, int64_t len, block_params p, float qmax, uint8_t* out) {
  const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  const v128_t vinv = wasm_f32x4_splat(inv), vzp = wasm_f32x4_splat(p.zp), vq = wasm_f32x4_splat(qmax), zero = wasm_f32x4_splat(0.0f);
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    const v128_t r = round_away4(wasm_f32x4_mul(wasm_v128_load(w + i), vinv));
    store4_u8(out + i, wasm_f32x4_min(vq, wasm_f32x4_max(zero, wasm_f32x4_add(r, vzp)))); /* NaN propagates */
  }
  for (; i < len; i++) out[i] = qg_js_u8(qg_js_clamp(qg_round_away(w[i] * inv) + p.zp, 0.0f, qmax));
}

static void quantize_int_simd(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes, float* scales,
                              uint8_t* zp, int64_t r0, int64_t r1) {
  const float qmax = (float)((1 << bits) - 1);
  const int64_t bpr = (k + bs - 1) / bs;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      float lo, hi, ext;
      range_simd(w, len, &lo, &hi, &ext);
      block_params best = params_from_range(lo, hi, ext, bits, sym, 1.0f);
      if (clip) {
        /* All 16 clip ratios at once, one per lane, each lane's squared errors summed in element order
         * with the reference's operations: (q - zp) * scale with q clamped to [0, qmax], NaN kept. */
        float s[16], z[16], inv[16];
        block_params ps[16];
        for (int r = 0; r < 16; r++) {
          ps[r] = params_from_range(lo, hi, ext, bits, sym, qg_clip_ratio(r));
          s[r] = ps[r].scale;
          z[r] = ps[r].zp;
          inv[r] = ps[r].scale == 0.0f ? 0.0f : 1.0f / ps[r].scale;
        }
        v128_t vs[4], vz[4], vinv[4], err[4];
        for (int h = 0; h < 4; h++) {
          vs[h] = wasm_v128_load(s + 4 * h);
          vz[h] = wasm_v128_load(z + 4 * h);
          vinv[h] = wasm_v128_load(inv + 4 * h);
          err[h] = wasm_f32x4_splat(0.0f);
        }
        const v128_t zero = wasm_f32x4_splat(0.0f), vq = wasm_f32x4_splat(qmax);
        for (int64_t i = 0; i < len; i++) {
          const v128_t v = wasm_f32x4_splat(w[i]);
          for (int h = 0; h < 4; h++) {
            const v128_t r = round_away4(wasm_f32x4_mul(v, vinv[h]));
            const v128_t q = wasm_f32x4_min(vq, wasm_f32x4_max(zero, wasm_f32x4_add(r, vz[h])));
            const v128_t d = wasm_f32x4_sub(v, wasm_f32x4_mul(wasm_f32x4_sub(q, vz[h]), vs[h]));
            err[h] = wasm_f32x4_add(err[h], wasm_f32x4_mul(d, d));
          }
        }
        float e[16];
        for (int h = 0; h < 4; h++) wasm_v128_store(e + 4 * h, err[h]);
        int bestr = 0;
        for (int r = 1; r < 16; r++)
          if (e[r] < e[bestr]) bestr = r;
        best = ps[bestr];
      }
      uint8_t* out = codes + bi * bs;
      encode_rtn_simd(w, len, best, qmax, out);
      scales[bi] = best.scale;
      zp[bi] = qg_js_u8(best.zp);
      memset(out + len, qg_js_u8(best.zp), (size_t)(bs - len));
    }
  }
}

void qg_fill_simd128(qg_dispatch* d) {
  d->isa = "simd128";
  d->quant_int = quantize_int_simd;
  d->gemm_int[4] = d->gemv_int[4] = gemm_i4;
  d->gemm_int[8] = d->gemv_int[8] = gemm_i8;
  d->gemm_f32 = gemm_f32_simd;
}
#endif
