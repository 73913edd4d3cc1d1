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

/* ---------------- GEMV / GEMM on packed codes ---------------- */

enum { K_I2 = 2, K_I3 = 3, K_I4 = 4, K_I8 = 8, K_LUT4 = 16, K_FP8 = 17 };

typedef struct {
  __m256i zp;
  __m256 tlo, thi;
} dec_state;

/* Eight codes of group g (codes 8g..8g+7) of a block as int32 lanes. */
QG_INLINE __m256i codes8(const uint8_t* blk, int bits, int64_t g) {
  uint32_t u;
  switch (bits) {
    case 4:
      memcpy(&u, blk + 4 * g, 4);
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)u), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                              _mm256_set1_epi32(15));
    case 2: {
      uint16_t h;
      memcpy(&h, blk + 2 * g, 2);
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                              _mm256_set1_epi32(3));
    }
    case 3: {
      const uint8_t* p = blk + 3 * g;
      u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)u), _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21)),
                              _mm256_set1_epi32(7));
    }
    default: return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(blk + 8 * g)));
  }
}

/* Eight weights (unscaled) of group g. */
QG_INLINE __m256 decode8(int kind, const uint8_t* blk, int64_t g, const dec_state* st) {
  if (kind == K_LUT4) {
    const __m256i idx = codes8(blk, 4, g);
    const __m256 lo = _mm256_permutevar8x32_ps(st->tlo, idx), hi = _mm256_permutevar8x32_ps(st->thi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  if (kind == K_FP8) {
    const __m256i c = codes8(blk, 8, g);
    const __m256 mag = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x7F)), 20));
    const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24));
    return _mm256_or_ps(_mm256_mul_ps(mag, _mm256_set1_ps(1.329227995784916e36f)), sign);
  }
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(codes8(blk, kind, g), st->zp));
}

QG_INLINE float scalar_value(int kind, const qg_weight* w, const uint8_t* blk, int64_t i, float z) {
  if (kind == K_LUT4) return (w->fmt == QG_FMT_NF4 ? qg_nf4_table : w->fmt == QG_FMT_CODEBOOK ? w->table : qg_e2m1_table)[qg_get_code(blk, i, 4)];
  if (kind == K_FP8) return qg_e4m3_decode(blk[i]);
  return (float)qg_get_code(blk, i, kind) - z;
}

QG_INLINE void init_state(int kind, const qg_weight* w, dec_state* st) {
  st->zp = _mm256_setzero_si256();
  st->tlo = st->thi = _mm256_setzero_ps();
  if (kind == K_LUT4) {
    const float* t = w->fmt == QG_FMT_NF4 ? qg_nf4_table : w->fmt == QG_FMT_CODEBOOK ? w->table : qg_e2m1_table;
    st->tlo = _mm256_loadu_ps(t);
    st->thi = _mm256_loadu_ps(t + 8);
  }
}

QG_INLINE float block_scale(int kind, const qg_weight* w, int64_t bi, dec_state* st) {
  if (kind < K_LUT4) {
    const int z = w->zp ? w->zp[bi] : 1 << (w->bits - 1);
    st->zp = _mm256_set1_epi32(z);
    return w->scales[bi];
  }
  return w->scales ? w->scales[bi] : 1.0f;
}

