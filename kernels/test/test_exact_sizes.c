/* C test driver beside test_kernels.c: weights whose K is a whole number of blocks, each buffer
 * allocated to its exact size, so a kernel that reads past the last full block of the last row
 * (a wide SIMD load) is caught by AddressSanitizer; results against the scalar references. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../src/qg_internal.h"

static int failures, checks;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0);
}
static void fill(float* v, int64_t count) {
  for (int64_t i = 0; i < count; i++) v[i] = (urand() - 0.5f) * (i % 7 == 0 ? 0.4f : 0.1f);
}

/* |y - yref| <= 2e-5 * (sum |y| + 1e-3): float summation-order differences only. */
static void compare(const char* what, const float* y, const float* yref, int64_t count) {
  double mag = 1e-3;
  for (int64_t i = 0; i < count; i++) mag += fabs((double)yref[i]);
  checks++;
  for (int64_t i = 0; i < count; i++)
    if (!(fabs((double)y[i] - yref[i]) <= 2e-5 * mag)) {
      if (++failures < 20) printf("FAIL: %s: y[%lld]=%g ref=%g\n", what, (long long)i, y[i], yref[i]);
      return;
    }
}

static void run_int(int bits, int bs, int64_t n, int64_t nblocks, int64_t m, int sym) {
  const int64_t k = bs * nblocks, bpr = nblocks, bb = (int64_t)bs * bits / 8;
  float *w = malloc(sizeof(float) * n * k), *x = malloc(sizeof(float) * m * k), *s = malloc(sizeof(float) * n * bpr);
  uint8_t *c = malloc((size_t)(n * k)), *z = malloc((size_t)(n * bpr)), *p = malloc((size_t)(n * bpr * bb));
  float *y1 = malloc(sizeof(float) * m * n), *y2 = malloc(sizeof(float) * m * n);
  fill(w, n * k);
  fill(x, m * k);
  qg_quantize_int(w, n, k, bits, bs, sym, 0, c, s, z, 1);
  qg_pack_bits(c, n * k, bits, bs, p);
  qg_force_ref(1);
  qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y1, 1);
  qg_force_ref(0);
  qg_gemm_int(p, s, sym ? NULL : z, n, k, bits, bs, x, m, y2, 1);
  char what[96];
  snprintf(what, sizeof what, "gemm_int bits=%d bs=%d n=%lld k=%lld m=%lld", bits, bs, (long long)n, (long long)k, (long long)m);
  compare(what, y2, y1, m * n);
  if (bits == 4 && bs % 32 == 0 && m == 1) {
    void* ws = malloc((size_t)qg_gemv_q8_workspace_bytes(k, bs));
    qg_force_ref(1);
    qg_gemv_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, y1, ws, 1);
    qg_force_ref(0);
    qg_gemv_int4_q8(p, s, sym ? NULL : z, n, k, bs, x, y2, ws, 1);
    snprintf(what, sizeof what, "gemv_int4_q8 bs=%d n=%lld k=%lld", bs, (long long)n, (long long)k);
    compare(what, y2, y1, n);
    free(ws);
  }
  free(w); free(x); free(s); free(c); free(z); free(p); free(y1); free(y2);
}

static void run_lut(int fmt, int bs, int64_t n, int64_t nblocks, int64_t m) {
  const int64_t k = bs * nblocks, bpr = nblocks, bb = (int64_t)bs * (fmt == QG_FMT_FP8 ? 8 : 4) / 8;
  float *w = malloc(sizeof(float) * n * k), *x = malloc(sizeof(float) * m * k), *s = malloc(sizeof(float) * n * bpr);
  float *y1 = malloc(sizeof(float) * m * n), *y2 = malloc(sizeof(float) * m * n), tbl[16];
  uint8_t* p = malloc((size_t)(n * bpr * bb));
  fill(w, n * k);
  fill(x, m * k);
  qg_codebook_fit(w, n * k, 16, 4, tbl);
  qg_quantize_lut(fmt, w, n, k, bs, tbl, 16, p, s, 1);
  qg_force_ref(1);
  qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y1, 1);
  qg_force_ref(0);
  qg_gemm_lut(fmt, p, s, tbl, n, k, bs, x, m, y2, 1);
  char what[96];
  snprintf(what, sizeof what, "gemm_lut fmt=%d bs=%d n=%lld k=%lld m=%lld", fmt, bs, (long long)n, (long long)k, (long long)m);
  compare(what, y2, y1, m * n);
  free(w); free(x); free(s); free(y1); free(y2); free(p);
}

int main(void) {
  printf("isa: %s\n", qg_isa());
  const int bitsv[] = {2, 3, 4, 8}, bsv[] = {8, 16, 24, 32, 64, 96, 128, 256};
  const int64_t mv[] = {1, 2, 5};
  for (int bi = 0; bi < 4; bi++)
    for (int si = 0; si < 8; si++)
      for (int mi = 0; mi < 3; mi++)
        for (int64_t nb = 1; nb <= 3; nb += 2) run_int(bitsv[bi], bsv[si], 1 + 2 * mi, nb, mv[mi], (si + mi) % 2);
  const int fmts[] = {QG_FMT_NF4, QG_FMT_FP4, QG_FMT_MXFP4, QG_FMT_FP8, QG_FMT_CODEBOOK};
  for (int fi = 0; fi < 5; fi++)
    for (int si = 0; si < 8; si++)
      for (int mi = 0; mi < 3; mi++) {
        if (fmts[fi] == QG_FMT_MXFP4 && bsv[si] != 32) continue;
        run_lut(fmts[fi], bsv[si], 3, 1 + mi, mv[mi]);
      }
  if (failures) { printf("%d of %d checks failed\n", failures, checks); return 1; }
  printf("all %d exact-size checks passed\n", checks);
  return 0;
}
