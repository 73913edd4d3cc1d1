/* QuantGate block formats: one struct per block layout, with compile-time size checks.
 * src/kernels/formats.ts mirrors this table; test/kernels/formats.test.ts keeps them in sync.
 *
 * Storage in the kernels is planar, the way com.microsoft.MatMulNBits reads it: for a weight of N
 * rows (output channels) by K (reduction axis), codes are [N][blocksPerRow][codeBytes], scales
 * [N][blocksPerRow], zero points [N][blocksPerRow] (unpacked in kernels; packed per row for ORT).
 * The structs below describe the bytes of ONE block (codes + scale + zero point), which is what the
 * deployable artifact's bits-per-weight accounting counts.
 */
#ifndef QG_FORMATS_H
#define QG_FORMATS_H
#include <stdint.h>

#ifdef __cplusplus
#define QG_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define QG_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef uint16_t qg_half; /* IEEE binary16 bits */

typedef enum {
  QG_FMT_INT8 = 0,
  QG_FMT_INT4 = 1,
  QG_FMT_INT3 = 2,
  QG_FMT_INT2 = 3,
  QG_FMT_NF4 = 4,      /* 4-bit NormalFloat codes, per-block absmax scale */
  QG_FMT_FP4 = 5,      /* E2M1 codes, per-block scale absmax/6 */
  QG_FMT_MXFP4 = 6,    /* E2M1 codes, one E8M0 power-of-two exponent per 32 */
  QG_FMT_FP8 = 7,      /* E4M3 (fn) codes, per-block scale absmax/448 */
  QG_FMT_CODEBOOK = 8, /* 4-bit indices into a per-tensor table of <= 16 floats */
  QG_FMT_F32 = 9,      /* plain float32 weights (the baseline GEMV) */
  QG_FMT_COUNT = 10
} qg_format;

#pragma pack(push, 1) /* artifact blocks are dense byte streams */
/* Integer blocks, 32 weights (block sizes 16/64/128 scale the code array accordingly). */
#define QG_INT_BLOCK(bits, bs, scale_t, sname)                                  \
  typedef struct { scale_t d; uint8_t qs[(bs) * (bits) / 8]; } sname##_sym;    \
  typedef struct { scale_t d; uint8_t zp; uint8_t qs[(bs) * (bits) / 8]; } sname##_asym;

QG_INT_BLOCK(8, 32, float, qg_block_i8x32_f32)
QG_INT_BLOCK(8, 32, qg_half, qg_block_i8x32_f16)
QG_INT_BLOCK(4, 32, float, qg_block_i4x32_f32)
QG_INT_BLOCK(4, 32, qg_half, qg_block_i4x32_f16)
QG_INT_BLOCK(3, 32, float, qg_block_i3x32_f32)
QG_INT_BLOCK(3, 32, qg_half, qg_block_i3x32_f16)
QG_INT_BLOCK(2, 32, float, qg_block_i2x32_f32)
QG_INT_BLOCK(2, 32, qg_half, qg_block_i2x32_f16)
QG_INT_BLOCK(4, 16, qg_half, qg_block_i4x16_f16)
QG_INT_BLOCK(4, 64, qg_half, qg_block_i4x64_f16)
QG_INT_BLOCK(4, 128, qg_half, qg_block_i4x128_f16)
QG_INT_BLOCK(3, 128, qg_half, qg_block_i3x128_f16)
QG_INT_BLOCK(2, 128, qg_half, qg_block_i2x128_f16)

/* Float-coded blocks. */
typedef struct { qg_half d; uint8_t qs[16]; } qg_block_nf4x32;   /* absmax scale */
typedef struct { qg_half d; uint8_t qs[16]; } qg_block_fp4x32;   /* absmax/6 scale */
typedef struct { uint8_t e; uint8_t qs[16]; } qg_block_mxfp4;    /* E8M0: scale = 2^(e-127) */
typedef struct { qg_half d; uint8_t qs[32]; } qg_block_fp8x32;   /* absmax/448 scale */
typedef struct { uint8_t qs[16]; } qg_block_cb4x32;              /* table is per tensor */
#pragma pack(pop)

/* Sizes checked at compile time: packed, no padding, code bytes = bs*bits/8. */
QG_STATIC_ASSERT(sizeof(qg_block_i8x32_f32_sym) == 36, "i8x32 f32 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i8x32_f16_asym) == 35, "i8x32 f16 asym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x32_f16_sym) == 18, "i4x32 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x32_f16_asym) == 19, "i4x32 f16 asym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x32_f32_asym) == 21, "i4x32 f32 asym");
QG_STATIC_ASSERT(sizeof(qg_block_i3x32_f16_sym) == 14, "i3x32 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i3x32_f16_asym) == 15, "i3x32 f16 asym");
QG_STATIC_ASSERT(sizeof(qg_block_i2x32_f16_sym) == 10, "i2x32 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i2x32_f16_asym) == 11, "i2x32 f16 asym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x16_f16_sym) == 10, "i4x16 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x64_f16_sym) == 34, "i4x64 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i4x128_f16_sym) == 66, "i4x128 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i3x128_f16_sym) == 50, "i3x128 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_i2x128_f16_sym) == 34, "i2x128 f16 sym");
QG_STATIC_ASSERT(sizeof(qg_block_nf4x32) == 18, "nf4x32");
QG_STATIC_ASSERT(sizeof(qg_block_fp4x32) == 18, "fp4x32");
QG_STATIC_ASSERT(sizeof(qg_block_mxfp4) == 17, "mxfp4");
QG_STATIC_ASSERT(sizeof(qg_block_fp8x32) == 34, "fp8x32");
QG_STATIC_ASSERT(sizeof(qg_block_cb4x32) == 16, "cb4x32");

/* The format table (mirrored in TypeScript): code bits, whether a per-block scale / zero point
 * exists, the scale's storage bits in the artifact, and the block size the layout fixes (0 = any of
 * 16/32/64/128/256). */
typedef struct {
  const char* name;
  uint8_t code_bits;
  uint8_t has_scale;
  uint8_t scale_bits;
  uint8_t has_zero_point;
  uint16_t fixed_block;
} qg_format_info;

#define QG_FORMAT_TABLE                                  \
  {                                                      \
    {"int8", 8, 1, 16, 1, 0}, {"int4", 4, 1, 16, 1, 0},  \
    {"int3", 3, 1, 16, 1, 0}, {"int2", 2, 1, 16, 1, 0},  \
    {"nf4", 4, 1, 16, 0, 0},  {"fp4", 4, 1, 16, 0, 0},   \
    {"mxfp4", 4, 1, 8, 0, 32}, {"fp8", 8, 1, 16, 0, 0},  \
    {"codebook", 4, 0, 0, 0, 0}, {"f32", 32, 0, 0, 0, 0} \
  }

/* Code bytes of one block of `bs` weights at `bits` per code (dense LSB-first bitstream). */
static inline int64_t qg_block_code_bytes(int bits, int64_t bs) { return (bs * bits + 7) / 8; }

#endif
