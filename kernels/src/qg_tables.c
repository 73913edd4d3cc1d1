/* Table formats as the quantize stage stores them (src/quantize/tables.ts, quantizeTableRef): unpacked
 * codes [n][bpr*bs] (padding past k holds the code of 0), one float32 scale per block, and the code
 * of each weight the first index of the nearest table entry by |fl32(x - t)| (ties to the lower index).
 * Byte-identical to the TypeScript reference; qg_quantize_table_ref is the scalar oracle, the SIMD
 * paths (AVX2, SIMD128) compare the same float32 distances in the same entry order.
 * E4M3 (256 entries) is encoded directly: its nearest-entry distances are exact (neighbouring values
 * are within a factor of two, so Sterbenz's lemma applies), so round-to-nearest with ties toward zero
 * and zero always coded 0x00 is the same choice as the scan over the 256 entries. */
#include <string.h>
#include "qg_internal.h"

#if defined(__x86_64__) && !defined(QG_SCALAR_ONLY)
#include <immintrin.h>
#define QG_TABLES_AVX2 1
#endif
#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#define QG_TABLES_SIMD128 1
#endif

static inline float tf32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t tbits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* nearestCode() of tables.ts. */
static inline int nearest_ref(const float* table, int len, float x) {
  int best = 0;
  float bd = __builtin_inff();
  for (int i = 0; i < len; i++) {
    const float d = __builtin_fabsf(x - table[i]);
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}

/* The E4M3 code nearestCode(E4M3_TABLE, x) returns. */
static inline uint8_t e4m3_nearest(float x) {
  const float a = __builtin_fabsf(x);
  if (!(a <= 3.4028234663852886e38f)) return 0; /* NaN and infinities: every distance is NaN or inf */
  uint32_t code;
  if (a < 0.015625f) { /* subnormal steps of 2^-9: s exact, ties toward zero */
    const float s = a * 512.0f;
    code = (uint32_t)s;
    if (s - (float)code > 0.5f) code++;
  } else {
    const uint32_t b = tbits(a) + 0x7FFFFu; /* 3 mantissa bits, ties toward zero */
    const int64_t c = (int64_t)(b >> 20) - ((int64_t)(127 - 7) << 3);
    code = c > 0x7E ? 0x7E : (uint32_t)c;
  }
  if (code == 0) return 0;
  return (uint8_t)(((tbits(x) >> 24) & 0x80) | code);
}

/* mxScale() of tables.ts: 2^clamp(floor(log2 absmax) - 2, -127, 127); 1 for 0, NaN for NaN. */
static inline float mx_scale_ts(float absmax) {
  if (absmax == 0.0f) return 1.0f;
  if (absmax != absmax) return absmax;
  int e;
  if (absmax > 3.4028234663852886e38f) e = 127 + 2;
  else {
    const int field = (int)((tbits(absmax) >> 23) & 0xFF);
    e = field == 0 ? -127 - 23 : field - 127; /* subnormal absmax: well below -127 either way */
  }
  e -= 2;
  if (e < -127) e = -127;
  if (e > 127) e = 127;
  return e >= -126 ? tf32((uint32_t)(e + 127) << 23) : tf32(0x00400000u); /* 2^-127 is subnormal */
}

/* Math.max(acc, |v|) with NaN sticky. */
static inline float js_absmax(float acc, float v) {
  const float a = __builtin_fabsf(v);
  if (acc != acc || a != a) return __builtin_nanf("");
  return a > acc ? a : acc;
}

typedef struct {
  const float* table;
  int len, mode, e4m3;
  float tmax;
  uint8_t zero_code;
} table_spec;

static float block_scale(const table_spec* t, float absmax) {
  if (t->mode == QG_TABLE_SCALE_MX) return mx_scale_ts(absmax);
  if (absmax == 0.0f) return 1.0f;
  if (t->mode == QG_TABLE_SCALE_ABSMAX) return absmax;
  return absmax / t->tmax;
}

typedef void (*encode_fn)(const table_spec* t, const float* w, int64_t len, float inv, uint8_t* out);

static void encode_ref(const table_spec* t, const float* w, int64_t len, float inv, uint8_t* out) {
  for (int64_t i = 0; i < len; i++) {
    const float x = w[i] * inv;
    out[i] = t->e4m3 ? e4m3_nearest(x) : (uint8_t)nearest_ref(t->table, t->len, x);
  }
}

#if QG_TABLES_AVX2
__attribute__((target("avx2"))) static void encode_avx2(const table_spec* t, const float* w, int64_t len, float inv, uint8_t* out) {
  int64_t i = 0;
  if (!t->e4m3) {
    const __m256 vinv = _mm256_set1_ps(inv), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (; i + 8 <= len; i += 8) {
      const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(w + i), vinv);
      __m256 bd = _mm256_set1_ps(__builtin_inff());
      __m256i best = _mm256_setzero_si256();
      for (int j = 0; j < t->len; j++) {
        const __m256 d = _mm256_and_ps(_mm256_sub_ps(x, _mm256_set1_ps(t->table[j])), absmask);
        const __m256 lt = _mm256_cmp_ps(d, bd, _CMP_LT_OQ);
        bd = _mm256_blendv_ps(bd, d, lt);
        best = _mm256_blendv_epi8(best, _mm256_set1_epi32(j), _mm256_castps_si256(lt));
      }
      int32_t idx[8];
      _mm256_storeu_si256((__m256i*)idx, best);
      for (int l = 0; l < 8; l++) out[i + l] = (uint8_t)idx[l];
    }
  }
  encode_ref(t, w + i, len - i, inv, out + i);
}
#endif

