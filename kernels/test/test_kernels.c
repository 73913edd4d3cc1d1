/* C test driver: every dispatched (SIMD) kernel against its scalar reference on awkward sizes.
 * Exits non-zero on the first failure class; run under -fsanitize=address,undefined by test-asan.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../src/qg_internal.h"

static int failures;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      failures++;                                          \
      if (failures < 20) { printf("FAIL: " __VA_ARGS__); printf("\n"); } \
    }                                                      \
  } while (0)

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }
/* Student-t-like heavy tail: Gaussian divided by a random scale. */
static float heavy(void) { return gauss() / (float)(0.15 + urand()); }

static void fill(float* w, int64_t count, int kind) {
  for (int64_t i = 0; i < count; i++) w[i] = kind == 0 ? gauss() * 0.05f : kind == 1 ? heavy() * 0.02f : 0.0f;
  if (kind == 0 && count > 40) for (int64_t i = 0; i < 33 && i < count; i++) w[i] = 0.0f; /* an all-zero block */
  if (kind == 3) for (int64_t i = 0; i < count; i++) w[i] = (float)((int)(urand() * 9) - 4) * 0.25f; /* ties galore */
}

static const int SIZES[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 95, 129};
#define NSIZES ((int)(sizeof(SIZES) / sizeof(SIZES[0])))

static void test_quantize_int(void) {
  const int bitsv[] = {2, 3, 4, 8}, bsv[] = {16, 32, 64, 128};
  for (int bi = 0; bi < 4; bi++)
    for (int si = 0; si < 4; si++)
      for (int sym = 0; sym < 2; sym++)
        for (int clip = 0; clip < 2; clip++)
          for (int kind = 0; kind < 4; kind++) {
            const int bits = bitsv[bi], bs = bsv[si];
            const int64_t n = 5, k = (si * 4 + kind) % 2 ? 129 : 95 + bs; /* K not a multiple of bs */
            const int64_t bpr = (k + bs - 1) / bs;
            float* w = malloc(sizeof(float) * n * k);
            fill(w, n * k, kind);
            uint8_t *c1 = malloc(n * bpr * bs), *c2 = malloc(n * bpr * bs), *z1 = malloc(n * bpr), *z2 = malloc(n * bpr);
            float *s1 = malloc(4 * n * bpr), *s2 = malloc(4 * n * bpr);
            qg_force_ref(1);
            qg_quantize_int(w, n, k, bits, bs, sym, clip, c1, s1, z1, 1);
            qg_force_ref(0);
            qg_quantize_int(w, n, k, bits, bs, sym, clip, c2, s2, z2, 1);
            CHECK(!memcmp(c1, c2, n * bpr * bs) && !memcmp(s1, s2, 4 * n * bpr) && !memcmp(z1, z2, n * bpr),
                  "quantize_int bits=%d bs=%d sym=%d clip=%d kind=%d differs from ref", bits, bs, sym, clip, kind);
            free(w); free(c1); free(c2); free(z1); free(z2); free(s1); free(s2);
          }
}

/* |y - yref| <= budget * (sum_i |w_i x_i| + tiny): a relative budget that respects cancellation. */
static void compare(const char* what, const float* y, const float* yref, const float* mag, int64_t count, double budget) {
  for (int64_t i = 0; i < count; i++) {
    const double err = fabs((double)y[i] - yref[i]);
    if (!(err <= budget * (mag[i] + 1e-30))) {
      CHECK(0, "%s: y[%lld]=%g ref=%g err=%g budget=%g", what, (long long)i, y[i], yref[i], err, budget * mag[i]);
      return;
    }
  }
}

static void abs_gemm(const float* wdeq, const float* x, int64_t n, int64_t k, int64_t m, float* mag) {
  for (int64_t mi = 0; mi < m; mi++)
    for (int64_t r = 0; r < n; r++) {
      double s = 0;
      for (int64_t i = 0; i < k; i++) s += fabs((double)wdeq[r * k + i] * x[mi * k + i]);
      mag[mi * n + r] = (float)s;
    }
}

/* Named error budgets (relative to sum |w x|): float32 summation-order differences only. */
#define BUDGET_INT 2e-5
#define BUDGET_LUT 2e-5
#define BUDGET_F32 2e-5

