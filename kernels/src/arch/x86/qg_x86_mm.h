/* x86 GEMV / GEMM bodies on packed codes, included by qg_avx2.c (AVX2+FMA) and qg_avx512.c (adds
 * AVX-512VL/BW/VNNI: 32 vector registers, two-table permutes for 16-entry float tables, vpdpbusd).
 * The includer defines QG_MM (the target attribute string), QG_MM_512 (0/1) and QG_MM_SUFFIX.
 *
 * GEMV (M = 1, bs % 32 == 0): x is permuted once per K tile (on the stack) into the order in which
 * 32 codes come out of the decoder, so a 32-code group costs a few shifts/masks and no shuffles;
 * the zero point leaves the inner loop (sum s*q*x - s*z*sum x, the block sums of x computed once
 * and shared by every row).
 * GEMM (M > 1): four weight rows are decoded once per K tile into scaled floats on the stack and
 * multiplied against several activation rows at a time from registers (register tiling: each weight
 * is decoded once per pass over M <= 64 rows).
 * int4 x int8 activations (q8t, GEMM, and GEMV at block sizes other than 32/64/128/256): register tiles of
 * four weight rows by up to four activation rows, quads of chunks against a pre-arranged copy of the
 * activations, vpdpbusd (AVX-512 VNNI) or maddubs/madd (AVX2), each lane scaled in place and reduced once
 * per row. q8v (GEMV, M = 1): int32 sums per weight block, one conversion and multiply-add per block. q8w
 * (AVX-512, bs 128 / 256, M = 2..15): q8t's tiles with one broadcast block scale per quad.
 * Every kernel ends with the same scalar tail as its reference (the partial last block). */
#include <immintrin.h>
#include <string.h>
#include "../../qg_internal.h"

#define QG_MM_FN __attribute__((target(QG_MM)))
#define QG_MM_IN static inline __attribute__((always_inline, target(QG_MM)))
#define QG_MM_CAT2(a, b) a##b
#define QG_MM_CAT(a, b) QG_MM_CAT2(a, b)
#define QG_MM_NAME(n) QG_MM_CAT(n, QG_MM_SUFFIX)

enum { MK_I2 = 2, MK_I3 = 3, MK_I4 = 4, MK_I8 = 8, MK_LUT4 = 16, MK_FP8 = 17 };
#define QG_MM_KT 4096 /* GEMV: floats of permuted x per K tile (16 KiB of stack) */
#define QG_MM_KC 512  /* GEMM: weights per decoded row tile */
#define QG_MM_WT_PAD 16  /* GEMM: floats of padding per decoded row, so rows do not share L1 sets */
#if QG_MM_512
#define QG_MM_MR 4 /* activation rows per GEMM pass: 16 accumulators need the 32 AVX-512 registers */
#else
#define QG_MM_MR 2
#endif

QG_MM_IN float mm_hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static const float* mm_table(const qg_weight* w) {
  return w->fmt == QG_FMT_NF4 ? qg_nf4_table : w->fmt == QG_FMT_CODEBOOK ? w->table : qg_e2m1_table;
}

/* Position (within a group of 32) of the code that lane l of decoded vector v (0..3) holds. */
static int mm_perm(int kind, int v, int l) {
  switch (kind) {
    case MK_I4:
    case MK_LUT4: return 16 * (v >> 1) + 2 * l + (v & 1);
    case MK_I2: return 4 * l + v;
    case MK_I3: return l < 4 ? 8 * l + 2 * v : 8 * (l - 4) + 2 * v + 1;
    default: return 8 * v + l;
  }
}

QG_MM_IN __m256 mm_lut16(__m256i idx, __m256 tlo, __m256 thi) {
#if QG_MM_512
  return _mm256_permutex2var_ps(tlo, idx, thi);
#else
  const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx), hi = _mm256_permutevar8x32_ps(thi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
#endif
}

QG_MM_IN __m256 mm_fp8(__m256i c) {
  const __m256 mag = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x7F)), 20));
  const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24));
  return _mm256_or_ps(_mm256_mul_ps(mag, _mm256_set1_ps(1.329227995784916e36f)), sign); /* 2^120 */
}

QG_MM_IN __m128i mm_load8(const uint8_t* p) { return _mm_loadl_epi64((const __m128i*)p); }

/* The 32 codes of group g of a block as four float vectors in mm_perm order (unscaled; the integer
 * formats without their zero point). With AVX-512, int2 / int3 come out as 1 + c/4 and 1 + c/8
 * (mm_code_bias): the GEMV scales x by 4 / 8 and subtracts the bias with the zero point. */
QG_MM_IN void mm_decode32(int kind, const uint8_t* blk, int64_t g, int wide, __m256 tlo, __m256 thi, __m256 v[4]) {
  switch (kind) {
    case MK_I4:
    case MK_LUT4: {
      const uint8_t* p = blk + 16 * g;
      const __m256i d0 = _mm256_cvtepu8_epi32(mm_load8(p)), d1 = _mm256_cvtepu8_epi32(mm_load8(p + 8));
      const __m256i m = _mm256_set1_epi32(15);
      const __m256i c0 = _mm256_and_si256(d0, m), c1 = _mm256_srli_epi32(d0, 4);
      const __m256i c2 = _mm256_and_si256(d1, m), c3 = _mm256_srli_epi32(d1, 4);
      if (kind == MK_I4) {
        v[0] = _mm256_cvtepi32_ps(c0); v[1] = _mm256_cvtepi32_ps(c1);
        v[2] = _mm256_cvtepi32_ps(c2); v[3] = _mm256_cvtepi32_ps(c3);
      } else {
        v[0] = mm_lut16(c0, tlo, thi); v[1] = mm_lut16(c1, tlo, thi);
        v[2] = mm_lut16(c2, tlo, thi); v[3] = mm_lut16(c3, tlo, thi);
      }
      return;
    }
    case MK_I2: {
      const __m256i d = _mm256_cvtepu8_epi32(mm_load8(blk + 8 * g));
#if QG_MM_512
      /* 1 + c/4 straight from the bits (code into the mantissa of 1.0): two ops instead of three */
      const __m256i m = _mm256_set1_epi32(3 << 21), one = _mm256_set1_epi32(0x3F800000);
      v[0] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 21), m, one, 0xEA));
      v[1] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 19), m, one, 0xEA));
      v[2] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 17), m, one, 0xEA));
      v[3] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 15), m, one, 0xEA));
#else
      const __m256i m = _mm256_set1_epi32(3);
      v[0] = _mm256_cvtepi32_ps(_mm256_and_si256(d, m));
      v[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 2), m));
      v[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 4), m));
      v[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(d, 6));
#endif
      return;
    }
    case MK_I3: { /* dword j of each lane = the 24 bits of codes 8j..8j+7; the high lane shifted by 3 */
      const uint8_t* p = blk + 12 * g;
      __m256i raw;
      if (wide) raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)p)); /* 4 bytes past the group */
      else {
        uint32_t t;
        memcpy(&t, p + 8, 4);
        raw = _mm256_broadcastsi128_si256(_mm_insert_epi32(mm_load8(p), (int)t, 2));
      }
      const __m256i grp = _mm256_shuffle_epi8(
          raw, _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1));
      const __m256i d = _mm256_srlv_epi32(grp, _mm256_setr_epi32(0, 0, 0, 0, 3, 3, 3, 3));
#if QG_MM_512 /* 1 + c/8, as for int2 */
      const __m256i m = _mm256_set1_epi32(7 << 20), one = _mm256_set1_epi32(0x3F800000);
      v[0] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 20), m, one, 0xEA));
      v[1] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 14), m, one, 0xEA));
      v[2] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 8), m, one, 0xEA));
      v[3] = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_slli_epi32(d, 2), m, one, 0xEA));
#else
      const __m256i m = _mm256_set1_epi32(7);
      v[0] = _mm256_cvtepi32_ps(_mm256_and_si256(d, m));
      v[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 6), m));
      v[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 12), m));
      v[3] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 18), m));
#endif
      return;
    }
    case MK_FP8: { /* E4M3 bits re-laid as binary16 (value / 2^8, the GEMV scales x by 2^8), then F16C */
      const uint8_t* p = blk + 32 * g;
      for (int i = 0; i < 2; i++) {
        const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(p + 16 * i))), 7),
                                           _mm256_set1_epi16((short)0xBF80));
        v[2 * i] = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        v[2 * i + 1] = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
      }
      return;
    }
    default: { /* MK_I8 */
      const uint8_t* p = blk + 32 * g;
      for (int i = 0; i < 4; i++) v[i] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mm_load8(p + 8 * i)));
      return;
    }
  }
}

