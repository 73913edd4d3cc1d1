/* C test driver for qg_tables.c and qg_lowrank.c: the table quantizer's SIMD path against its scalar
 * reference and the E4M3 encoder against the scan over all 256 values (ties to the lower code, as
 * tables.ts does); the low-rank, calibration and element-wise passes against straightforward loops in
 * the TypeScript references' order (bit-identical results are required: memcmp). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../src/qg_internal.h"

static int failures, checks;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    checks++;                                              \
    if (!(cond)) {                                         \
      if (++failures < 30) {                               \
        printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
        printf(__VA_ARGS__);                               \
        printf("\n");                                      \
      }                                                    \
    }                                                      \
  } while (0)

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static float e4m3_value(int c) { return (c & 0x7F) == 0x7F ? 0.0f : qg_e4m3_decode((uint8_t)c); }

/* nearestCode over the 256 E4M3 values (NaN codes read as 0), ties to the lower code. */
static int e4m3_scan(float x) {
  int best = 0;
  float bd = INFINITY;
  for (int c = 0; c < 256; c++) {
    const float d = fabsf(x - e4m3_value(c));
    if (d < bd) { bd = d; best = c; }
  }
  return best;
}

static void test_e4m3_encoder(void) {
  float one = 448.0f, w[2];
  uint8_t codes[2];
  float sc[1];
  int bad = 0;
  for (int c = 0; c < 0x7E; c++) { /* every midpoint and its float neighbours, both signs */
    const float mid = (e4m3_value(c) + e4m3_value(c + 1)) / 2;
    const float vals[3] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
    for (int v = 0; v < 3; v++)
      for (int s = -1; s <= 1; s += 2) {
        w[0] = one; /* block absmax 448: scale 1, x = w */
        w[1] = (float)s * vals[v];
        qg_quantize_table(w, 1, 2, 2, NULL, 0, QG_TABLE_SCALE_DIV, codes, sc, 1);
        if (codes[1] != e4m3_scan(w[1]) && ++bad < 5) printf("e4m3 x=%a got %d want %d\n", w[1], codes[1], e4m3_scan(w[1]));
      }
  }
  for (int i = 0; i < 200000; i++) {
    w[0] = one;
    w[1] = (float)((urand() < 0.5 ? -1 : 1) * pow(2.0, urand() * 24 - 14));
    qg_quantize_table(w, 1, 2, 2, NULL, 0, QG_TABLE_SCALE_DIV, codes, sc, 1);
    if (codes[1] != e4m3_scan(w[1]) && ++bad < 5) printf("e4m3 x=%a got %d want %d\n", w[1], codes[1], e4m3_scan(w[1]));
  }
  CHECK(bad == 0, "e4m3 encoder differs from the scan in %d cases", bad);
}