/* M = 1: codes are decoded in registers and multiplied straight away; two rows share each x load. */
QG_INLINE void gemv_body(int kind, const qg_weight* w, const float* x, float* y, int64_t n0, int64_t n1) {
  dec_state st0, st1;
  init_state(kind, w, &st0);
  init_state(kind, w, &st1);
  const int64_t full = w->k / w->bs, groups = w->bs / 8;
  int64_t row = n0;
  for (; row + 2 <= n1; row += 2) {
    const uint8_t* p0 = w->packed + row * w->row_bytes;
    const uint8_t* p1 = p0 + w->row_bytes;
    __m256 y0 = _mm256_setzero_ps(), y1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < full; b++) {
      const float s0 = block_scale(kind, w, row * w->bpr + b, &st0);
      const float s1 = block_scale(kind, w, (row + 1) * w->bpr + b, &st1);
      const uint8_t* b0 = p0 + b * w->block_bytes;
      const uint8_t* b1 = p1 + b * w->block_bytes;
      const float* xb = x + b * w->bs;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t g = 0; g < groups; g++) {
        const __m256 xv = _mm256_loadu_ps(xb + 8 * g);
        a0 = _mm256_fmadd_ps(decode8(kind, b0, g, &st0), xv, a0);
        a1 = _mm256_fmadd_ps(decode8(kind, b1, g, &st1), xv, a1);
      }
      y0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), a0, y0);
      y1 = _mm256_fmadd_ps(_mm256_set1_ps(s1), a1, y1);
    }
    float t0 = hsum8(y0), t1 = hsum8(y1);
    if (full < w->bpr) { /* scalar tail: the partial last block */
      const int64_t b = full, len = w->k - b * w->bs;
      const float s0 = block_scale(kind, w, row * w->bpr + b, &st0);
      const float s1 = block_scale(kind, w, (row + 1) * w->bpr + b, &st1);
      const float z0 = kind < K_LUT4 ? (float)_mm256_extract_epi32(st0.zp, 0) : 0.0f;
      const float z1 = kind < K_LUT4 ? (float)_mm256_extract_epi32(st1.zp, 0) : 0.0f;
      float a0 = 0.0f, a1 = 0.0f;
      for (int64_t i = 0; i < len; i++) {
        a0 += scalar_value(kind, w, p0 + b * w->block_bytes, i, z0) * x[b * w->bs + i];
        a1 += scalar_value(kind, w, p1 + b * w->block_bytes, i, z1) * x[b * w->bs + i];
      }
      t0 += s0 * a0;
      t1 += s1 * a1;
    }
    y[row] = t0;
    y[row + 1] = t1;
  }
  for (; row < n1; row++) {
    const uint8_t* p0 = w->packed + row * w->row_bytes;
    __m256 y0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < full; b++) {
      const float s0 = block_scale(kind, w, row * w->bpr + b, &st0);
      __m256 a0 = _mm256_setzero_ps();
      for (int64_t g = 0; g < groups; g++)
        a0 = _mm256_fmadd_ps(decode8(kind, p0 + b * w->block_bytes, g, &st0), _mm256_loadu_ps(x + b * w->bs + 8 * g), a0);
      y0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), a0, y0);
    }
    float t0 = hsum8(y0);
    if (full < w->bpr) {
      const int64_t b = full, len = w->k - b * w->bs;
      const float s0 = block_scale(kind, w, row * w->bpr + b, &st0);
      const float z0 = kind < K_LUT4 ? (float)_mm256_extract_epi32(st0.zp, 0) : 0.0f;
      float a0 = 0.0f;
      for (int64_t i = 0; i < len; i++) a0 += scalar_value(kind, w, p0 + b * w->block_bytes, i, z0) * x[b * w->bs + i];
      t0 += s0 * a0;
    }
    y[row] = t0;
  }
}

/* M > 1: each block is decoded once into a small float tile (stack, no allocation) and reused for
 * every activation row. */
QG_INLINE void gemm_body(int kind, const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  dec_state st;
  init_state(kind, w, &st);
  const int64_t full = w->k / w->bs, groups = w->bs / 8, k = w->k;
  __m256 acc[QG_GEMM_TILE_M];
  float tile[QG_MAX_BLOCK] __attribute__((aligned(32)));
  for (int64_t row = n0; row < n1; row++) {
    const uint8_t* p = w->packed + row * w->row_bytes;
    for (int64_t mi = 0; mi < m; mi++) acc[mi] = _mm256_setzero_ps();
    for (int64_t b = 0; b < full; b++) {
      const __m256 s = _mm256_set1_ps(block_scale(kind, w, row * w->bpr + b, &st));
      const uint8_t* blk = p + b * w->block_bytes;
      for (int64_t g = 0; g < groups; g++) _mm256_store_ps(tile + 8 * g, decode8(kind, blk, g, &st));
      const float* xb = x + b * w->bs;
      int64_t mi = 0;
      for (; mi + 2 <= m; mi += 2) {
        __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
        for (int64_t g = 0; g < groups; g++) {
          const __m256 wv = _mm256_load_ps(tile + 8 * g);
          t0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xb + mi * k + 8 * g), t0);
          t1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xb + (mi + 1) * k + 8 * g), t1);
        }
        acc[mi] = _mm256_fmadd_ps(s, t0, acc[mi]);
        acc[mi + 1] = _mm256_fmadd_ps(s, t1, acc[mi + 1]);
      }
      for (; mi < m; mi++) {
        __m256 t0 = _mm256_setzero_ps();
        for (int64_t g = 0; g < groups; g++) t0 = _mm256_fmadd_ps(_mm256_load_ps(tile + 8 * g), _mm256_loadu_ps(xb + mi * k + 8 * g), t0);
        acc[mi] = _mm256_fmadd_ps(s, t0, acc[mi]);
      }
    }
    float sb = 0.0f, z = 0.0f;
    int64_t len = 0;
    if (full < w->bpr) {
      sb = block_scale(kind, w, row * w->bpr + full, &st);
      z = kind < K_LUT4 ? (float)_mm256_extract_epi32(st.zp, 0) : 0.0f;
      len = k - full * w->bs;
      for (int64_t i = 0; i < len; i++) tile[i] = scalar_value(kind, w, p + full * w->block_bytes, i, z);
    }
    for (int64_t mi = 0; mi < m; mi++) {
      float t = hsum8(acc[mi]);
      if (len) { /* scalar tail */
        float a = 0.0f;
        for (int64_t i = 0; i < len; i++) a += tile[i] * x[mi * k + full * w->bs + i];
        t += sb * a;
      }
      y[mi * w->n + row] = t;
    }
  }
}