#if QG_TABLES_SIMD128
static void encode_simd128(const table_spec* t, const float* w, int64_t len, float inv, uint8_t* out) {
  int64_t i = 0;
  if (!t->e4m3) {
    const v128_t vinv = wasm_f32x4_splat(inv);
    for (; i + 4 <= len; i += 4) {
      const v128_t x = wasm_f32x4_mul(wasm_v128_load(w + i), vinv);
      v128_t bd = wasm_f32x4_splat(__builtin_inff());
      v128_t best = wasm_i32x4_splat(0);
      for (int j = 0; j < t->len; j++) {
        const v128_t d = wasm_f32x4_abs(wasm_f32x4_sub(x, wasm_f32x4_splat(t->table[j])));
        const v128_t lt = wasm_f32x4_lt(d, bd);
        bd = wasm_v128_bitselect(d, bd, lt);
        best = wasm_v128_bitselect(wasm_i32x4_splat(j), best, lt);
      }
      out[i] = (uint8_t)wasm_i32x4_extract_lane(best, 0);
      out[i + 1] = (uint8_t)wasm_i32x4_extract_lane(best, 1);
      out[i + 2] = (uint8_t)wasm_i32x4_extract_lane(best, 2);
      out[i + 3] = (uint8_t)wasm_i32x4_extract_lane(best, 3);
    }
  }
  encode_ref(t, w + i, len - i, inv, out + i);
}
#endif

typedef struct {
  const table_spec* t;
  encode_fn enc;
  const float* wT;
  int64_t k;
  int bs;
  uint8_t* codes;
  float* scales;
} table_ctx;

static void table_rows(void* p, int64_t r0, int64_t r1) {
  const table_ctx* c = (const table_ctx*)p;
  const int64_t k = c->k, bs = c->bs, bpr = (k + bs - 1) / bs;
  for (int64_t row = r0; row < r1; row++) {
    for (int64_t b = 0; b < bpr; b++) {
      const float* w = c->wT + row * k + b * bs;
      const int64_t len = (b + 1) * bs <= k ? bs : k - b * bs;
      const int64_t bi = row * bpr + b;
      float absmax = 0.0f;
      for (int64_t i = 0; i < len; i++) absmax = js_absmax(absmax, w[i]);
      const float scale = block_scale(c->t, absmax);
      c->scales[bi] = scale;
      uint8_t* out = c->codes + bi * bs;
      c->enc(c->t, w, len, 1.0f / scale, out);
      memset(out + len, c->t->zero_code, (size_t)(bs - len));
    }
  }
}