static void test_tables(void) {
  static const int NS[] = {1, 3, 17}, KS[] = {1, 7, 33, 200}, BS[] = {8, 32, 64};
  float five[5] = {-0.8f, -0.25f, 0.0f, 0.3f, 1.0f};
  float nf4[16], e2m1[16];
  memcpy(nf4, qg_nf4_table, sizeof nf4);
  memcpy(e2m1, qg_e2m1_table, sizeof e2m1);
  const struct { const float* t; int len, mode; } specs[] = {
      {nf4, 16, QG_TABLE_SCALE_DIV}, {e2m1, 16, QG_TABLE_SCALE_DIV}, {e2m1, 16, QG_TABLE_SCALE_MX},
      {five, 5, QG_TABLE_SCALE_ABSMAX}, {NULL, 0, QG_TABLE_SCALE_DIV}};
  for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++)
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 4; b++)
        for (int c = 0; c < 3; c++) {
          const int64_t n = NS[a], k = KS[b], bs = BS[c], bpr = (k + bs - 1) / bs;
          float* w = malloc(sizeof(float) * (size_t)(n * k));
          for (int64_t i = 0; i < n * k; i++) {
            const double u = urand();
            w[i] = u < 0.02 ? 0.0f : u < 0.03 ? -0.0f : u < 0.035 ? NAN : u < 0.04 ? 1e-41f : (float)((urand() - 0.5) * pow(10, urand() * 4 - 2));
          }
          uint8_t* c1 = malloc((size_t)(n * bpr * bs));
          uint8_t* c2 = malloc((size_t)(n * bpr * bs));
          float* s1 = malloc(sizeof(float) * (size_t)(n * bpr));
          float* s2 = malloc(sizeof(float) * (size_t)(n * bpr));
          CHECK(qg_quantize_table(w, n, k, (int)bs, specs[si].t, specs[si].len, specs[si].mode, c1, s1, 2) == QG_OK, "quantize_table");
          CHECK(qg_quantize_table_ref(w, n, k, (int)bs, specs[si].t, specs[si].len, specs[si].mode, c2, s2) == QG_OK, "quantize_table_ref");
          CHECK(!memcmp(c1, c2, (size_t)(n * bpr * bs)) && !memcmp(s1, s2, sizeof(float) * (size_t)(n * bpr)),
                "table %zu n=%lld k=%lld bs=%lld: SIMD differs from the reference", si, (long long)n, (long long)k, (long long)bs);
          if (specs[si].len > 0) {
            float* d = malloc(sizeof(float) * (size_t)(n * k));
            CHECK(qg_dequantize_table(c1, s1, specs[si].t, specs[si].len, n, k, (int)bs, d) == QG_OK, "dequantize_table");
            for (int64_t r = 0; r < n; r++)
              for (int64_t i = 0; i < k; i++) {
                const int64_t bi = r * bpr + i / bs;
                const float want = specs[si].t[c1[bi * bs + i % bs]] * s1[bi];
                if (memcmp(&want, &d[r * k + i], 4)) { CHECK(0, "dequantize_table value"); r = n; break; }
              }
            free(d);
          }
          free(w); free(c1); free(c2); free(s1); free(s2);
        }
}

static void fill64(double* v, int64_t count, double zero_share) {
  for (int64_t i = 0; i < count; i++) v[i] = urand() < zero_share ? 0.0 : urand() - 0.5;
}

