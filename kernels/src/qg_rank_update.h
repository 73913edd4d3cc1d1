/* Body of the exact-order rank update, included once per instruction set with
 *   QG_RU_NAME   function name
 *   QG_RU_ATTR   attributes (a target attribute, or nothing)
 *   QG_RU_W      doubles per vector (2, 4 or 8)
 * c[r][j] -= a[r][t] * b[t][j] for t = 0, 1, ... depth-1 in that order, each product rounded and then
 * subtracted (no fused multiply-add), for r < rows, j < cols: every element sees exactly the operations
 * of the scalar loop, so vectorizing across j changes no bit. */
typedef double QG_RU_CAT(qg_ru_v, QG_RU_W) __attribute__((vector_size(QG_RU_W * 8)));
#define QG_RU_V QG_RU_CAT(qg_ru_v, QG_RU_W)

QG_RU_ATTR void QG_RU_NAME(double* c, int64_t ldc, const double* a, int64_t lda, const double* b, int64_t ldb, int64_t rows,
                           int64_t cols, int64_t depth) {
  enum { W = QG_RU_W, JC = 128 };
  for (int64_t j0 = 0; j0 < cols; j0 += JC) { /* a column chunk of b stays in cache across all rows */
    const int64_t j1 = j0 + JC < cols ? j0 + JC : cols;
    const int64_t jv = j0 + (j1 - j0) / (2 * W) * (2 * W);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      double* c0 = c + r * ldc;
      double* c1 = c0 + ldc;
      double* c2 = c1 + ldc;
      double* c3 = c2 + ldc;
      const double* a0 = a + r * lda;
      const double* a1 = a0 + lda;
      const double* a2 = a1 + lda;
      const double* a3 = a2 + lda;
      for (int64_t j = j0; j < jv; j += 2 * W) {
        QG_RU_V x00, x01, x10, x11, x20, x21, x30, x31;
        memcpy(&x00, c0 + j, sizeof x00); memcpy(&x01, c0 + j + W, sizeof x01);
        memcpy(&x10, c1 + j, sizeof x10); memcpy(&x11, c1 + j + W, sizeof x11);
        memcpy(&x20, c2 + j, sizeof x20); memcpy(&x21, c2 + j + W, sizeof x21);
        memcpy(&x30, c3 + j, sizeof x30); memcpy(&x31, c3 + j + W, sizeof x31);
        for (int64_t t = 0; t < depth; t++) {
          QG_RU_V b0, b1;
          memcpy(&b0, b + t * ldb + j, sizeof b0);
          memcpy(&b1, b + t * ldb + j + W, sizeof b1);
          const QG_RU_V s0 = a0[t] - (QG_RU_V){0}, s1 = a1[t] - (QG_RU_V){0}, s2 = a2[t] - (QG_RU_V){0}, s3 = a3[t] - (QG_RU_V){0};
          x00 = x00 - s0 * b0; x01 = x01 - s0 * b1;
          x10 = x10 - s1 * b0; x11 = x11 - s1 * b1;
          x20 = x20 - s2 * b0; x21 = x21 - s2 * b1;
          x30 = x30 - s3 * b0; x31 = x31 - s3 * b1;
        }
        memcpy(c0 + j, &x00, sizeof x00); memcpy(c0 + j + W, &x01, sizeof x01);
        memcpy(c1 + j, &x10, sizeof x10); memcpy(c1 + j + W, &x11, sizeof x11);
        memcpy(c2 + j, &x20, sizeof x20); memcpy(c2 + j + W, &x21, sizeof x21);
        memcpy(c3 + j, &x30, sizeof x30); memcpy(c3 + j + W, &x31, sizeof x31);
      }
      for (int q = 0; q < 4; q++)
        for (int64_t j = jv; j < j1; j++) {
          double x = c[(r + q) * ldc + j];
          for (int64_t t = 0; t < depth; t++) x = x - a[(r + q) * lda + t] * b[t * ldb + j];
          c[(r + q) * ldc + j] = x;
        }
    }
    for (; r < rows; r++) {
      double* cr = c + r * ldc;
      const double* ar = a + r * lda;
      for (int64_t j = j0; j < jv; j += 2 * W) {
        QG_RU_V x0, x1;
        memcpy(&x0, cr + j, sizeof x0); memcpy(&x1, cr + j + W, sizeof x1);
        for (int64_t t = 0; t < depth; t++) {
          QG_RU_V b0, b1;
          memcpy(&b0, b + t * ldb + j, sizeof b0);
          memcpy(&b1, b + t * ldb + j + W, sizeof b1);
          const QG_RU_V s = ar[t] - (QG_RU_V){0}; /* a splat that keeps the sign of zero */
          x0 = x0 - s * b0; x1 = x1 - s * b1;
        }
        memcpy(cr + j, &x0, sizeof x0); memcpy(cr + j + W, &x1, sizeof x1);
      }
      for (int64_t j = jv; j < j1; j++) {
        double x = cr[j];
        for (int64_t t = 0; t < depth; t++) x = x - ar[t] * b[t * ldb + j];
        cr[j] = x;
      }
    }
  }
}
#undef QG_RU_V