static int quantize_table(const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len, int mode,
                          uint8_t* codes, float* scales, int threads, int force_ref) {
  if (!wT || !codes || !scales || n < 0 || k < 1 || bs < 1 || mode < 0 || mode > 2) return QG_EINVAL;
  const int e4m3 = table_len == 0;
  if (!e4m3 && (!table || table_len < 1 || table_len > 256)) return QG_EINVAL;
  table_spec t = {table, table_len, mode, e4m3, 448.0f, 0};
  if (!e4m3) {
    float m = 0.0f;
    for (int i = 0; i < table_len; i++) m = js_absmax(m, table[i]);
    t.tmax = m;
    t.zero_code = (uint8_t)nearest_ref(table, table_len, 0.0f);
  }
  encode_fn enc = encode_ref;
  if (!force_ref) {
    const char* isa = qg_dispatch_table()->isa;
#if QG_TABLES_AVX2
    if (isa[0] == 'a') enc = encode_avx2; /* "avx2" or "avx512" */
#endif
#if QG_TABLES_SIMD128
    if (isa[0] == 's' && isa[1] == 'i') enc = encode_simd128;
#endif
    (void)isa;
  }
  table_ctx c = {&t, enc, wT, k, bs, codes, scales};
  qg_parallel_for(table_rows, &c, n, 16, threads);
  return QG_OK;
}

int qg_quantize_table(const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len, int scale_mode,
                      uint8_t* codes, float* scales, int threads) {
  return quantize_table(wT, n, k, bs, table, table_len, scale_mode, codes, scales, threads, 0);
}

int qg_quantize_table_ref(const float* wT, int64_t n, int64_t k, int bs, const float* table, int table_len, int scale_mode,
                          uint8_t* codes, float* scales) {
  return quantize_table(wT, n, k, bs, table, table_len, scale_mode, codes, scales, 1, 1);
}

int qg_dequantize_table(const uint8_t* codes, const float* scales, const float* table, int table_len, int64_t n, int64_t k,
                        int bs, float* out) {
  if (!codes || !scales || !table || !out || n < 0 || k < 1 || bs < 1 || table_len < 1 || table_len > 256) return QG_EINVAL;
  const int64_t bpr = (k + bs - 1) / bs;
  for (int64_t row = 0; row < n; row++)
    for (int64_t b = 0; b < bpr; b++) {
      const int64_t bi = row * bpr + b, c0 = b * bs, len = (b + 1) * bs <= k ? bs : k - c0;
      const uint8_t* cs = codes + bi * bs;
      const float s = scales[bi];
      float* o = out + row * k + c0;
      for (int64_t i = 0; i < len; i++) {
        const unsigned code = cs[i];
        o[i] = (code < (unsigned)table_len ? table[code] : __builtin_nanf("")) * s;
      }
    }
  return QG_OK;
}

/* out = w / block absmax as normalizeByBlock of codebook.ts: w * fl32(1 / absmax), zero blocks stay 0. */
int qg_normalize_blocks(const float* wT, int64_t n, int64_t k, int bs, float* out) {
  if (!wT || !out || n < 0 || k < 1 || bs < 1) return QG_EINVAL;
  for (int64_t row = 0; row < n; row++)
    for (int64_t c0 = 0; c0 < k; c0 += bs) {
      const int64_t len = c0 + bs <= k ? bs : k - c0;
      const float* w = wT + row * k + c0;
      float absmax = 0.0f;
      for (int64_t i = 0; i < len; i++) absmax = js_absmax(absmax, w[i]);
      const float inv = absmax == 0.0f ? 0.0f : 1.0f / absmax;
      float* o = out + row * k + c0;
      for (int64_t i = 0; i < len; i++) o[i] = w[i] * inv;
    }
  return QG_OK;
}

/* MatMulBnb4's packing: out[i / 2] = code[i] << 4 | code[i + 1] (high nibble first), an odd tail padded with 0. */
int qg_pack_nibbles_hi(const uint8_t* codes, int64_t count, uint8_t* out) {
  if (!codes || !out || count < 0) return QG_EINVAL;
  int64_t i = 0;
  for (; i + 1 < count; i += 2) out[i >> 1] = (uint8_t)((codes[i] << 4) | codes[i + 1]);
  if (i < count) out[i >> 1] = (uint8_t)(codes[i] << 4);
  return QG_OK;
}