static void test_lowrank(void) {
  static const int64_t SH[][3] = {{1, 1, 1}, {5, 9, 3}, {70, 37, 11}, {33, 130, 70}};
  for (size_t t = 0; t < sizeof SH / sizeof SH[0]; t++) {
    const int64_t n = SH[t][0], k = SH[t][1], cnt = SH[t][2];
    double* e = malloc(sizeof(double) * (size_t)(n * k));
    double* h = malloc(sizeof(double) * (size_t)(k * k));
    double* v = malloc(sizeof(double) * (size_t)(cnt * n));
    double* y = malloc(sizeof(double) * (size_t)(cnt * n));
    double* yr = malloc(sizeof(double) * (size_t)(cnt * n));
    double* tv = malloc(sizeof(double) * (size_t)k);
    double* uv = malloc(sizeof(double) * (size_t)k);
    double* et = malloc(sizeof(double) * (size_t)(k * cnt));
    fill64(e, n * k, 0.1);
    fill64(h, k * k, 0.0);
    fill64(v, cnt * n, 0.2);
    void* ws = malloc((size_t)qg_lowrank_apply_g_workspace_bytes(n, k, cnt));
    void* ws2 = malloc((size_t)qg_lowrank_et_v_workspace_bytes(n, k, cnt));
    for (int diag = 0; diag <= 1; diag++) {
      CHECK(qg_lowrank_apply_g(e, n, k, h, diag, v, cnt, y, ws, 3) == QG_OK, "apply_g");
      for (int64_t j = 0; j < cnt; j++) { /* applyG of lowrank.ts */
        const double* vj = v + j * n;
        for (int64_t c = 0; c < k; c++) tv[c] = 0.0;
        for (int64_t r = 0; r < n; r++) {
          if (vj[r] == 0.0) continue;
          for (int64_t c = 0; c < k; c++) tv[c] += e[r * k + c] * vj[r];
        }
        for (int64_t i = 0; i < k; i++) {
          if (diag) { uv[i] = h[i] * tv[i]; continue; }
          double s = 0.0;
          for (int64_t q = 0; q < k; q++) s += h[i * k + q] * tv[q];
          uv[i] = s;
        }
        for (int64_t r = 0; r < n; r++) {
          double s = 0.0;
          for (int64_t c = 0; c < k; c++) s += e[r * k + c] * uv[c];
          yr[j * n + r] = s;
        }
      }
      CHECK(!memcmp(y, yr, sizeof(double) * (size_t)(cnt * n)), "apply_g %lldx%lld count %lld diag %d not bit-identical", (long long)n,
            (long long)k, (long long)cnt, diag);
    }
    CHECK(qg_lowrank_et_v(e, n, k, v, cnt, et, ws2, 2) == QG_OK, "et_v");
    int ok = 1;
    for (int64_t j = 0; j < cnt && ok; j++)
      for (int64_t c = 0; c < k && ok; c++) {
        double s = 0.0;
        for (int64_t r = 0; r < n; r++)
          if (v[j * n + r] != 0.0) s += e[r * k + c] * v[j * n + r];
        ok = !memcmp(&s, &et[c * cnt + j], 8);
      }
    CHECK(ok, "et_v not bit-identical");
    double* eh = malloc(sizeof(double) * (size_t)(n * k));
    double* ehr = calloc((size_t)(n * k), sizeof(double));
    CHECK(qg_lowrank_weighted_rows(e, n, k, h, eh, 2) == QG_OK, "weighted_rows");
    for (int64_t r = 0; r < n; r++)
      for (int64_t c = 0; c < k; c++) {
        const double ec = e[r * k + c];
        if (ec == 0.0) continue;
        for (int64_t j = 0; j < k; j++) ehr[r * k + j] += ec * h[c * k + j];
      }
    CHECK(!memcmp(eh, ehr, sizeof(double) * (size_t)(n * k)), "weighted_rows not bit-identical");
    free(eh); free(ehr);
    free(e); free(h); free(v); free(y); free(yr); free(tv); free(uv); free(et); free(ws); free(ws2);
  }
}

/* sumQuadraticFormsRef of linalg.ts. */
static double quadratic_forms_ref(const double* h, const double* d, int64_t rows, int64_t k) {
  double total = 0.0;
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    const int64_t r1 = r0 + 8 < rows ? r0 + 8 : rows;
    for (int64_t i = 0; i < k; i++)
      for (int64_t r = r0; r < r1; r++) {
        const double di = d[r * k + i];
        if (di == 0.0) continue;
        double s = 0.0;
        for (int64_t j = i + 1; j < k; j++) s += h[i * k + j] * d[r * k + j];
        total += di * (h[i * k + i] * di + 2 * s);
      }
  }
  return total;
}

static void test_quadratic_forms(void) {
  static const int64_t SH[][2] = {{1, 1}, {3, 5}, {9, 130}, {20, 300}, {64, 260}};
  for (size_t t = 0; t < sizeof SH / sizeof SH[0]; t++) {
    const int64_t rows = SH[t][0], k = SH[t][1];
    double* h = malloc(sizeof(double) * (size_t)(k * k));
    double* d = malloc(sizeof(double) * (size_t)(rows * k));
    fill64(h, k * k, 0.0);
    fill64(d, rows * k, 0.1);
    void* ws = malloc((size_t)qg_quadratic_forms_workspace_bytes(rows, k));
    double got = 0.0;
    CHECK(qg_sum_quadratic_forms(h, d, rows, k, ws, 3, &got) == QG_OK, "sum_quadratic_forms");
    const double want = quadratic_forms_ref(h, d, rows, k);
    CHECK(!memcmp(&got, &want, 8), "sum_quadratic_forms %lldx%lld: %.17g vs %.17g", (long long)rows, (long long)k, got, want);
    if (rows % 8 == 0 && rows >= 16) { /* segments of 8 rows: each as its own call */
      double seg[16];
      CHECK(qg_sum_quadratic_forms_segments(h, d, rows, k, 8, ws, 2, seg) == QG_OK, "segments");
      for (int64_t q = 0; q < rows / 8; q++) {
        const double one = quadratic_forms_ref(h, d + q * 8 * k, 8, k);
        CHECK(!memcmp(&seg[q], &one, 8), "segment %lld of %lldx%lld", (long long)q, (long long)rows, (long long)k);
      }
      CHECK(qg_sum_quadratic_forms_segments(h, d, rows, k, 12, ws, 2, seg) == QG_EINVAL, "segments of 12 rows refused");
    }
    free(h); free(d); free(ws);
  }
}