static void test_gemm_int(void) {
  const int bitsv[] = {2, 3, 4, 8};
  const int64_t ms[] = {1, 3, 64, 65};
  for (int bi = 0; bi < 4; bi++)
    for (int si = 0; si < NSIZES; si += 1)
      for (int mi = 0; mi < 4; mi++) {
        const int bits = bitsv[bi], bs = (si % 4 == 0) ? 16 : (si % 4 == 1) ? 32 : (si % 4 == 2) ? 64 : 128;
        const int64_t k = SIZES[si] * 3 + (si % 3), n = SIZES[(si * 7 + mi) % NSIZES], m = ms[mi];
        const int64_t bpr = (k + bs - 1) / bs, bb = bs * bits / 8;
        float *w = malloc(4 * n * k), *x = malloc(4 * m * k), *s = malloc(4 * n * bpr), *deq = malloc(4 * n * k);
        uint8_t *c = malloc(n * bpr * bs), *z = malloc(n * bpr), *p = malloc(n * bpr * bb);
        float *y1 = malloc(4 * m * n), *y2 = malloc(4 * m * n), *mag = malloc(4 * m * n);
        fill(w, n * k, 1);
        fill(x, m * k, 0);
        const int sym = (si + mi) % 2;
        qg_quantize_int(w, n, k, bits, bs, sym, 0, c, s, z, 1);
        qg_pack_bits(c, n * bpr * bs, bits, bs, p);
        qg_dequantize_int(p, s, sym ? NULL : z, n, k, bits, bs, deq);
        abs_gemm(deq, x, n, k, m, mag);
        qg_force_ref(1);
        qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y1, 1);
        qg_force_ref(0);
        qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y2, 1);
        char what[96];
        snprintf(what, sizeof what, "gemm_int bits=%d bs=%d n=%lld k=%lld m=%lld", bits, bs, (long long)n, (long long)k, (long long)m);
        compare(what, y2, y1, mag, m * n, BUDGET_INT);
        /* and the reference itself against the dequantized float product */
        qg_gemm_f32(deq, n, k, x, m, y2, 1);
        compare(what, y2, y1, mag, m * n, BUDGET_F32);
        free(w); free(x); free(s); free(deq); free(c); free(z); free(p); free(y1); free(y2); free(mag);
      }
}

/* int8-activation int4 GEMV: SIMD vs reference (same math, tight), and vs the float product: the
 * activations carry int8 rounding, at most half a step (amax / 127 of the block) per element, so
 * |y - y_float| <= sum_i |w_i| * step(block of i) / 2 plus the float budget. */