/* The decoder's value is (c + bias) / div: div = bias = 4 for int2, 8 for int3 with AVX-512. */
static int mm_code_bias(int kind) { return QG_MM_512 && kind == MK_I2 ? 4 : QG_MM_512 && kind == MK_I3 ? 8 : 0; }

/* Scalar value of code i of a block (the reference's decode), zero point included. */
QG_MM_IN float mm_scalar(int kind, const qg_weight* w, const uint8_t* blk, int64_t i, float z) {
  if (kind == MK_LUT4) return mm_table(w)[qg_get_code(blk, i, 4)];
  if (kind == MK_FP8) return qg_e4m3_decode(blk[i]);
  return (float)qg_get_code(blk, i, kind) - z;
}
QG_MM_IN float mm_zp(int kind, const qg_weight* w, int64_t bi) {
  if (kind >= MK_LUT4) return 0.0f;
  return w->zp ? (float)w->zp[bi] : (float)(1 << (w->bits - 1));
}
QG_MM_IN float mm_scale(const qg_weight* w, int64_t bi) { return w->scales ? w->scales[bi] : 1.0f; }

/* ---------------- GEMV ---------------- */

/* sum over blocks [b0, b0+nb) of row `row`: s * z * xsum (the hoisted zero-point term). */
QG_MM_IN float mm_zp_term(const qg_weight* w, int64_t row, int64_t b0, int64_t nb, const float* xs, int bias) {
  const float* s = w->scales + row * w->bpr + b0;
  int64_t b = 0;
  __m256 acc = _mm256_setzero_ps();
  if (w->zp) {
    const uint8_t* z = w->zp + row * w->bpr + b0;
    for (; b + 8 <= nb; b += 8)
      acc = _mm256_fmadd_ps(
          _mm256_mul_ps(_mm256_loadu_ps(s + b),
                        _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_cvtepu8_epi32(mm_load8(z + b)), _mm256_set1_epi32(bias)))),
          _mm256_loadu_ps(xs + b), acc);
    float t = mm_hsum8(acc);
    for (; b < nb; b++) t += s[b] * (float)(z[b] + bias) * xs[b];
    return t;
  }
  for (; b + 8 <= nb; b += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(s + b), _mm256_loadu_ps(xs + b), acc);
  float t = mm_hsum8(acc);
  for (; b < nb; b++) t += s[b] * xs[b];
  return t * (float)((1 << (w->bits - 1)) + bias);
}

/* One block of one row: acc += s * (codes . xp), in two independent chains. */
QG_MM_IN void mm_gemv_block(int kind, int wide, const uint8_t* blk, const float* sp, int64_t groups, const float* xb, __m256 tlo,
                            __m256 thi, __m256* acc0, __m256* acc1) {
  __m256 v[4];
  mm_decode32(kind, blk, 0, wide, tlo, thi, v);
  __m256 t0 = _mm256_mul_ps(v[0], _mm256_load_ps(xb)), t1 = _mm256_mul_ps(v[1], _mm256_load_ps(xb + 8));
  t0 = _mm256_fmadd_ps(v[2], _mm256_load_ps(xb + 16), t0);
  t1 = _mm256_fmadd_ps(v[3], _mm256_load_ps(xb + 24), t1);
  for (int64_t g = 1; g < groups; g++) {
    const float* xg = xb + 32 * g;
    mm_decode32(kind, blk, g, wide, tlo, thi, v);
    t0 = _mm256_fmadd_ps(v[0], _mm256_load_ps(xg), t0);
    t1 = _mm256_fmadd_ps(v[1], _mm256_load_ps(xg + 8), t1);
    t0 = _mm256_fmadd_ps(v[2], _mm256_load_ps(xg + 16), t0);
    t1 = _mm256_fmadd_ps(v[3], _mm256_load_ps(xg + 24), t1);
  }
  const __m256 s = _mm256_broadcast_ss(sp);
  *acc0 = _mm256_fmadd_ps(s, t0, *acc0);
  *acc1 = _mm256_fmadd_ps(s, t1, *acc1);
}

/* One row over blocks [0, nb) of the tile. One row at a time measured faster than several (rows
 * 2 KiB apart compete for the same L1 sets) and than two accumulators per row (throughput-bound). */
QG_MM_IN __m256 mm_gemv_row(int kind, int wide, const qg_weight* w, const uint8_t* p, const float* sc, int64_t sstep,
                            int64_t nb, int64_t groups, const float* xp, __m256 tlo, __m256 thi) {
  __m256 a0 = _mm256_setzero_ps(), c0 = a0;
  const int64_t bb = w->block_bytes, bs = w->bs;
  for (int64_t b = 0; b < nb; b++)
    mm_gemv_block(kind, wide, p + b * bb, sc + b * sstep, groups, xp + b * bs, tlo, thi, &a0, &c0);
  return _mm256_add_ps(a0, c0);
}

QG_MM_IN void mm_gemv(int kind, const qg_weight* w, const float* x, float* y, int64_t n0, int64_t n1) {
  float xp[QG_MM_KT] __attribute__((aligned(32)));
  float xs[QG_MM_KT / 32];
  __m256 tlo = _mm256_setzero_ps(), thi = tlo;
  if (kind == MK_LUT4) {
    tlo = _mm256_loadu_ps(mm_table(w));
    thi = _mm256_loadu_ps(mm_table(w) + 8);
  }
  int perm[32];
  for (int v = 0; v < 4; v++)
    for (int l = 0; l < 8; l++) perm[8 * v + l] = mm_perm(kind, v, l);
  const float one = 1.0f;
  const int64_t bs = w->bs, groups = bs / 32, full = w->k / bs, bt = QG_MM_KT / bs;
  const int has_zp = kind < MK_LUT4, bias = mm_code_bias(kind);
  const float xmul = kind == MK_FP8 ? 256.0f : bias ? (float)bias : 1.0f;
  for (int64_t b0 = 0; b0 < full; b0 += bt) {
    const int64_t nb = full - b0 < bt ? full - b0 : bt;
    const float* xt = x + b0 * bs;
    for (int64_t g = 0; g < nb * groups; g++)
      for (int p = 0; p < 32; p++) xp[32 * g + p] = xt[32 * g + perm[p]] * xmul; /* exact: a power of two */
    if (has_zp)
      for (int64_t b = 0; b < nb; b++) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < bs; i += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(xt + b * bs + i));
        xs[b] = mm_hsum8(a);
      }
    for (int64_t row = n0; row < n1; row++) {
      const uint8_t* p = w->packed + row * w->row_bytes + b0 * w->block_bytes;
      const float* sc = w->scales ? w->scales + row * w->bpr + b0 : &one;
      const int64_t sstep = w->scales ? 1 : 0;
      /* int3 reads 16 bytes per 12-byte group unless the row ends the packed codes */
      const int wide = kind == MK_I3 && (row + 1 < w->n || b0 + nb < w->bpr);
      __m256 acc;
      if (kind == MK_I3 && !wide) acc = mm_gemv_row(kind, 0, w, p, sc, sstep, nb, groups, xp, tlo, thi);
      else if (groups == 1) acc = mm_gemv_row(kind, 1, w, p, sc, sstep, nb, 1, xp, tlo, thi);
      else if (groups == 4) acc = mm_gemv_row(kind, 1, w, p, sc, sstep, nb, 4, xp, tlo, thi);
      else acc = mm_gemv_row(kind, 1, w, p, sc, sstep, nb, groups, xp, tlo, thi);
      float t = mm_hsum8(acc);
      if (has_zp) t -= mm_zp_term(w, row, b0, nb, xs, bias);
      y[row] = b0 == 0 ? t : y[row] + t;
    }
  }
  if (full == 0)
    for (int64_t row = n0; row < n1; row++) y[row] = 0.0f;
  if (full < w->bpr) /* scalar tail: the partial last block */
    for (int64_t row = n0; row < n1; row++) {
      const int64_t bi = row * w->bpr + full, len = w->k - full * bs;
      const uint8_t* blk = w->packed + row * w->row_bytes + full * w->block_bytes;
      const float z = mm_zp(kind, w, bi);
      float a = 0.0f;
      for (int64_t i = 0; i < len; i++) a += mm_scalar(kind, w, blk, i, z) * x[full * bs + i];
      y[row] += mm_scale(w, bi) * a;
    }
}

