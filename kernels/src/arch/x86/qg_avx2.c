/* x86-64 AVX2+FMA kernels. Compiled with per-function target attributes, so the addon's baseline
 * stays plain x86-64 and these run only where CPU detection found AVX2 and FMA. Every kernel ends
 * with the same scalar tail as its reference. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>
#include "../../qg_internal.h"

#define QG_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QG_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

QG_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* ---------------- integer quantizer: byte-identical to qg_quantize_int_ref ---------------- */

QG_INLINE __m256 round_away8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 ad = _mm256_andnot_ps(sign, _mm256_sub_ps(x, t));
  const __m256 away = _mm256_cmp_ps(ad, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(x, sign));
  return _mm256_add_ps(t, _mm256_and_ps(away, one));
}

QG_INLINE void store8_u8(uint8_t* out, __m256 q) {
  const __m256i i = _mm256_cvttps_epi32(q); /* NaN gives INT_MIN, which packus saturates to 0 */
  const __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  _mm_storel_epi64((__m128i*)out, _mm_packus_epi16(p16, p16));
}

/* Min, max (both starting at 0) and the first element of largest magnitude, as blockParams(). */
QG_INLINE void range_avx2(const float* w, int64_t len, float* lo_out, float* hi_out, float* ext_out) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 lo = _mm256_setzero_ps(), hi = lo, am = lo;
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 v = _mm256_loadu_ps(w + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
    am = _mm256_max_ps(am, _mm256_and_ps(v, absmask));
  }
  float l[8], h[8], a[8];
  _mm256_storeu_ps(l, lo); _mm256_storeu_ps(h, hi); _mm256_storeu_ps(a, am);
  float lo1 = 0.0f, hi1 = 0.0f, amax = 0.0f;
  for (int j = 0; j < 8; j++) {
    lo1 = l[j] < lo1 ? l[j] : lo1;
    hi1 = h[j] > hi1 ? h[j] : hi1;
    amax = a[j] > amax ? a[j] : amax;
  }
  for (int64_t j = i; j < len; j++) { /* scalar tail */
    lo1 = w[j] < lo1 ? w[j] : lo1;
    hi1 = w[j] > hi1 ? w[j] : hi1;
    amax = __builtin_fabsf(w[j]) > amax ? __builtin_fabsf(w[j]) : amax;
  }
  float ext = 0.0f; /* +0 when the block is all zeros, as the reference's initial value */
  if (amax > 0.0f) {
    int64_t j = 0;
    const __m256 target = _mm256_set1_ps(amax);
    for (; j + 8 <= len; j += 8) {
      const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(w + j), absmask), target, _CMP_EQ_OQ));
      if (mask) { ext = w[j + __builtin_ctz((unsigned)mask)]; j = -1; break; }
    }
    if (j >= 0)
      for (; j < len; j++)
        if (__builtin_fabsf(w[j]) == amax) { ext = w[j]; break; }
  }
  *lo_out = lo1; *hi_out = hi1; *ext_out = ext;
}

QG_INLINE void encode_rtn_avx2(const float* w, int64_t len, block_params p, float qmax, uint8_t* out) {
  const float inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(p.zp), vq = _mm256_set1_ps(qmax);
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 r = round_away8(_mm256_mul_ps(_mm256_loadu_ps(w + i), vinv));
    /* max(0, x) / min(qmax, x) keep a NaN x, as Math.max / Math.min do */
    store8_u8(out + i, _mm256_min_ps(vq, _mm256_max_ps(zero, _mm256_add_ps(r, vzp))));
  }
  for (; i < len; i++) out[i] = qg_js_u8(qg_js_clamp(qg_round_away(w[i] * inv) + p.zp, 0.0f, qmax));
}