#define BUDGET_Q8_VS_REF 2e-6
static void compare_q8_rounding(const char* what, const float* y, const float* yf, const float* deq, const float* x, int64_t n,
                                int64_t k, int bs, const float* mag) {
  for (int64_t r = 0; r < n; r++) {
    double bound = 0.0;
    for (int64_t b0 = 0; b0 < k; b0 += bs) {
      float amax = 0.0f;
      for (int64_t i = b0; i < b0 + bs && i < k; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
      double wsum = 0.0;
      for (int64_t i = b0; i < b0 + bs && i < k; i++) wsum += fabs((double)deq[r * k + i]);
      bound += wsum * (amax / 127.0) * 0.5;
    }
    const double err = fabs((double)y[r] - yf[r]);
    if (!(err <= bound * (1 + 1e-5) + BUDGET_INT * mag[r])) {
      CHECK(0, "%s: y[%lld]=%g float=%g err=%g exceeds the int8 rounding bound %g", what, (long long)r, y[r], yf[r], err, bound);
      return;
    }
  }
}
static void test_gemv_q8(void) {
  const int bsv[] = {32, 64, 96, 128, 256}; /* 96: the GEMM tiles; the others the GEMV's groups of blocks */
  for (int si = 0; si <= NSIZES; si++)
    for (int bi = 0; bi < 5; bi++) {
      const int bs = bsv[bi];
      /* si == NSIZES: several groups of 16 blocks and a partial last group and block */
      const int64_t k = si < NSIZES ? SIZES[si] * 7 + 1 : 2 * 4096 + 96 + 5, n = SIZES[(si + bi) % NSIZES], bpr = (k + bs - 1) / bs;
      float *w = malloc(4 * n * k), *x = malloc(4 * k), *s = malloc(4 * n * bpr), *deq = malloc(4 * n * k);
      uint8_t *c = malloc(n * bpr * bs), *z = malloc(n * bpr), *p = malloc(n * bpr * bs / 2);
      float *y1 = malloc(4 * n), *y2 = malloc(4 * n), *y3 = malloc(4 * n), *mag = malloc(4 * n);
      void* ws = malloc((size_t)qg_gemv_q8_workspace_bytes(k, bs));
      fill(w, n * k, 1);
      fill(x, k, 0);
      const int sym = si % 2;
      qg_quantize_int(w, n, k, 4, bs, sym, 0, c, s, z, 1);
      qg_pack_bits(c, n * bpr * bs, 4, bs, p);
      qg_dequantize_int(p, s, sym ? NULL : z, n, k, 4, bs, deq);
      abs_gemm(deq, x, n, k, 1, mag);
      qg_force_ref(1);
      qg_gemv_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, y1, ws, 1);
      qg_force_ref(0);
      qg_gemv_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, y2, ws, 1);
      qg_gemm_int(p, s, sym ? NULL : z, n, k, 4, bs, x, 1, y3, 1);
      char what[96];
      snprintf(what, sizeof what, "gemv_int4_q8 bs=%d n=%lld k=%lld", bs, (long long)n, (long long)k);
      compare(what, y2, y1, mag, n, BUDGET_Q8_VS_REF);
      compare_q8_rounding(what, y2, y3, deq, x, n, k, bs, mag);
      /* the row-interleaved layout: the same numbers bit for bit, one and two threads; or no kernel for it */
      const int64_t ib = qg_prepack_int4_q8_bytes(n, k, bs);
      if (ib > 0) {
        uint8_t* pp = malloc((size_t)ib);
        CHECK(qg_prepack_int4_q8(p, n, k, bs, pp) == QG_OK, "prepack %s", what);
        for (int threads = 1; threads <= 2; threads++) {
          CHECK(qg_gemv_int4_q8_prepacked(pp, s, sym ? NULL : z, n, k, bs, x, y3, ws, threads) == QG_OK, "prepacked %s", what);
          CHECK(memcmp(y3, y2, 4 * (size_t)n) == 0, "%s: prepacked layout differs from the plain one (%d threads)", what, threads);
        }
        free(pp);
      } else {
        uint8_t one[64];
        CHECK(qg_gemv_int4_q8_prepacked(p, s, sym ? NULL : z, n, k, bs, x, y3, ws, 1) == QG_ENOKERNEL, "%s: prepacked without a kernel", what);
        CHECK(qg_prepack_int4_q8(p, n, k, bs, one) == QG_ENOKERNEL, "%s: prepack without a kernel", what);
        CHECK(strcmp(qg_isa(), "avx512") != 0 || bs == 96 || (k + bs - 1) / bs * (bs / 2) % 64, "%s: avx512 reads the layout", what);
      }
      free(w); free(x); free(s); free(deq); free(c); free(z); free(p); free(y1); free(y2); free(y3); free(mag); free(ws);
    }
}

/* The dispatched activation quantizer of the int8-activation kernels: byte-identical to the reference on
 * every block size and K remainder, ties (x * 127 / amax exactly half-way), all-zero chunks and blocks,
 * NaN and infinities. */