/* ---------------- GEMM (M > 1) ---------------- */

/* Natural-order codes 8g..8g+7 of a block as int32 lanes. */
QG_MM_IN __m256i mm_codes8(const uint8_t* blk, int bits, int64_t g) {
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
    default: return _mm256_cvtepu8_epi32(mm_load8(blk + 8 * g));
  }
}

/* Weights [kb, kb+kc) of one row, scaled, into out (kb and kc whole blocks except at the end of K). */
QG_MM_IN void mm_decode_row(int kind, const qg_weight* w, int64_t row, int64_t kb, int64_t kc, __m256 tlo, __m256 thi,
                            float* out) {
  const int64_t bs = w->bs;
  for (int64_t i0 = 0; i0 < kc; i0 += bs) {
    const int64_t b = (kb + i0) / bs, bi = row * w->bpr + b, len = kc - i0 < bs ? kc - i0 : bs;
    const uint8_t* blk = w->packed + row * w->row_bytes + b * w->block_bytes;
    const float s = mm_scale(w, bi), z = mm_zp(kind, w, bi);
    float* o = out + i0;
    if (len < bs) { /* scalar tail: the partial last block */
      for (int64_t i = 0; i < len; i++) o[i] = mm_scalar(kind, w, blk, i, z) * s;
      continue;
    }
    const __m256 vs = _mm256_set1_ps(s);
    const __m256i vz = _mm256_set1_epi32((int)z);
    for (int64_t g = 0; g < bs / 8; g++) {
      __m256 v;
      if (kind == MK_LUT4) v = mm_lut16(mm_codes8(blk, 4, g), tlo, thi);
      else if (kind == MK_FP8) v = mm_fp8(mm_codes8(blk, 8, g));
      else v = _mm256_cvtepi32_ps(_mm256_sub_epi32(mm_codes8(blk, kind, g), vz));
      _mm256_store_ps(o + 8 * g, _mm256_mul_ps(v, vs));
    }
  }
}

QG_MM_IN void mm_gemm(int kind, const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, int64_t n1) {
  const int64_t k = w->k, bs = w->bs, kcmax = bs * (QG_MM_KC / bs > 0 ? QG_MM_KC / bs : 1);
  float wt[4][(QG_MM_KC > QG_MAX_BLOCK ? QG_MM_KC : QG_MAX_BLOCK) + QG_MM_WT_PAD] __attribute__((aligned(64)));
  __m256 tlo = _mm256_setzero_ps(), thi = tlo;
  if (kind == MK_LUT4) {
    tlo = _mm256_loadu_ps(mm_table(w));
    thi = _mm256_loadu_ps(mm_table(w) + 8);
  }
  for (int64_t row = n0; row < n1; row += 4) {
    const int64_t nr = n1 - row < 4 ? n1 - row : 4;
    for (int64_t kb = 0; kb < k; kb += kcmax) {
      const int64_t kc = k - kb < kcmax ? k - kb : kcmax;
      for (int r = 0; r < 4; r++) {
        if (r < nr) mm_decode_row(kind, w, row + r, kb, kc, tlo, thi, wt[r]);
        else memcpy(wt[r], wt[nr - 1], (size_t)kc * sizeof(float));
      }
      for (int64_t mi = 0; mi < m; mi += QG_MM_MR) {
        const int64_t mr = m - mi < QG_MM_MR ? m - mi : QG_MM_MR;
        const float* xr[QG_MM_MR];
        for (int j = 0; j < QG_MM_MR; j++) xr[j] = x + (mi + (j < mr ? j : mr - 1)) * k + kb;
        float part[4][QG_MM_MR];
        int64_t kv = 0;
#if QG_MM_512
        kv = kc & ~(int64_t)15;
        {
          __m512 acc[4][QG_MM_MR];
          for (int r = 0; r < 4; r++)
            for (int j = 0; j < QG_MM_MR; j++) acc[r][j] = _mm512_setzero_ps();
          for (int64_t i = 0; i < kv; i += 16) {
            const __m512 w0 = _mm512_load_ps(wt[0] + i), w1 = _mm512_load_ps(wt[1] + i);
            const __m512 w2 = _mm512_load_ps(wt[2] + i), w3 = _mm512_load_ps(wt[3] + i);
            for (int j = 0; j < QG_MM_MR; j++) {
              const __m512 xv = _mm512_loadu_ps(xr[j] + i);
              acc[0][j] = _mm512_fmadd_ps(w0, xv, acc[0][j]);
              acc[1][j] = _mm512_fmadd_ps(w1, xv, acc[1][j]);
              acc[2][j] = _mm512_fmadd_ps(w2, xv, acc[2][j]);
              acc[3][j] = _mm512_fmadd_ps(w3, xv, acc[3][j]);
            }
          }
          for (int r = 0; r < 4; r++)
            for (int j = 0; j < QG_MM_MR; j++) part[r][j] = _mm512_reduce_add_ps(acc[r][j]);
        }
#else
        kv = kc & ~(int64_t)7;
        {
          __m256 acc[4][QG_MM_MR];
          for (int r = 0; r < 4; r++)
            for (int j = 0; j < QG_MM_MR; j++) acc[r][j] = _mm256_setzero_ps();
          for (int64_t i = 0; i < kv; i += 8) {
            const __m256 w0 = _mm256_load_ps(wt[0] + i), w1 = _mm256_load_ps(wt[1] + i);
            const __m256 w2 = _mm256_load_ps(wt[2] + i), w3 = _mm256_load_ps(wt[3] + i);
            for (int j = 0; j < QG_MM_MR; j++) {
              const __m256 xv = _mm256_loadu_ps(xr[j] + i);
              acc[0][j] = _mm256_fmadd_ps(w0, xv, acc[0][j]);
              acc[1][j] = _mm256_fmadd_ps(w1, xv, acc[1][j]);
              acc[2][j] = _mm256_fmadd_ps(w2, xv, acc[2][j]);
              acc[3][j] = _mm256_fmadd_ps(w3, xv, acc[3][j]);
            }
          }
          for (int r = 0; r < 4; r++)
            for (int j = 0; j < QG_MM_MR; j++) part[r][j] = mm_hsum8(acc[r][j]);
        }
#endif
        for (int r = 0; r < nr; r++)
          for (int j = 0; j < mr; j++) {
            float t = part[r][j];
            for (int64_t i = kv; i < kc; i++) t += wt[r][i] * xr[j][i]; /* scalar tail */
            float* o = y + (mi + j) * w->n + row + r;
            *o = kb == 0 ? t : *o + t;
          }
      }
    }
  }
}

/* GEMV for bs % 32 == 0, else the GEMM body (which handles any M, and any bs). */
#define QG_MM_VARIANT(name, kind)                                                                                 \
  QG_MM_FN static void QG_MM_NAME(gemm_##name)(const qg_weight* w, const float* x, int64_t m, float* y, int64_t n0, \
                                               int64_t n1) {                                                        \
    if (m == 1 && w->bs % 32 == 0) mm_gemv(kind, w, x, y, n0, n1);                                                \
    else mm_gemm(kind, w, x, m, y, n0, n1);                                                                         \
  }
QG_MM_VARIANT(i2, MK_I2)
QG_MM_VARIANT(i3, MK_I3)
QG_MM_VARIANT(i4, MK_I4)
QG_MM_VARIANT(i8, MK_I8)
QG_MM_VARIANT(lut4, MK_LUT4)
QG_MM_VARIANT(fp8, MK_FP8)

#undef QG_MM_VARIANT

/* ---------------- int4 x int8 activations, register-tiled (q8t) ----------------
 * Four weight rows x up to four (AVX-512) or two (AVX2) activation rows per tile. Each step takes a
 * quad of chunks (128 codes, 64 packed bytes per row): the nibbles are unpacked once per tile and used
 * by every activation row of the tile; each 4-byte dot product stays in its lane (lanes 4c..4c+3 belong
 * to chunk c of the quad) and is scaled in place by (weight scale x activation scale) of its chunk, so
 * nothing is reduced across lanes until the end of the row. The zero-point term, s * z * sum(x) per
 * block, is subtracted once per block (act->dsb) instead of once per chunk. Chunks past the last whole
 * quad take the reference's scalar loop. Any bs % 32 == 0 (one to eight chunks per block). */