QG_AVX2 static void quantize_int_avx2(const float* wT, int64_t k, int bits, int bs, int sym, int clip, uint8_t* codes,
                                      float* scales, uint8_t* zp, int64_t r0, int64_t r1) {
  const float qmax = (float)((1 << bits) - 1);
  const int64_t bpr = (k + bs - 1) / bs;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      float lo, hi, ext;
      range_avx2(w, len, &lo, &hi, &ext);
      block_params best = params_from_range(lo, hi, ext, bits, sym, 1.0f);
      if (clip) {
        /* All 16 clip ratios at once, one per lane; each lane sums its squared errors in element order,
         * so every candidate's error equals the reference's bit for bit. */
        float s[16], nz[16], qz[16], inv[16];
        block_params ps[16];
        for (int r = 0; r < 16; r++) {
          ps[r] = params_from_range(lo, hi, ext, bits, sym, qg_clip_ratio(r));
          s[r] = ps[r].scale;
          nz[r] = -ps[r].zp;
          qz[r] = qmax - ps[r].zp;
          inv[r] = ps[r].scale == 0.0f ? 0.0f : 1.0f / ps[r].scale;
        }
        __m256 vs[2], vnz[2], vqz[2], vinv[2], err[2];
        for (int h = 0; h < 2; h++) {
          vs[h] = _mm256_loadu_ps(s + 8 * h);
          vnz[h] = _mm256_loadu_ps(nz + 8 * h);
          vqz[h] = _mm256_loadu_ps(qz + 8 * h);
          vinv[h] = _mm256_loadu_ps(inv + 8 * h);
          err[h] = _mm256_setzero_ps();
        }
        for (int64_t i = 0; i < len; i++) {
          const __m256 v = _mm256_broadcast_ss(w + i);
          for (int h = 0; h < 2; h++) {
            const __m256 r = round_away8(_mm256_mul_ps(v, vinv[h]));
            const __m256 q = _mm256_min_ps(vqz[h], _mm256_max_ps(vnz[h], r)); /* (code - zp), NaN kept */
            const __m256 d = _mm256_sub_ps(v, _mm256_mul_ps(q, vs[h]));
            err[h] = _mm256_add_ps(err[h], _mm256_mul_ps(d, d));
          }
        }
        float e[16];
        _mm256_storeu_ps(e, err[0]);
        _mm256_storeu_ps(e + 8, err[1]);
        int bestr = 0;
        float best_err = e[0];
        for (int r = 1; r < 16; r++)
          if (e[r] < best_err) { best_err = e[r]; bestr = r; }
        best = ps[bestr];
      }
      uint8_t* out = codes + bi * bs;
      encode_rtn_avx2(w, len, best, qmax, out);
      scales[bi] = best.scale;
      zp[bi] = qg_js_u8(best.zp);
      memset(out + len, qg_js_u8(best.zp), (size_t)(bs - len));
    }
  }
}

/* ---------------- GEMV / GEMM on packed codes (shared with qg_avx512.c) ---------------- */

#define QG_MM "avx2,fma,f16c"
#define QG_MM_512 0
#define QG_MM_SUFFIX _avx2
#include "qg_x86_mm.h"

/* ---------------- float32 baseline ---------------- */

QG_AVX2 static void gemm_f32_avx2(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y, int64_t n0,
                                  int64_t n1) {
  for (int64_t row = n0; row < n1; row++) {
    const float* wr = w + row * k;
    for (int64_t mi = 0; mi < m; mi++) {
      const float* xr = x + mi * k;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t i = 0;
      for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xr + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(xr + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 16), _mm256_loadu_ps(xr + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 24), _mm256_loadu_ps(xr + i + 24), a3);
      }
      for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xr + i), a0);
      float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      for (; i < k; i++) t += wr[i] * xr[i];
      y[mi * n + row] = t;
    }
  }
}

QG_AVX2 static float read_sum_avx2(const float* buf, int64_t count) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf + i + 24));
  }
  float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < count; i++) t += buf[i];
  return t;
}

#define QG_RU_CAT2(a, b) a##b
#define QG_RU_CAT(a, b) QG_RU_CAT2(a, b)
#define QG_RU_NAME rank_update_avx2
#define QG_RU_ATTR static QG_AVX2
#define QG_RU_W 4
#include "../../qg_rank_update.h"

void qg_fill_avx2(qg_dispatch* d) {
  d->isa = "avx2";
  d->quant_int = quantize_int_avx2;
  d->gemv_int[2] = d->gemm_int[2] = gemm_i2_avx2;
  d->gemv_int[3] = d->gemm_int[3] = gemm_i3_avx2;
  d->gemv_int[4] = d->gemm_int[4] = gemm_i4_avx2;
  d->gemv_int[8] = d->gemm_int[8] = gemm_i8_avx2;
  d->gemm_lut[QG_FMT_NF4] = d->gemm_lut[QG_FMT_FP4] = d->gemm_lut[QG_FMT_MXFP4] = d->gemm_lut[QG_FMT_CODEBOOK] = gemm_lut4_avx2;
  d->gemm_lut[QG_FMT_FP8] = gemm_fp8_avx2;
  d->gemm_f32 = gemm_f32_avx2;
  d->read_sum = read_sum_avx2;
  d->gemv_int4_q8 = gemv_int4_q8t_avx2;
  d->rank_update = rank_update_avx2;
  d->gemm_int4_q8 = gemm_int4_q8t_avx2;
  d->quant_act_q8 = quant_act_q8_avx2;
}
#endif