static void test_quant_act_q8(void) {
  const int64_t ks[] = {1, 5, 16, 17, 31, 32, 33, 95, 129, 200, 4096 + 7};
  const int bsv[] = {32, 64, 96, 128, 256};
  for (int ki = 0; ki < 11; ki++)
    for (int bi = 0; bi < 5; bi++)
      for (int kind = 0; kind < 4; kind++) {
        const int bs = bsv[bi];
        const int64_t k = ks[ki], blocks = (k + bs - 1) / bs + (ki % 3); /* blocks past k are all zeros */
        float* x = malloc(sizeof(float) * (size_t)k);
        int8_t *q1 = malloc((size_t)(blocks * bs)), *q2 = malloc((size_t)(blocks * bs));
        float *d1 = malloc(sizeof(float) * (size_t)blocks), *d2 = malloc(sizeof(float) * (size_t)blocks);
        int32_t *s1 = malloc(sizeof(int32_t) * (size_t)blocks), *s2 = malloc(sizeof(int32_t) * (size_t)blocks);
        fill(x, k, kind);
        if (kind == 3 && k > 40) { /* 127 / amax * x lands on .5: amax = 2.54, x = 0.01 * (2j + 1) */
          for (int64_t i = 0; i < 32; i++) x[i] = 0.01f * (float)(2 * (i % 16) + 1) * (i & 1 ? -1.0f : 1.0f);
          x[5] = 2.54f;
          x[33] = NAN;
          x[34] = INFINITY;
        }
        if (kind == 2 && k > 100) x[k - 1] = 3.0f; /* one nonzero in a block of zeros */
        qg_quant_act_q8_ref(x, k, blocks, bs, q1, d1, s1);
        qg_dispatch_table()->quant_act_q8(x, k, blocks, bs, q2, d2, s2);
        CHECK(!memcmp(q1, q2, (size_t)(blocks * bs)) && !memcmp(d1, d2, sizeof(float) * (size_t)blocks) &&
                  !memcmp(s1, s2, sizeof(int32_t) * (size_t)blocks),
              "quant_act_q8 %s k=%lld bs=%d kind=%d differs from the reference", qg_isa(), (long long)k, bs, kind);
        free(x); free(q1); free(q2); free(d1); free(d2); free(s1); free(s2);
      }
}

/* int8-activation GEMM: the dispatched kernel against the reference (the GEMV reference per row) and
 * row by row against the GEMV kernel, on awkward M, N, K (K past whole groups of eight chunks too). */
static void test_gemm_q8(void) {
  const int bsv[] = {32, 64, 96, 128, 160, 256}; /* 96, 160: quads straddle blocks */
  const int64_t ms[] = {1, 2, 3, 5, 8, 17, 33, 130};
  for (int si = 0; si < NSIZES; si += 2)
    for (int bi = 0; bi < 6; bi++) {
      const int bs = bsv[bi];
      const int64_t k = si % 4 == 0 ? 512 * (1 + si % 3) : SIZES[si] * 7 + 1, n = SIZES[(si + bi) % NSIZES] + 2, bpr = (k + bs - 1) / bs;
      const int64_t m = ms[(si + bi) % 8];
      float *w = malloc(4 * n * k), *x = malloc(4 * m * k), *s = malloc(4 * n * bpr), *deq = malloc(4 * n * k);
      uint8_t *c = malloc(n * bpr * bs), *z = malloc(n * bpr), *p = malloc(n * bpr * bs / 2);
      float *y1 = malloc(4 * n * m), *y2 = malloc(4 * n * m), *y3 = malloc(4 * n), *mag = malloc(4 * n * m);
      void* ws = malloc((size_t)qg_gemm_q8_workspace_bytes(m, k, bs));
      void* ws1 = malloc((size_t)qg_gemv_q8_workspace_bytes(k, bs));
      fill(w, n * k, 1);
      fill(x, m * k, 0);
      const int sym = (si + bi) % 2;
      qg_quantize_int(w, n, k, 4, bs, sym, 0, c, s, z, 1);
      qg_pack_bits(c, n * bpr * bs, 4, bs, p);
      qg_dequantize_int(p, s, sym ? NULL : z, n, k, 4, bs, deq);
      abs_gemm(deq, x, n, k, m, mag);
      qg_force_ref(1);
      CHECK(qg_gemm_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, m, y1, ws, 2) == QG_OK, "gemm_int4_q8 ref");
      qg_force_ref(0);
      CHECK(qg_gemm_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, m, y2, ws, 2) == QG_OK, "gemm_int4_q8");
      char what[96];
      snprintf(what, sizeof what, "gemm_int4_q8 %s bs=%d m=%lld n=%lld k=%lld", qg_isa(), bs, (long long)m, (long long)n, (long long)k);
      compare(what, y2, y1, mag, n * m, BUDGET_Q8_VS_REF);
      for (int64_t mi = 0; mi < m; mi += 3) {
        qg_gemv_int4_q8(p, s, sym ? NULL : z, n, k, bs, x + mi * k, y3, ws1, 1);
        compare(what, y2 + mi * n, y3, mag + mi * n, n, BUDGET_Q8_VS_REF);
      }
      free(w); free(x); free(s); free(deq); free(c); free(z); free(p); free(y1); free(y2); free(y3); free(mag); free(ws); free(ws1);
    }
}