static void test_elementwise(void) {
  const int64_t n = 37, k = 300, rank = 6, c = 70, rows = 29;
  float* out = malloc(sizeof(float) * (size_t)(n * k));
  float* ref = malloc(sizeof(float) * (size_t)(n * k));
  float* a = malloc(sizeof(float) * (size_t)(k * rank));
  float* b = malloc(sizeof(float) * (size_t)(rank * n));
  float* s = malloc(sizeof(float) * (size_t)k);
  for (int64_t i = 0; i < n * k; i++) out[i] = ref[i] = (float)(urand() - 0.5);
  for (int64_t i = 0; i < k * rank; i++) a[i] = (float)(urand() - 0.5);
  for (int64_t i = 0; i < rank * n; i++) b[i] = (float)(urand() - 0.5);
  for (int64_t i = 0; i < k; i++) s[i] = (float)(0.5 + urand());
  CHECK(qg_scale_columns_f32(out, n, k, s, out, 2) == QG_OK, "scale_columns");
  void* ws = malloc((size_t)qg_add_low_rank_workspace_bytes(k, rank));
  CHECK(qg_add_low_rank(out, a, b, n, k, rank, ws, 3) == QG_OK, "add_low_rank");
  for (int64_t r = 0; r < n; r++)
    for (int64_t q = 0; q < k; q++) {
      float v = ref[r * k + q] * s[q];
      double acc = 0.0;
      for (int64_t j = 0; j < rank; j++) acc += (double)a[q * rank + j] * (double)b[j * n + r];
      ref[r * k + q] = (float)((double)v + acc);
    }
  CHECK(!memcmp(out, ref, sizeof(float) * (size_t)(n * k)), "scale_columns + add_low_rank not bit-identical");
  /* activation statistics */
  float* x = malloc(sizeof(float) * (size_t)(rows * c));
  for (int64_t i = 0; i < rows * c; i++) x[i] = i % 9 == 0 ? 0.0f : (float)((urand() - 0.5) * 8);
  double *sa = calloc((size_t)c, 8), *sq = calloc((size_t)c, 8), *g = calloc((size_t)(c * c), 8);
  double *sar = calloc((size_t)c, 8), *sqr = calloc((size_t)c, 8), *gr = calloc((size_t)(c * c), 8);
  CHECK(qg_activation_stats(x, rows, c, sa, sq, g, 20, 3) == QG_OK, "activation_stats");
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t j = 0; j < c; j++) {
      const double v = x[r * c + j];
      sar[j] += fabs(v);
      sqr[j] += v * v;
    }
    if (r < 20)
      for (int64_t i = 0; i < c; i++) {
        const double xi = x[r * c + i];
        if (xi == 0.0) continue;
        for (int64_t j = 0; j <= i; j++) gr[i * c + j] += xi * (double)x[r * c + j];
      }
  }
  CHECK(!memcmp(sa, sar, 8 * (size_t)c) && !memcmp(sq, sqr, 8 * (size_t)c) && !memcmp(g, gr, 8 * (size_t)(c * c)),
        "activation_stats not bit-identical");
  /* uint8 transpose of the first cols of each row */
  uint8_t* in = malloc((size_t)(n * k));
  uint8_t* tr = malloc((size_t)(n * (k - 5)));
  for (int64_t i = 0; i < n * k; i++) in[i] = (uint8_t)(i * 131 + 7);
  CHECK(qg_transpose_u8(in, n, k - 5, k, tr, 2) == QG_OK, "transpose_u8");
  int ok = 1;
  for (int64_t r = 0; r < n; r++)
    for (int64_t q = 0; q < k - 5; q++) ok &= tr[q * n + r] == in[r * k + q];
  CHECK(ok, "transpose_u8");
  double d[3];
  const float fa[3] = {1.5f, -2.0f, 1e30f}, fb[3] = {0.25f, 3.0f, -1e-30f};
  CHECK(qg_sub_f32_to_f64(fa, fb, 3, d) == QG_OK && d[0] == 1.25 && d[1] == -5.0 && d[2] == (double)1e30f + (double)1e-30f, "sub_f32_to_f64");
  CHECK(qg_quantize_table(NULL, 1, 1, 8, NULL, 0, 0, NULL, NULL, 1) == QG_EINVAL, "null args");
  { /* radix sort: ascending, -0 before +0, prefix sums in order; non-finite refused */
    const int64_t m = 1001;
    float* v = malloc(sizeof(float) * (size_t)m);
    double *xs = malloc(8 * (size_t)m), *pw = malloc(8 * (size_t)(m + 1)), *px = malloc(8 * (size_t)(m + 1)), *pxx = malloc(8 * (size_t)(m + 1));
    for (int64_t i = 0; i < m; i++) v[i] = i % 7 == 0 ? (i % 2 ? -0.0f : 0.0f) : (float)((urand() - 0.5) * pow(10, urand() * 6 - 3));
    CHECK(qg_sort_prefix_f32(v, m, xs, pw, px, pxx) == QG_OK, "sort_prefix");
    int sorted = 1;
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < m; i++) {
      if (i && (xs[i] < xs[i - 1] || (xs[i] == 0 && xs[i - 1] == 0 && signbit(xs[i]) && !signbit(xs[i - 1])))) sorted = 0;
      s1 += 1.0 * xs[i];
      s2 += 1.0 * xs[i] * xs[i];
    }
    CHECK(sorted && pw[m] == (double)m && px[m] == s1 && pxx[m] == s2, "sort_prefix order and sums");
    v[5] = INFINITY;
    CHECK(qg_sort_prefix_f32(v, m, xs, pw, px, pxx) == QG_EINVAL, "sort_prefix refuses infinity");
    free(v); free(xs); free(pw); free(px); free(pxx);
  }
  CHECK(qg_transpose_u8(in, 2, 5, 4, tr, 1) == QG_EINVAL, "stride < cols");
  {
    const uint8_t nib[5] = {1, 2, 15, 0, 9};
    uint8_t packed[3] = {0xAA, 0xAA, 0xAA};
    CHECK(qg_pack_nibbles_hi(nib, 5, packed) == QG_OK && packed[0] == 0x12 && packed[1] == 0xF0 && packed[2] == 0x90, "pack_nibbles_hi");
  }
  free(out); free(ref); free(a); free(b); free(s); free(ws); free(x);
  free(sa); free(sq); free(g); free(sar); free(sqr); free(gr); free(in); free(tr);
}

int main(void) {
  printf("isa: %s\n", qg_isa());
  test_e4m3_encoder();
  test_tables();
  test_lowrank();
  test_elementwise();
  test_quadratic_forms();
  qg_force_ref(1); /* the scalar paths the dispatch can also pick */
  test_tables();
  qg_force_ref(0);
  for (int level = 1; level >= 0; level--) { /* the AVX2 and the two-lane bodies as other CPUs run them */
    qg_limit_isa(level);
    printf("isa: %s (capped)\n", qg_isa());
    test_lowrank();
    test_quadratic_forms();
    test_tables();
  }
  qg_limit_isa(-1);
  if (failures) { printf("%d of %d checks failed\n", failures, checks); return 1; }
  printf("table and low-rank tests passed (%d checks)\n", checks);
  return 0;
}