/* Software prefetch distance of the memory-bound tiles, in rows: two tiles of four ahead, into L2 (measured
 * on Zen 4, cold 11008 x 4096 int4 bs 32, M = 1: 1.5-1.6 ms, against 2.3-2.5 ms one tile ahead into L1). */
#define QG_Q8T_PF_ROWS 8

/* Scalar tail: chunks [j0, chunks) of one row against one activation row, as the reference adds them
 * (without the zero-point term, which the block pass subtracts). */
static float QG_MM_NAME(q8t_tail)(const uint8_t* p, const float* s, const qg_q8_act* a, int64_t j0, int64_t chunks, int64_t cpb) {
  float t = 0.0f;
  for (int64_t j = j0; j < chunks; j++) {
    const uint8_t* q = p + 16 * j;
    const int8_t* xq = a->xq + 32 * j;
    int32_t dot = 0;
    for (int i = 0; i < 16; i++) dot += (q[i] & 15) * xq[i] + (q[i] >> 4) * xq[16 + i];
    t += s[j / cpb] * (a->dx[j] * (float)dot);
  }
  return t;
}

#if QG_MM_512
#define QG_Q8T_MR 4
/* Weight scales of quad q, each repeated over the lanes of its chunks. */
QG_MM_IN __m512 q8t_scales(const float* s, int64_t q, int64_t cpb) {
  if (cpb == 1)
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(_mm_loadu_ps(s + 4 * q)));
  if (cpb == 2)
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(s + 2 * q)))));
  if (cpb % 4 == 0) return _mm512_set1_ps(s[4 * q / cpb]);
  const int64_t c = 4 * q; /* 3, 5, 6 or 7 chunks per block: a quad may straddle two blocks */
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(_mm_setr_ps(s[c / cpb], s[(c + 1) / cpb], s[(c + 2) / cpb], s[(c + 3) / cpb])));
}

QG_MM_IN void q8t_tile(const qg_weight* w, const qg_q8_act* acts, const int mr, int64_t r0, int64_t nr, int64_t cpb,
                       float* y, int first) {
  const int64_t bpr = w->bpr, chunks = bpr * cpb, quads = chunks / 4;
  const uint8_t* p[4];
  const float* s[4];
  const uint8_t* z[4];
  for (int r = 0; r < 4; r++) { /* rows past the end repeat the last one; their sums are dropped */
    const int64_t row = r0 + (r < nr ? r : nr - 1);
    p[r] = w->packed + row * w->row_bytes;
    s[r] = w->scales + row * bpr;
    z[r] = w->zp ? w->zp + row * bpr : NULL;
  }
  const __m512i m15 = _mm512_set1_epi8(15);
  __m512 acc[4][QG_Q8T_MR];
  for (int r = 0; r < 4; r++)
    for (int a = 0; a < mr; a++) acc[r][a] = _mm512_setzero_ps();
  for (int64_t q = 0; q < quads; q++) {
    __m512i lo[4], hi[4];
    __m512 sw[4];
    for (int r = 0; r < 4; r++) {
      if (first) { /* the first pass over these rows streams them: fetch two tiles ahead into L2 */
        _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
        if (cpb == 1) _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + 4 * q), _MM_HINT_T1);
      }
      const __m512i pk = _mm512_loadu_si512((const void*)(p[r] + 64 * q));
      lo[r] = _mm512_and_si512(pk, m15);
      hi[r] = _mm512_and_si512(_mm512_srli_epi16(pk, 4), m15);
      sw[r] = q8t_scales(s[r], q, cpb);
    }
    for (int a = 0; a < mr; a++) {
      const int8_t* xa = acts[a].xq4 + 128 * q;
      const __m512i xl = _mm512_load_si512((const void*)xa), xh = _mm512_load_si512((const void*)(xa + 64));
      const __m512 dl = _mm512_load_ps(acts[a].dxl + 16 * q);
      for (int r = 0; r < 4; r++) {
        const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xl), hi[r], xh);
        acc[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(sw[r], dl), acc[r][a]);
      }
    }
  }
  for (int64_t b0 = 0; b0 < bpr; b0 += 16) { /* zero points: - s * z * dsb (db * the sum of the block's codes) */
    const __mmask16 mk = bpr - b0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (bpr - b0)) - 1);
    for (int r = 0; r < 4; r++) {
      if (first && z[r]) _mm_prefetch((const char*)(z[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      const __m512 zv = z[r] ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, z[r] + b0))) : _mm512_set1_ps(8.0f);
      const __m512 sz = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, s[r] + b0), zv);
      for (int a = 0; a < mr; a++) acc[r][a] = _mm512_fnmadd_ps(sz, _mm512_maskz_loadu_ps(mk, acts[a].dsb + b0), acc[r][a]);
    }
  }
  for (int r = 0; r < nr; r++)
    for (int a = 0; a < mr; a++) {
      float t = _mm512_reduce_add_ps(acc[r][a]);
      if (quads * 4 < chunks) t += QG_MM_NAME(q8t_tail)(p[r], s[r], &acts[a], quads * 4, chunks, cpb);
      y[a * w->n + r0 + r] = t;
    }
}
#else
#define QG_Q8T_MR 2
/* Weight scales of chunk pair h (0, 1) of quad q over the pair's eight lanes. */
QG_MM_IN __m256 q8t_scales(const float* s, int64_t q, int h, int64_t cpb) {
  if (cpb == 1)
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(s + 4 * q + 2 * h)))),
                                    _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  const int64_t c = 4 * q + 2 * h;
  if (cpb % 2 == 0) return _mm256_set1_ps(s[c / cpb]);
  return _mm256_setr_ps(s[c / cpb], s[c / cpb], s[c / cpb], s[c / cpb], s[(c + 1) / cpb], s[(c + 1) / cpb],
                        s[(c + 1) / cpb], s[(c + 1) / cpb]);
}

QG_MM_IN void q8t_tile(const qg_weight* w, const qg_q8_act* acts, const int mr, int64_t r0, int64_t nr, int64_t cpb,
                       float* y, int first) {
  const int64_t bpr = w->bpr, chunks = bpr * cpb, quads = chunks / 4;
  const uint8_t* p[4];
  const float* s[4];
  const uint8_t* z[4];
  for (int r = 0; r < 4; r++) {
    const int64_t row = r0 + (r < nr ? r : nr - 1);
    p[r] = w->packed + row * w->row_bytes;
    s[r] = w->scales + row * bpr;
    z[r] = w->zp ? w->zp + row * bpr : NULL;
  }
  const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[4][QG_Q8T_MR];
  for (int r = 0; r < 4; r++)
    for (int a = 0; a < mr; a++) acc[r][a] = _mm256_setzero_ps();
  for (int64_t q = 0; q < quads; q++)
    for (int h = 0; h < 2; h++) {
      __m256i lo[4], hi[4];
      for (int r = 0; r < 4; r++) {
        if (first && h == 0) { /* the first pass over these rows streams them: fetch two tiles ahead into L2 */
          _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
          if (cpb == 1) _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + 4 * q), _MM_HINT_T1);
        }
        const __m256i pk = _mm256_loadu_si256((const __m256i*)(p[r] + 64 * q + 32 * h));
        lo[r] = _mm256_and_si256(pk, m15);
        hi[r] = _mm256_and_si256(_mm256_srli_epi16(pk, 4), m15);
      }
      for (int a = 0; a < mr; a++) {
        const int8_t* xa = acts[a].xq4 + 128 * q + 32 * h;
        const __m256i xl = _mm256_load_si256((const __m256i*)xa), xh = _mm256_load_si256((const __m256i*)(xa + 64));
        const __m256 dl = _mm256_load_ps(acts[a].dxl + 16 * q + 8 * h);
        for (int r = 0; r < 4; r++) { /* |15 * 127 * 2| * 2 fits int16 */
          const __m256i d = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xl), _mm256_maddubs_epi16(hi[r], xh)), ones);
          acc[r][a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(q8t_scales(s[r], q, h, cpb), dl), acc[r][a]);
        }
      }
    }
  const int64_t bv = bpr & ~(int64_t)7;
  for (int64_t b0 = 0; b0 < bv; b0 += 8) /* zero points: - s * z * dsb (db * the sum of the block's codes) */
    for (int r = 0; r < 4; r++) {
      const __m256 zv = z[r] ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mm_load8(z[r] + b0))) : _mm256_set1_ps(8.0f);
      const __m256 sz = _mm256_mul_ps(_mm256_loadu_ps(s[r] + b0), zv);
      for (int a = 0; a < mr; a++) acc[r][a] = _mm256_fnmadd_ps(sz, _mm256_loadu_ps(acts[a].dsb + b0), acc[r][a]);
    }
  for (int r = 0; r < nr; r++)
    for (int a = 0; a < mr; a++) {
      float t = mm_hsum8(acc[r][a]);
      for (int64_t b = bv; b < bpr; b++) t -= s[r][b] * (z[r] ? (float)z[r][b] : 8.0f) * acts[a].dsb[b];
      if (quads * 4 < chunks) t += QG_MM_NAME(q8t_tail)(p[r], s[r], &acts[a], quads * 4, chunks, cpb);
      y[a * w->n + r0 + r] = t;
    }
}
#endif