/* Long rows: several K tiles of the SIMD GEMV/GEMM, a partial last block, N not a multiple of 4. */
static void test_long_rows(void) {
  const int bitsv[] = {2, 3, 4, 8};
  const int64_t n = 7, k = 2 * 4096 + 96 + 5, ms[] = {1, 5};
  float *w = malloc(4 * n * k), *x = malloc(4 * 5 * k), *deq = malloc(4 * n * k), *s = malloc(4 * n * k);
  float *y1 = malloc(4 * 5 * n), *y2 = malloc(4 * 5 * n), *mag = malloc(4 * 5 * n), tbl[16];
  uint8_t *c = malloc(n * k + 256), *z = malloc(n * k), *p = malloc(n * k + 256);
  fill(w, n * k, 1);
  fill(x, 5 * k, 0);
  for (int bi = 0; bi < 4; bi++)
    for (int bs = 32; bs <= 128; bs *= 4)
      for (int mi = 0; mi < 2; mi++) {
        const int bits = bitsv[bi], sym = mi;
        const int64_t m = ms[mi], bpr = (k + bs - 1) / bs;
        qg_quantize_int(w, n, k, bits, bs, sym, 0, c, s, z, 1);
        qg_pack_bits(c, n * bpr * bs, bits, bs, p);
        qg_dequantize_int(p, s, sym ? NULL : z, n, k, bits, bs, deq);
        abs_gemm(deq, x, n, k, m, mag);
        qg_force_ref(1);
        qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y1, 1);
        qg_force_ref(0);
        qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y2, 2);
        char what[96];
        snprintf(what, sizeof what, "long gemm_int bits=%d bs=%d m=%lld", bits, bs, (long long)m);
        compare(what, y2, y1, mag, m * n, BUDGET_INT);
      }
  const int fmts[] = {QG_FMT_NF4, QG_FMT_FP4, QG_FMT_MXFP4, QG_FMT_FP8, QG_FMT_CODEBOOK};
  qg_codebook_fit(w, n * k, 16, 4, tbl);
  for (int fi = 0; fi < 5; fi++)
    for (int mi = 0; mi < 2; mi++) {
      const int fmt = fmts[fi], bs = fmt == QG_FMT_MXFP4 || mi == 0 ? 32 : 64;
      const int64_t m = ms[mi];
      qg_quantize_lut(fmt, w, n, k, bs, tbl, 16, p, s, 1);
      qg_dequantize_lut(fmt, p, s, tbl, n, k, bs, deq);
      abs_gemm(deq, x, n, k, m, mag);
      qg_force_ref(1);
      qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y1, 1);
      qg_force_ref(0);
      qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y2, 2);
      char what[96];
      snprintf(what, sizeof what, "long gemm_lut fmt=%d bs=%d m=%lld", fmt, bs, (long long)m);
      compare(what, y2, y1, mag, m * n, BUDGET_LUT);
    }
  free(w); free(x); free(deq); free(s); free(y1); free(y2); free(mag); free(c); free(z); free(p);
}

static void test_pack(void) {
  for (int bits = 1; bits <= 8; bits++)
    for (int si = 0; si < NSIZES; si++) {
      const int64_t g = SIZES[si], groups = 3;
      uint8_t *c = malloc(g * groups), *p = malloc(g * groups + 8), *u = malloc(g * groups);
      for (int64_t i = 0; i < g * groups; i++) c[i] = (uint8_t)(urand() * (1 << bits));
      qg_pack_bits(c, g * groups, bits, g, p);
      qg_unpack_bits(p, bits, g, groups, u);
      CHECK(!memcmp(c, u, g * groups), "pack/unpack bits=%d group=%lld", bits, (long long)g);
      /* LSB-first: code 0 of each group sits in the low bits of the group's first byte */
      CHECK((p[0] & ((1 << bits) - 1)) == c[0], "pack LSB-first bits=%d", bits);
      free(c); free(p); free(u);
    }
}