#define QG_GEMM_VARIANTS(name, kind)                                                                            \
  QG_AVX2 __attribute__((unused)) static void gemv_##name(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) { \
    (void)m;                                                                                                    \
    gemv_body(kind, w, x, y, n0, n1);                                                                           \
  }                                                                                                             \
  QG_AVX2 static void gemm_##name(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) { \
    if (m == 1) gemv_body(kind, w, x, y, n0, n1);                                                               \
    else gemm_body(kind, w, x, m, y, n0, n1);                                                                   \
  }
QG_GEMM_VARIANTS(i2, K_I2)
QG_GEMM_VARIANTS(i3, K_I3)
QG_GEMM_VARIANTS(i4, K_I4)
QG_GEMM_VARIANTS(i8, K_I8)
QG_GEMM_VARIANTS(lut4, K_LUT4)
QG_GEMM_VARIANTS(fp8, K_FP8)

/* int4 x int8 activations: 32 codes per step as unsigned bytes against permuted int8 activations;
 * maddubs + madd give eight int32 partial dots, scaled per 32 in float. Two rows share each load. */
QG_INLINE __m256i nibbles32(const uint8_t* q) {
  const __m128i v = _mm_loadu_si128((const __m128i*)q);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
}

QG_AVX2 static void gemv_int4_q8_avx2(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1) {
  const int64_t cpb = w->bs / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  int64_t row = n0;
  for (; row + 2 <= n1; row += 2) {
    const uint8_t* p0 = w->packed + row * w->row_bytes;
    const uint8_t* p1 = p0 + w->row_bytes;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr0 = 0.0f, corr1 = 0.0f;
    for (int64_t b = 0; b < w->bpr; b++) {
      const int64_t bi0 = row * w->bpr + b, bi1 = bi0 + w->bpr;
      const float s0 = w->scales[bi0], s1 = w->scales[bi1];
      const float z0 = w->zp ? (float)w->zp[bi0] : 8.0f, z1 = w->zp ? (float)w->zp[bi1] : 8.0f;
      for (int64_t c = 0; c < cpb; c++) {
        const int64_t j = b * cpb + c;
        const __m256i xq = _mm256_load_si256((const __m256i*)(a->xq + j * 32));
        const __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles32(p0 + b * w->block_bytes + c * 16), xq), ones);
        const __m256i d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles32(p1 + b * w->block_bytes + c * 16), xq), ones);
        const float dx = a->dx[j];
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(s0 * dx), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(s1 * dx), acc1);
        corr0 += s0 * z0 * a->dsx[j];
        corr1 += s1 * z1 * a->dsx[j];
      }
    }
    y[row] = hsum8(acc0) - corr0;
    y[row + 1] = hsum8(acc1) - corr1;
  }
  if (row < n1) qg_gemv_int4_q8_ref(w, a, y, row, n1); /* scalar tail: the odd last row */
}

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

void qg_fill_avx2(qg_dispatch* d) {
  d->isa = "avx2";
  d->quant_int = quantize_int_avx2;
  d->gemv_int[2] = gemv_i2; d->gemm_int[2] = gemm_i2;
  d->gemv_int[3] = gemv_i3; d->gemm_int[3] = gemm_i3;
  d->gemv_int[4] = gemv_i4; d->gemm_int[4] = gemm_i4;
  d->gemv_int[8] = gemv_i8; d->gemm_int[8] = gemm_i8;
  d->gemm_lut[QG_FMT_NF4] = d->gemm_lut[QG_FMT_FP4] = d->gemm_lut[QG_FMT_MXFP4] = d->gemm_lut[QG_FMT_CODEBOOK] = gemm_lut4;
  d->gemm_lut[QG_FMT_FP8] = gemm_fp8;
  d->gemm_f32 = gemm_f32_avx2;
  d->read_sum = read_sum_avx2;
  d->gemv_int4_q8 = gemv_int4_q8_avx2;
}
#endif