#if QG_MM_512
/* ---- AVX-512, M >= 4: sixteen weight rows in the lanes (q8x) ----
 * The packed bytes of 16 rows are transposed once per quad (a 16 x 16 dword transpose) so that each
 * vector holds one 4-code group of every row; every activation row then takes a chunk with eight
 * vpdpbusd against broadcast 4-byte groups of its codes, int32 over the whole chunk, and one
 * convert / scale / accumulate per chunk: 11 vector operations per 512 multiply-adds instead of 20.
 * Used from M = 16 (measured faster than q8t there: 1.1x at M = 16, 1.2x at M = 32, 1.4x at M = 128; 0.8x at M = 8).
 * Transposed weights are kept for QG_Q8X_QB quads (on the stack) and used by every activation row;
 * sums live per activation row in acc (16 rows each) between K blocks. */
#define QG_Q8X_QB 4
#define QG_Q8X_MT 8

/* The 16 x 16 dword transpose: in[r] holds 16 dwords of row r; out[j] holds dword j of rows 0..15. */
QG_MM_IN void q8x_transpose(const __m512i in[16], __m512i out[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; k++) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44), v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44), w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    out[k] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    out[4 + k] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
    out[8 + k] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    out[12 + k] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
  }
}

/* Rows [r0, r0 + 16) of y for m activation rows. acc: m vectors of workspace on the caller's stack. */
QG_MM_IN void q8x_rows16(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t r0, const int64_t cpb,
                         __m512* acc) {
  const int64_t bpr = w->bpr, chunks = bpr * cpb, quads = chunks / 4;
  const uint8_t* p0 = w->packed + r0 * w->row_bytes;
  const float* s0 = w->scales + r0 * bpr;
  const __m512i vrow = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32((int)bpr));
  const __m512i m15 = _mm512_set1_epi8(15);
  __m512i wt[QG_Q8X_QB][4][8];
  __m512 sw[QG_Q8X_QB][4];
  for (int64_t a = 0; a < m; a++) acc[a] = _mm512_setzero_ps();
  for (int64_t q0 = 0; q0 < quads; q0 += QG_Q8X_QB) {
    const int qb = quads - q0 < QG_Q8X_QB ? (int)(quads - q0) : QG_Q8X_QB;
    for (int qq = 0; qq < qb; qq++) {
      const int64_t q = q0 + qq;
      __m512i in[16], tr[16];
      for (int r = 0; r < 16; r++) { /* and the next 16 rows at the same place into L2 */
        _mm_prefetch((const char*)(p0 + (16 + r) * w->row_bytes + 64 * q), _MM_HINT_T1);
        if (cpb == 1) _mm_prefetch((const char*)(s0 + (16 + r) * bpr + 4 * q), _MM_HINT_T1);
        in[r] = _mm512_loadu_si512((const void*)(p0 + r * w->row_bytes + 64 * q));
      }
      q8x_transpose(in, tr);
      for (int c = 0; c < 4; c++) {
        for (int d = 0; d < 4; d++) {
          wt[qq][c][d] = _mm512_and_si512(tr[4 * c + d], m15);
          wt[qq][c][4 + d] = _mm512_and_si512(_mm512_srli_epi16(tr[4 * c + d], 4), m15);
        }
        sw[qq][c] = _mm512_i32gather_ps(vrow, s0 + (4 * q + c) / cpb, 4);
      }
    }
    for (int64_t a0 = 0; a0 < m; a0 += QG_Q8X_MT) {
      const int64_t mt = m - a0 < QG_Q8X_MT ? m - a0 : QG_Q8X_MT;
      for (int qq = 0; qq < qb; qq++)
        for (int c = 0; c < 4; c++) {
          const int64_t j = 4 * (q0 + qq) + c;
          for (int64_t a = a0; a < a0 + mt; a++) {
            const int32_t* xd = (const int32_t*)(const void*)(acts[a].xq + 32 * j);
            __m512i d = _mm512_setzero_si512();
            for (int t = 0; t < 8; t++) d = _mm512_dpbusd_epi32(d, wt[qq][c][t], _mm512_set1_epi32(xd[t]));
            acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(sw[qq][c], _mm512_set1_ps(acts[a].dx[j])), acc[a]);
          }
        }
    }
  }
  for (int64_t b = 0; b < bpr; b++) { /* zero points: - s * z * dsb (db * the sum of the block's codes) */
    const __m512 sv = _mm512_i32gather_ps(vrow, s0 + b, 4);
    __m512 zv = _mm512_set1_ps(8.0f);
    if (w->zp) { /* 4-byte gathers that end at the byte (or start at it near the row start): inside the row */
      const uint8_t* z0 = w->zp + r0 * bpr;
      if (bpr < 4) { /* rows of fewer than 4 blocks: byte by byte */
        float zf[16];
        for (int r = 0; r < 16; r++) zf[r] = (float)z0[r * bpr + b];
        zv = _mm512_loadu_ps(zf);
      } else
        zv = b >= 3 ? _mm512_cvtepi32_ps(_mm512_srli_epi32(_mm512_i32gather_epi32(vrow, z0 + b - 3, 1), 24))
                    : _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_i32gather_epi32(vrow, z0 + b, 1), _mm512_set1_epi32(255)));
    }
    const __m512 sz = _mm512_mul_ps(sv, zv);
    for (int64_t a = 0; a < m; a++) acc[a] = _mm512_fnmadd_ps(sz, _mm512_set1_ps(acts[a].dsb[b]), acc[a]);
  }
  for (int64_t a = 0; a < m; a++) {
    float* ya = y + a * w->n + r0;
    _mm512_storeu_ps(ya, acc[a]);
    if (quads * 4 < chunks)
      for (int r = 0; r < 16; r++) ya[r] += QG_MM_NAME(q8t_tail)(p0 + r * w->row_bytes, s0 + r * bpr, &acts[a], quads * 4, chunks, cpb);
  }
}
#endif

#if QG_MM_512
/* ---- AVX-512, whole quads per block (bs 128, 256), M = 2..15: q8t's tile with q8v's block scales (q8w) ----
 * Four weight rows x up to four activation rows, nibbles unpacked once per tile as in q8t, but each quad's
 * int32 dot products are scaled by one broadcast s * db of its block, from a stack table built once per
 * group of 16 blocks (one vector multiply per row and activation row), instead of a per-lane scale vector
 * and a multiply per quad: no scale registers, so the 16 accumulators, the unpacked quad and the activations
 * fit the 32 vector registers. The zero-point term is subtracted per group as in q8v. */