static void test_lut(void) {
  const int fmts[] = {QG_FMT_NF4, QG_FMT_FP4, QG_FMT_MXFP4, QG_FMT_FP8, QG_FMT_CODEBOOK};
  const double qerr[] = {0.12, 0.15, 0.2, 0.04, 0.15}; /* RMS error / RMS weight, Gaussian */
  for (int fi = 0; fi < 5; fi++)
    for (int si = 0; si < NSIZES; si += 2)
      for (int mi = 0; mi < 3; mi++) {
        const int fmt = fmts[fi], bs = fmt == QG_FMT_MXFP4 ? 32 : (si % 2 ? 64 : 32), cb = fmt == QG_FMT_FP8 ? 8 : 4;
        const int64_t k = SIZES[si] * 5 + 1, n = SIZES[(si + 3 * mi) % NSIZES] + 1, m = mi == 0 ? 1 : mi == 1 ? 3 : 64;
        const int64_t bpr = (k + bs - 1) / bs, bb = bs * cb / 8;
        float *w = malloc(4 * n * k), *x = malloc(4 * m * k), *s = malloc(4 * n * bpr), *deq = malloc(4 * n * k), tbl[16];
        uint8_t* p = malloc(n * bpr * bb);
        float *y1 = malloc(4 * m * n), *y2 = malloc(4 * m * n), *mag = malloc(4 * m * n);
        fill(w, n * k, 0);
        fill(x, m * k, 0);
        qg_codebook_fit(w, n * k, 16, 8, tbl);
        CHECK(qg_quantize_lut(fmt, w, n, k, bs, tbl, 16, p, s, 1) == QG_OK, "quantize_lut fmt=%d", fmt);
        qg_dequantize_lut(fmt, p, s, tbl, n, k, bs, deq);
        double e2 = 0, w2 = 0;
        for (int64_t i = 0; i < n * k; i++) { e2 += (double)(deq[i] - w[i]) * (deq[i] - w[i]); w2 += (double)w[i] * w[i]; }
        if (n * k >= 256) CHECK(sqrt(e2 / (w2 + 1e-30)) <= qerr[fi], "quantize_lut fmt=%d rel rms err %g > %g", fmt, sqrt(e2 / w2), qerr[fi]);
        abs_gemm(deq, x, n, k, m, mag);
        qg_force_ref(1);
        qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y1, 1);
        qg_force_ref(0);
        qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y2, 1);
        char what[96];
        snprintf(what, sizeof what, "gemm_lut fmt=%d n=%lld k=%lld m=%lld", fmt, (long long)n, (long long)k, (long long)m);
        compare(what, y2, y1, mag, m * n, BUDGET_LUT);
        free(w); free(x); free(s); free(deq); free(p); free(y1); free(y2); free(mag);
      }
  /* E4M3 round trip on every finite code */
  for (int c = 0; c < 256; c++) {
    if ((c & 0x7F) == 0x7F) continue;
    CHECK(qg_e4m3_encode(qg_e4m3_decode((uint8_t)c)) == (c == 0x80 ? 0x80 : c), "e4m3 code %d", c);
  }
}

static void test_f32_and_f16(void) {
  for (int si = 0; si < NSIZES; si++) {
    const int64_t k = SIZES[si] * 3 + 1, n = SIZES[NSIZES - 1 - si], m = si % 3 == 0 ? 1 : 3;
    float *w = malloc(4 * n * k), *x = malloc(4 * m * k), *y1 = malloc(4 * m * n), *y2 = malloc(4 * m * n), *mag = malloc(4 * m * n);
    fill(w, n * k, 1);
    fill(x, m * k, 0);
    abs_gemm(w, x, n, k, m, mag);
    qg_force_ref(1);
    qg_gemm_f32(w, n, k, x, m, y1, 1);
    qg_force_ref(0);
    qg_gemm_f32(w, n, k, x, m, y2, 1);
    compare("gemm_f32", y2, y1, mag, m * n, BUDGET_F32);
    free(w); free(x); free(y1); free(y2); free(mag);
  }
  for (uint32_t h = 0; h < 65536; h++) {
    if (((h >> 10) & 31) == 31 && (h & 1023)) continue; /* NaN payloads */
    uint16_t hh = (uint16_t)h, back;
    float f;
    qg_f16_to_f32(&hh, 1, &f);
    qg_f32_to_f16(&f, 1, &back);
    CHECK(back == hh, "f16 round trip %u", h);
  }
}