#define QG_Q8W_R 4  /* weight rows per tile: 2 x 8, 3 x 4 and 2 x 4 tiles measured within 5% at M = 8 (the vector */
#define QG_Q8W_MR 4 /* multiply-add pipes are the limit: two vpdpbusd, a convert and an FMA per row, activation row and quad) */
QG_MM_IN void q8w_tile(const qg_weight* w, const qg_q8_act* acts, const int mr, int64_t r0, int64_t nr, const int64_t cpb,
                       float* y, int first) {
  const int64_t bpr = w->bpr, qpb = cpb / 4;
  const uint8_t* p[QG_Q8W_R];
  const float* s[QG_Q8W_R];
  const uint8_t* z[QG_Q8W_R];
  for (int r = 0; r < QG_Q8W_R; r++) { /* rows past the end repeat the last one; their sums are dropped */
    const int64_t row = r0 + (r < nr ? r : nr - 1);
    p[r] = w->packed + row * w->row_bytes;
    s[r] = w->scales + row * bpr;
    z[r] = w->zp ? w->zp + row * bpr : NULL;
  }
  const __m512i m15 = _mm512_set1_epi8(15);
  __m512 acc[QG_Q8W_R][QG_Q8W_MR];
  float sct[QG_Q8W_R][QG_Q8W_MR][16] __attribute__((aligned(64)));
  for (int r = 0; r < QG_Q8W_R; r++)
    for (int a = 0; a < mr; a++) acc[r][a] = _mm512_setzero_ps();
  for (int64_t b0 = 0; b0 < bpr; b0 += 16) {
    const int64_t nb = bpr - b0 < 16 ? bpr - b0 : 16;
    const __mmask16 mk = nb == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nb) - 1);
    for (int r = 0; r < QG_Q8W_R; r++) {
      if (first) {
        _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
        _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + b0 + 15), _MM_HINT_T1);
        if (z[r]) _mm_prefetch((const char*)(z[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      }
      const __m512 sv = _mm512_maskz_loadu_ps(mk, s[r] + b0);
      const __m512 zv = z[r] ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, z[r] + b0))) : _mm512_set1_ps(8.0f);
      const __m512 sz = _mm512_mul_ps(sv, zv);
      for (int a = 0; a < mr; a++) {
        acc[r][a] = _mm512_fnmadd_ps(sz, _mm512_maskz_loadu_ps(mk, acts[a].dsb + b0), acc[r][a]);
        _mm512_store_ps(sct[r][a], _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(mk, acts[a].db + b0)));
      }
    }
    for (int64_t q = b0 * qpb; q < (b0 + nb) * qpb; q++) {
      const int64_t bb = q / qpb - b0;
      __m512i lo[QG_Q8W_R], hi[QG_Q8W_R];
      for (int r = 0; r < QG_Q8W_R; r++) {
        if (first) _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
        const __m512i pk = _mm512_loadu_si512((const void*)(p[r] + 64 * q));
        lo[r] = _mm512_and_si512(pk, m15);
        hi[r] = _mm512_and_si512(_mm512_srli_epi16(pk, 4), m15);
      }
      for (int a = 0; a < mr; a++) {
        const int8_t* xa = acts[a].xq4 + 128 * q;
        const __m512i xl = _mm512_load_si512((const void*)xa), xh = _mm512_load_si512((const void*)(xa + 64));
        for (int r = 0; r < QG_Q8W_R; r++) {
          const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xl), hi[r], xh);
          acc[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(sct[r][a][bb]), acc[r][a]);
        }
      }
    }
  }
  for (int r = 0; r < nr; r++)
    for (int a = 0; a < mr; a++) y[a * w->n + r0 + r] = _mm512_reduce_add_ps(acc[r][a]);
}
#endif

QG_MM_IN void q8t_rows(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0, int64_t n1,
                       const int64_t cpb) {
#if QG_MM_512
  if (m >= 16 && n1 - n0 >= 16) { /* whole groups of 16 rows in the lanes (below M = 16 the transposes cost more than they save); the rest below */
    __m512 acc[QG_Q8_MAX_M];
    for (; n0 + 16 <= n1; n0 += 16) q8x_rows16(w, acts, m, y, n0, cpb, acc);
  }
#endif
#if QG_MM_512
  if (cpb % 4 == 0) {
    for (int64_t r0 = n0; r0 < n1; r0 += QG_Q8W_R) {
      const int64_t nr = n1 - r0 < QG_Q8W_R ? n1 - r0 : QG_Q8W_R;
      for (int64_t mi = 0; mi < m; mi += QG_Q8W_MR) {
        const int64_t mr = m - mi < QG_Q8W_MR ? m - mi : QG_Q8W_MR;
        float* ym = y + mi * w->n;
        switch (mr) {
          case 4: q8w_tile(w, acts + mi, 4, r0, nr, cpb, ym, mi == 0); break;
          case 3: q8w_tile(w, acts + mi, 3, r0, nr, cpb, ym, mi == 0); break;
          case 2: q8w_tile(w, acts + mi, 2, r0, nr, cpb, ym, mi == 0); break;
          default: q8w_tile(w, acts + mi, 1, r0, nr, cpb, ym, mi == 0); break;
        }
      }
    }
    return;
  }
#endif
  for (int64_t r0 = n0; r0 < n1; r0 += 4) {
    const int64_t nr = n1 - r0 < 4 ? n1 - r0 : 4;
    for (int64_t mi = 0; mi < m; mi += QG_Q8T_MR) {
      const int64_t mr = m - mi < QG_Q8T_MR ? m - mi : QG_Q8T_MR;
      float* ym = y + mi * w->n;
#if QG_MM_512
#endif
      switch (mr) { /* constant tile heights, so the accumulators stay in registers */
#if QG_MM_512
        case 4: q8t_tile(w, acts + mi, 4, r0, nr, cpb, ym, mi == 0); break;
        case 3: q8t_tile(w, acts + mi, 3, r0, nr, cpb, ym, mi == 0); break;
#endif
        case 2: q8t_tile(w, acts + mi, 2, r0, nr, cpb, ym, mi == 0); break;
        default: q8t_tile(w, acts + mi, 1, r0, nr, cpb, ym, mi == 0); break;
      }
    }
  }
}

QG_MM_FN static void QG_MM_NAME(gemm_int4_q8t)(const qg_weight* w, const qg_q8_act* acts, int64_t m, float* y, int64_t n0,
                                                int64_t n1) {
  switch (w->bs / 32) { /* constant chunks per block for the common block sizes */
    case 1: q8t_rows(w, acts, m, y, n0, n1, 1); break;
    case 2: q8t_rows(w, acts, m, y, n0, n1, 2); break;
    case 4: q8t_rows(w, acts, m, y, n0, n1, 4); break;
    default: q8t_rows(w, acts, m, y, n0, n1, w->bs / 32); break;
  }
}

/* ---------------- M = 1 (q8v): one activation scale per weight block ----------------
 * Four weight rows per tile, blocks in groups of QG_Q8V_G: at the start of a group each row forms the
 * products s * db of the group's blocks in one vector multiply (kept on the stack) and subtracts the
 * group's zero-point terms s * z * dsb in one multiply-add. The int32 dot products of a block's quads
 * then add up before one conversion and one multiply-add by the broadcast s * db (bs 128: one each per
 * quad instead of a multiply of weight by activation scales on top; bs 256: one per two quads); at bs
 * 32 / 64 a quad spans four / two blocks and takes its lanes' scales with one permute. Chunks past the
 * last whole quad take the scalar tail. CPB: chunks per block, 1, 2, 4 or 8. */
#if QG_MM_512
#define QG_Q8V_G 16
#define QG_Q8V_R 4 /* rows per tile: measured best (Zen 4, bs 128 hot: 2 rows 1.2x and 8 rows 1.07x slower) */
/* Measured and left out (Zen 4, 64-byte aligned weights): loading each packed vector once into a register (an
 * empty asm stops GCC from folding the load into both the AND and the shift) made bs 128 hot a further 1.04x
 * faster but cold (weights from memory) 1.04-1.2x slower; cold is what decoding a model larger than the caches
 * sees. GFNI's affine byte shift for the high nibble (one op for the shift and mask) was 1.03x slower. */