/* The per-element passes (qg_prep.c) under the sanitizers on awkward sizes; their values are compared
 * with the TypeScript references in test/kernels/prep.test.ts. */
static void test_prep(void) {
  for (size_t a = 0; a < sizeof SIZES / sizeof SIZES[0]; a++)
    for (size_t b = 0; b < sizeof SIZES / sizeof SIZES[0]; b += 3) {
      const int64_t n = SIZES[a], k = SIZES[b] + 3;
      float* w = malloc(sizeof(float) * (size_t)(n * k));
      float* t = malloc(sizeof(float) * (size_t)(n * k));
      float* imp = malloc(sizeof(float) * (size_t)k);
      fill(w, n * k, 1);
      for (int64_t i = 0; i < k; i++) imp[i] = (float)urand();
      if (n * k > 10) w[7] = NAN;
      CHECK(qg_transpose_f32(w, n, k, t, 2) == QG_OK, "transpose");
      for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++) CHECK(memcmp(&t[c * n + r], &w[r * k + c], 4) == 0, "transpose %lldx%lld", (long long)n, (long long)k);
      const int bs = 16;
      const int64_t bpr = (k + bs - 1) / bs;
      uint8_t* codes = malloc((size_t)(n * bpr * bs));
      uint8_t* zp = malloc((size_t)(n * bpr));
      float* sc = malloc(sizeof(float) * (size_t)(n * bpr));
      CHECK(qg_quantize_int_weighted(w, n, k, 3, bs, 0, 1, imp, codes, sc, zp, 2) == QG_OK, "weighted quantize");
      CHECK(qg_dequantize_codes(codes, sc, zp, n, k, bs, t, 2) == QG_OK, "dequantize codes");
      double sums[3], *ce = malloc(sizeof(double) * (size_t)k), *cn = malloc(sizeof(double) * (size_t)k), hist[8];
      CHECK(qg_weight_error(w, t, n, k, sums, ce, cn) == QG_OK, "weight error");
      CHECK(qg_histogram_u8(codes, n * bpr * bs, 8, hist) == QG_OK, "histogram");
      double* h = malloc(sizeof(double) * (size_t)(k * k));
      double* d = malloc(sizeof(double) * (size_t)(n * k));
      for (int64_t i = 0; i < k * k; i++) h[i] = urand();
      for (int64_t i = 0; i < n * k; i++) d[i] = urand() - 0.5;
      void* ws = malloc((size_t)qg_quadratic_forms_workspace_bytes(n, k));
      double out;
      CHECK(qg_sum_quadratic_forms(h, d, n, k, ws, 2, &out) == QG_OK, "quadratic forms");
      free(w); free(t); free(imp); free(codes); free(zp); free(sc); free(ce); free(cn); free(h); free(d); free(ws);
    }
}

/* The dispatch's rank update (SIMD) against the portable body: bit-exact on awkward shapes and strides. */
static void test_rank_update(void) {
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 2}, {4, 16, 7}, {5, 17, 33}, {9, 129, 64}, {13, 200, 130}, {4, 2, 0}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t rows = shapes[si][0], cols = shapes[si][1], depth = shapes[si][2];
    const int64_t ldc = cols + 3, lda = depth + 1, ldb = cols + 5;
    double* c1 = malloc(sizeof(double) * (size_t)(rows * ldc));
    double* c2 = malloc(sizeof(double) * (size_t)(rows * ldc));
    double* a = malloc(sizeof(double) * (size_t)(rows * lda + 1));
    double* b = malloc(sizeof(double) * (size_t)(depth * ldb + 1));
    for (int64_t i = 0; i < rows * ldc; i++) c1[i] = c2[i] = (double)heavy();
    for (int64_t i = 0; i < rows * lda; i++) a[i] = (i % 7 == 3) ? 0.0 : (double)heavy();
    for (int64_t i = 0; i < depth * ldb; i++) b[i] = (double)heavy() * 1e-3;
    qg_dispatch_table()->rank_update(c1, ldc, a, lda, b, ldb, rows, cols, depth);
    qg_rank_update_ref(c2, ldc, a, lda, b, ldb, rows, cols, depth);
    CHECK(!memcmp(c1, c2, sizeof(double) * (size_t)(rows * ldc)), "rank_update %s %lldx%lld depth %lld", qg_isa(), (long long)rows,
          (long long)cols, (long long)depth);
    free(c1); free(c2); free(a); free(b);
  }
}

/* GPTQ on a small problem: runs clean under the sanitizers with 1 and 2 threads, same bytes both ways. */
static void test_gptq(void) {
  const int64_t n = 37, k = 150;
  float* w = malloc(sizeof(float) * (size_t)(n * k));
  double* h = calloc((size_t)(k * k), sizeof(double));
  double* x = malloc(sizeof(double) * (size_t)(k * 40));
  fill(w, n * k, 1);
  for (int64_t i = 0; i < k * 40; i++) x[i] = gauss();
  for (int64_t r = 0; r < 40; r++)
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < k; j++) h[i * k + j] += x[r * k + i] * x[r * k + j] / 40;
  const int bs = 32;
  const int64_t bpr = (k + bs - 1) / bs;
  uint8_t *c1 = malloc((size_t)(n * bpr * bs)), *c2 = malloc((size_t)(n * bpr * bs)), *z1 = malloc((size_t)(n * bpr)), *z2 = malloc((size_t)(n * bpr));
  float *s1 = malloc(sizeof(float) * (size_t)(n * bpr)), *s2 = malloc(sizeof(float) * (size_t)(n * bpr));
  void* ws = malloc((size_t)qg_gptq_workspace_bytes(n, k));
  for (int act = 0; act < 2; act++) {
    CHECK(qg_gptq(w, n, k, h, 4, bs, 0, 0, 0.01, act, 0, 0, c1, s1, z1, ws, 1) == QG_OK, "gptq act=%d", act);
    CHECK(qg_gptq(w, n, k, h, 4, bs, 0, 0, 0.01, act, 0, 0, c2, s2, z2, ws, 2) == QG_OK, "gptq act=%d threads=2", act);
    CHECK(!memcmp(c1, c2, (size_t)(n * bpr * bs)) && !memcmp(s1, s2, sizeof(float) * (size_t)(n * bpr)) && !memcmp(z1, z2, (size_t)(n * bpr)),
          "gptq act=%d: threads change the result", act);
  }
  CHECK(qg_gptq(w, n, k, h, 5, bs, 0, 0, 0.01, 0, 0, 0, c1, s1, z1, ws, 1) == QG_EINVAL, "gptq bits=5");
  free(w); free(h); free(x); free(c1); free(c2); free(z1); free(z2); free(s1); free(s2); free(ws);
}

int main(void) {
  printf("isa: %s\n", qg_isa());
  test_pack();
  test_quantize_int();
  test_gemm_int();
  test_quant_act_q8();
  test_gemv_q8();
  test_gemm_q8();
  test_lut();
  test_f32_and_f16();
  test_long_rows();
  test_rank_update();
  test_gptq();
  test_prep();
  if (!strcmp(qg_isa(), "avx512")) { /* the AVX2 kernels too, as a CPU without AVX-512 runs them */
    qg_limit_isa(1);
    printf("isa: %s\n", qg_isa());
    test_gemm_int();
    test_quant_act_q8();
    test_gemv_q8();
    test_gemm_q8();
    test_lut();
    test_long_rows();
    test_rank_update();
    qg_limit_isa(-1);
  }
  /* argument checks return errors instead of crashing */
  CHECK(qg_gemm_int(NULL, NULL, NULL, 1, 1, 4, 32, NULL, 1, NULL, 1) == QG_EINVAL, "null args");
  CHECK(qg_quantize_int((const float*)"", 1, 1, 5, 32, 0, 0, (uint8_t*)"", (float*)"", (uint8_t*)"", 1) == QG_EINVAL, "bits=5");
  if (failures) { printf("%d failure(s)\n", failures); return 1; }
  printf("all kernel tests passed\n");
  return 0;
}