QG_MM_IN void q8v_tile(const qg_weight* w, const qg_q8_act* a, int64_t r0, int64_t nr, const int64_t cpb, float* y, const int il) {
  const int64_t bpr = w->bpr, chunks = bpr * cpb, quads = chunks / 4;
  /* il: the row-interleaved layout (qg_prepack_int4_q8): the tile's quads are 256 contiguous bytes, row by row,
   * and its last rows already repeat the last real one */
  const int64_t qs = il ? 256 : 64;
  const uint8_t* p[QG_Q8V_R];
  const float* s[QG_Q8V_R];
  const uint8_t* z[QG_Q8V_R];
  for (int r = 0; r < QG_Q8V_R; r++) { /* rows past the end repeat the last one; their sums are dropped */
    const int64_t row = r0 + (r < nr ? r : nr - 1);
    p[r] = il ? w->packed + r0 * w->row_bytes + 64 * r : w->packed + row * w->row_bytes;
    s[r] = w->scales + row * bpr;
    z[r] = w->zp ? w->zp + row * bpr : NULL;
  }
  const __m512i m15 = _mm512_set1_epi8(15);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  /* the block of each lane of a quad's dot products (bs 32: lane / 4, bs 64: lane / 8) */
  const __m512i lane_block = _mm512_srli_epi32(lane, cpb == 1 ? 2 : 3);
  __m512 acc[QG_Q8V_R];
  float scs[QG_Q8V_R][QG_Q8V_G] __attribute__((aligned(64)));
  for (int r = 0; r < QG_Q8V_R; r++) acc[r] = _mm512_setzero_ps();
  for (int64_t b0 = 0; b0 < bpr; b0 += QG_Q8V_G) {
    const int64_t nb = bpr - b0 < QG_Q8V_G ? bpr - b0 : QG_Q8V_G;
    const __mmask16 mk = nb == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nb) - 1);
    const __m512 dbv = _mm512_maskz_loadu_ps(mk, a->db + b0), dsv = _mm512_maskz_loadu_ps(mk, a->dsb + b0);
    __m512 scv[QG_Q8V_R];
    for (int r = 0; r < QG_Q8V_R; r++) {
      _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + b0 + 15), _MM_HINT_T1);
      if (z[r]) _mm_prefetch((const char*)(z[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      const __m512 sv = _mm512_maskz_loadu_ps(mk, s[r] + b0);
      const __m512 zv = z[r] ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, z[r] + b0))) : _mm512_set1_ps(8.0f);
      acc[r] = _mm512_fnmadd_ps(_mm512_mul_ps(sv, zv), dsv, acc[r]);
      scv[r] = _mm512_mul_ps(sv, dbv);
      if (cpb >= 4) _mm512_store_ps(scs[r], scv[r]);
    }
    if (cpb >= 4) { /* whole blocks of cpb / 4 quads */
      for (int64_t bb = 0; bb < nb; bb++) {
        const int64_t qa = (b0 + bb) * (cpb / 4);
        __m512i d[QG_Q8V_R];
        for (int r = 0; r < QG_Q8V_R; r++) d[r] = _mm512_setzero_si512();
        for (int64_t q = qa; q < qa + cpb / 4; q++) {
          const __m512i xl = _mm512_load_si512((const void*)(a->xq4 + 128 * q)), xh = _mm512_load_si512((const void*)(a->xq4 + 128 * q + 64));
          for (int r = 0; r < QG_Q8V_R; r++) {
            /* the interleaved layout is one sequential stream, which the hardware prefetchers follow */
            if (!il) _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
            const __m512i pk = _mm512_loadu_si512((const void*)(p[r] + qs * q));
            /* at most 256 products of |15 x 127| per block: each lane's int32 sum stays below 2^19 */
            d[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d[r], _mm512_and_si512(pk, m15), xl),
                                       _mm512_and_si512(_mm512_srli_epi16(pk, 4), m15), xh);
          }
        }
        /* s * db of the block broadcast from the stack copy: a load, where a permute would take a vector ALU
         * slot (bs 128 hot, 64-byte aligned weights: 1.11x faster; cold unchanged) */
        for (int r = 0; r < QG_Q8V_R; r++) acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[r]), _mm512_set1_ps(scs[r][bb]), acc[r]);
      }
    } else { /* quads of 4 / cpb blocks, whole quads only */
      const int64_t qa = b0 * cpb / 4, qe = (b0 + nb) * cpb / 4 < quads ? (b0 + nb) * cpb / 4 : quads;
      for (int64_t q = qa; q < qe; q++) {
        const __m512i xl = _mm512_load_si512((const void*)(a->xq4 + 128 * q)), xh = _mm512_load_si512((const void*)(a->xq4 + 128 * q + 64));
        const __m512i idx = _mm512_add_epi32(lane_block, _mm512_set1_epi32((int)((q - qa) * (4 / cpb))));
        for (int r = 0; r < QG_Q8V_R; r++) {
          if (!il) _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
          const __m512i pk = _mm512_loadu_si512((const void*)(p[r] + qs * q));
          const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(pk, m15), xl),
                                                _mm512_and_si512(_mm512_srli_epi16(pk, 4), m15), xh);
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, scv[r]), acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < nr; r++) {
    float t = _mm512_reduce_add_ps(acc[r]);
    if (quads * 4 < chunks) t += QG_MM_NAME(q8t_tail)(p[r], s[r], a, quads * 4, chunks, cpb);
    y[r0 + r] = t;
  }
}
#else
#define QG_Q8V_G 8
#define QG_Q8V_R 4
QG_MM_IN void q8v_tile(const qg_weight* w, const qg_q8_act* a, int64_t r0, int64_t nr, const int64_t cpb, float* y, const int il) {
  (void)il; /* the interleaved layout is read by the AVX-512 tile only (gemv_int4_q8_il) */
  const int64_t bpr = w->bpr, chunks = bpr * cpb, quads = chunks / 4;
  const uint8_t* p[4];
  const float* s[4];
  const uint8_t* z[4];
  for (int r = 0; r < 4; r++) {
    const int64_t row = r0 + (r < nr ? r : nr - 1);
    p[r] = w->packed + row * w->row_bytes;
    s[r] = w->scales + row * bpr;
    z[r] = w->zp ? w->zp + row * bpr : NULL;
  }
  const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  /* the block of each lane of a half quad's dot products at bs 32 (lane / 4) */
  const __m256i lane_block = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m256 acc[4];
  for (int r = 0; r < 4; r++) acc[r] = _mm256_setzero_ps();
  float sc[4][QG_Q8V_G] __attribute__((aligned(32)));
  for (int64_t b0 = 0; b0 < bpr; b0 += QG_Q8V_G) {
    const int64_t nb = bpr - b0 < QG_Q8V_G ? bpr - b0 : QG_Q8V_G;
    float dbb[QG_Q8V_G] = {0}, dsbb[QG_Q8V_G] = {0}, sb[QG_Q8V_G] = {0};
    const float *dbp = a->db + b0, *dsp = a->dsb + b0;
    if (nb < QG_Q8V_G) { /* the last, partial group: zero-padded copies */
      memcpy(dbb, dbp, (size_t)nb * 4);
      memcpy(dsbb, dsp, (size_t)nb * 4);
      dbp = dbb;
      dsp = dsbb;
    }
    const __m256 dbv = _mm256_loadu_ps(dbp), dsv = _mm256_loadu_ps(dsp);
    __m256 scv[4];
    for (int r = 0; r < 4; r++) {
      _mm_prefetch((const char*)(s[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      if (z[r]) _mm_prefetch((const char*)(z[r] + QG_Q8T_PF_ROWS * bpr + b0), _MM_HINT_T1);
      const float* sp = s[r] + b0;
      __m256 zv = _mm256_set1_ps(8.0f);
      if (nb < QG_Q8V_G) {
        memcpy(sb, sp, (size_t)nb * 4);
        sp = sb;
        if (z[r]) {
          float zb[QG_Q8V_G] = {0};
          for (int64_t i = 0; i < nb; i++) zb[i] = (float)z[r][b0 + i];
          zv = _mm256_loadu_ps(zb);
        }
      } else if (z[r])
        zv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mm_load8(z[r] + b0)));
      const __m256 sv = _mm256_loadu_ps(sp);
      acc[r] = _mm256_fnmadd_ps(_mm256_mul_ps(sv, zv), dsv, acc[r]);
      scv[r] = _mm256_mul_ps(sv, dbv);
      if (cpb >= 2) _mm256_store_ps(sc[r], scv[r]);
    }
    if (cpb >= 2) { /* blocks of cpb / 2 half quads (inside whole quads): int16 sums over the block, one madd */
      const int64_t nbq = quads * 4 / cpb - b0 < nb ? quads * 4 / cpb - b0 : nb;
      for (int64_t bb = 0; bb < nbq; bb++) {
        const int64_t ha = (b0 + bb) * (cpb / 2);
        __m256i d[4];
        for (int r = 0; r < 4; r++) d[r] = _mm256_setzero_si256();
        for (int64_t hq = ha; hq < ha + cpb / 2; hq++) {
          const int64_t q = hq >> 1, h = hq & 1;
          const int8_t* xa = a->xq4 + 128 * q + 32 * h;
          const __m256i xl = _mm256_load_si256((const __m256i*)xa), xh = _mm256_load_si256((const __m256i*)(xa + 64));
          for (int r = 0; r < 4; r++) {
            if (h == 0) _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
            const __m256i pk = _mm256_loadu_si256((const __m256i*)(p[r] + 64 * q + 32 * h));
            /* an int16 lane gains four products of |15 x 127| per half quad, at most four half quads per
             * block (bs 256): 16 x 1905 = 30480 < 2^15 */
            d[r] = _mm256_add_epi16(d[r], _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(pk, m15), xl),
                                                           _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(pk, 4), m15), xh)));
          }
        }
        for (int r = 0; r < 4; r++)
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(d[r], ones)), _mm256_broadcast_ss(&sc[r][bb]), acc[r]);
      }
    } else { /* bs 32: half quads of two blocks, whole quads only */
      const int64_t qa = b0 / 4, qe = (b0 + nb) / 4 < quads ? (b0 + nb) / 4 : quads;
      for (int64_t q = qa; q < qe; q++)
        for (int h = 0; h < 2; h++) {
          const int8_t* xa = a->xq4 + 128 * q + 32 * h;
          const __m256i xl = _mm256_load_si256((const __m256i*)xa), xh = _mm256_load_si256((const __m256i*)(xa + 64));
          const __m256i idx = _mm256_add_epi32(lane_block, _mm256_set1_epi32((int)(4 * (q - qa) + 2 * h)));
          for (int r = 0; r < 4; r++) {
            if (h == 0) _mm_prefetch((const char*)(p[r] + QG_Q8T_PF_ROWS * w->row_bytes + 64 * q), _MM_HINT_T1);
            const __m256i pk = _mm256_loadu_si256((const __m256i*)(p[r] + 64 * q + 32 * h));
            const __m256i d = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(pk, m15), xl),
                                                                 _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(pk, 4), m15), xh)),
                                                ones);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_permutevar8x32_ps(scv[r], idx), acc[r]);
          }
        }
    }
  }
  for (int r = 0; r < nr; r++) {
    float t = mm_hsum8(acc[r]);
    if (quads * 4 < chunks) t += QG_MM_NAME(q8t_tail)(p[r], s[r], a, quads * 4, chunks, cpb);
    y[r0 + r] = t;
  }
}
#endif

QG_MM_IN void q8v_rows(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1, const int64_t cpb, const int il) {
  for (int64_t r0 = n0; r0 < n1; r0 += QG_Q8V_R) q8v_tile(w, a, r0, n1 - r0 < QG_Q8V_R ? n1 - r0 : QG_Q8V_R, cpb, y, il);
}

QG_MM_FN static void QG_MM_NAME(gemv_int4_q8t)(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1) {
  switch (w->bs / 32) { /* constant chunks per block; other block sizes (quads across blocks) take the GEMM tiles */
    case 1: q8v_rows(w, a, y, n0, n1, 1, 0); break;
    case 2: q8v_rows(w, a, y, n0, n1, 2, 0); break;
    case 4: q8v_rows(w, a, y, n0, n1, 4, 0); break;
    case 8: q8v_rows(w, a, y, n0, n1, 8, 0); break;
    default: QG_MM_NAME(gemm_int4_q8t)(w, a, 1, y, n0, n1); break;
  }
}

#if QG_MM_512
/* q8v on the row-interleaved layout of qg_prepack_int4_q8: rows in tiles of 4 (n0 a multiple of 4), every row a
 * whole number of quads (bs 32, 64, 128, 256). The caller checks both. */
QG_MM_FN static void QG_MM_NAME(gemv_int4_q8il)(const qg_weight* w, const qg_q8_act* a, float* y, int64_t n0, int64_t n1) {
  switch (w->bs / 32) {
    case 1: q8v_rows(w, a, y, n0, n1, 1, 1); break;
    case 2: q8v_rows(w, a, y, n0, n1, 2, 1); break;
    case 4: q8v_rows(w, a, y, n0, n1, 4, 1); break;
    case 8: q8v_rows(w, a, y, n0, n1, 8, 1); break;
    default: break;
  }
}
#endif
#undef QG_Q8V_G
#undef QG_Q8V_R
#undef QG_Q8W_R
#undef QG_Q8W_MR
#undef QG_Q8T_MR

/* ---------------- activation quantizer of the int8-activation kernels ----------------
 * Bit-identical to qg_quant_act_q8_ref: max is exact, x * inv is the same float product, rounding half
 * away from zero as qg_round_away, and a NaN converts to INT_MIN and clamps to -127 as the scalar
 * conversion does on x86. */
#if QG_MM_512
QG_MM_IN __m512i q8_round_clamp(__m512 v) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 away = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 r = _mm512_mask_add_ps(t, away, t, _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, sign)));
  return _mm512_max_epi32(_mm512_min_epi32(_mm512_cvttps_epi32(r), _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
}

QG_MM_FN static void QG_MM_NAME(quant_act_q8)(const float* x, int64_t k, int64_t blocks, int bs, int8_t* xq, float* db, int32_t* sq) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const int cpb = bs / 32;
  for (int64_t b = 0; b < blocks; b++) {
    __m512 am = _mm512_setzero_ps();
    for (int c = 0; c < cpb; c++) { /* the block's amax; zeros past k */
      const int64_t i0 = b * bs + c * 32, n = k - i0;
      const __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
      const __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, m0 ? x + i0 : x), v1 = _mm512_maskz_loadu_ps(m1, m1 ? x + i0 + 16 : x);
      /* max(|v|, acc) keeps acc where |v| is NaN, as the reference's comparison skips it */
      am = _mm512_max_ps(_mm512_andnot_ps(sign, v1), _mm512_max_ps(_mm512_andnot_ps(sign, v0), am));
    }
    const float amax = _mm512_reduce_max_ps(am);
    const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vi = _mm512_set1_ps(inv);
    __m512i sum = _mm512_setzero_si512();
    for (int c = 0; c < cpb; c++) {
      const int64_t i0 = b * bs + c * 32, n = k - i0;
      const __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
      const __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, m0 ? x + i0 : x), v1 = _mm512_maskz_loadu_ps(m1, m1 ? x + i0 + 16 : x);
      const __m512i q0 = q8_round_clamp(_mm512_mul_ps(v0, vi)), q1 = q8_round_clamp(_mm512_mul_ps(v1, vi));
      _mm_storeu_si128((__m128i*)(xq + i0), _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, even, q1)));
      _mm_storeu_si128((__m128i*)(xq + i0 + 16), _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, odd, q1)));
      sum = _mm512_add_epi32(sum, _mm512_add_epi32(q0, q1));
    }
    db[b] = d;
    sq[b] = _mm512_reduce_add_epi32(sum);
  }
}
#else
QG_MM_IN __m256i q8_round_clamp(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign))));
  return _mm256_max_epi32(_mm256_min_epi32(_mm256_cvttps_epi32(r), _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
}

QG_MM_FN static void QG_MM_NAME(quant_act_q8)(const float* x, int64_t k, int64_t blocks, int bs, int8_t* xq, float* db, int32_t* sq) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const int cpb = bs / 32;
  for (int64_t b = 0; b < blocks; b++) {
    __m256 am = _mm256_setzero_ps();
    float buf[32]; /* the partial last chunk, zero-filled */
    for (int c = 0; c < cpb; c++) {
      const int64_t i0 = b * bs + c * 32, n = k - i0;
      if (n <= 0) break; /* all zeros from here */
      const float* src = x + i0;
      if (n < 32) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, src, (size_t)n * sizeof(float));
        src = buf;
      }
      for (int v = 0; v < 4; v++) am = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(src + 8 * v)), am);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vi = _mm256_set1_ps(inv);
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < cpb; c++) {
      const int64_t i0 = b * bs + c * 32, n = k - i0;
      if (n <= 0) {
        memset(xq + i0, 0, 32);
        continue;
      }
      const float* src = x + i0;
      if (n < 32) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, src, (size_t)n * sizeof(float));
        src = buf;
      }
      int32_t qi[32];
      for (int v = 0; v < 4; v++) {
        const __m256i q = q8_round_clamp(_mm256_mul_ps(_mm256_loadu_ps(src + 8 * v), vi));
        sum = _mm256_add_epi32(sum, q);
        _mm256_storeu_si256((__m256i*)(qi + 8 * v), q);
      }
      for (int i = 0; i < 32; i++) xq[i0 + (i & 1) * 16 + (i >> 1)] = (int8_t)qi[i];
    }
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    db[b] = d;
    sq[b] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
  }
}
#endif
