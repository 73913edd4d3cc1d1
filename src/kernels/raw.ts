// The low-level kernel surface both the Node-API addon and the WebAssembly adapter implement:
// caller-allocated typed arrays in, results written into them (mirrors kernels/src/qg_napi.c).

export interface RawKernels {
  isa(): string;
  kernelImpl(op: number, format: number): number;
  forceRef(on: boolean): void;
  structSizes(): number[];
  formatField(format: number, field: number): number;
  quantizeInt(
    wT: Float32Array,
    n: number,
    k: number,
    bits: number,
    blockSize: number,
    symmetric: boolean,
    clipSearch: boolean,
    codes: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array,
    threads: number,
  ): void;
  packBits(codes: Uint8Array, bits: number, groupLength: number, out: Uint8Array): void;
  unpackBits(packed: Uint8Array, bits: number, groupLength: number, groups: number, out: Uint8Array): void;
  dequantizeInt(
    packed: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array | null,
    n: number,
    k: number,
    bits: number,
    blockSize: number,
    out: Float32Array,
  ): void;
  gemmInt(
    packed: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array | null,
    n: number,
    k: number,
    bits: number,
    blockSize: number,
    x: Float32Array,
    m: number,
    y: Float32Array,
    threads: number,
  ): void;
  /** int4 GEMV with activations quantized to int8, one scale per weight block (blockSize % 32 == 0). */
  gemvInt4Q8(
    packed: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array | null,
    n: number,
    k: number,
    blockSize: number,
    x: Float32Array,
    y: Float32Array,
    threads: number,
  ): void;
  quantizeLut(
    format: number,
    wT: Float32Array,
    n: number,
    k: number,
    blockSize: number,
    table: Float32Array | null,
    tableLength: number,
    packed: Uint8Array,
    scales: Float32Array | null,
    threads: number,
  ): void;
  dequantizeLut(
    format: number,
    packed: Uint8Array,
    scales: Float32Array | null,
    table: Float32Array | null,
    n: number,
    k: number,
    blockSize: number,
    out: Float32Array,
  ): void;
  gemmLut(
    format: number,
    packed: Uint8Array,
    scales: Float32Array | null,
    table: Float32Array | null,
    n: number,
    k: number,
    blockSize: number,
    x: Float32Array,
    m: number,
    y: Float32Array,
    threads: number,
  ): void;
  codebookFit(w: Float32Array, entries: number, iterations: number, table: Float32Array): void;
  gemmF32(w: Float32Array, n: number, k: number, x: Float32Array, m: number, y: Float32Array, threads: number): void;
  f32ToF16(input: Float32Array, out: Uint16Array): void;
  f16ToF32(input: Uint16Array, out: Float32Array): void;
  readSum(buffer: Float32Array, threads: number): number;
  /**
   * Native addon only: the int4 GEMV's own row-interleaved weight layout (kernels/include/qg_kernels.h). Bytes it
   * takes (0: no kernel reads it here, keep the plain layout), the repack, and the GEMV on it (gemvInt4Q8's numbers).
   */
  prepackInt4Q8Bytes?(n: number, k: number, blockSize: number): number;
  prepackInt4Q8?(packed: Uint8Array, n: number, k: number, blockSize: number, out: Uint8Array): void;
  gemvInt4Q8Prepacked?: RawKernels["gemvInt4Q8"];
  /** Native addon only: bytes from the start of `buffer`'s data to the next multiple of `alignment` (a power of two). */
  alignOffset?(buffer: Uint8Array, alignment: number): number;
  /** Native addon on Linux only: transparent huge pages for the whole 2 MiB pages inside `buffer` (bytes advised). */
  adviseHugePages?(buffer: Uint8Array): number;
  /** out[cols][rows] = input[rows][cols]. */
  transposeF32(input: Float32Array, rows: number, cols: number, out: Float32Array, threads: number): void;
  /** [n][k] floats from unpacked codes [n][blocksPerRow * blockSize]: (code - zeroPoint) * scale. */
  dequantizeCodes(
    codes: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array,
    n: number,
    k: number,
    blockSize: number,
    out: Float32Array,
    threads: number,
  ): void;
  /** sums = [sum d^2, sum w^2, max |d|] of d = w - deq in float64; colErr/colNorm per column (length k). */
  weightError(w: Float32Array, deq: Float32Array, n: number, k: number, sums: Float64Array, colErr: Float64Array, colNorm: Float64Array): void;
  /** Occurrences of each code below `alphabet`; false when some code is not below it. */
  histogramU8(codes: Uint8Array, alphabet: number, histogram: Float64Array): boolean;
  /** quantizeInt whose clip search minimizes sum importance[col] * err^2. */
  quantizeIntWeighted(
    wT: Float32Array,
    n: number,
    k: number,
    bits: number,
    blockSize: number,
    symmetric: boolean,
    clipSearch: boolean,
    importance: Float32Array,
    codes: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array,
    threads: number,
  ): void;
  /** GPTQ (codes, scales, zero points bit-identical to gptqQuantizeRef); throws a RangeError when the damped Hessian is not PD. */
  gptq(
    wT: Float32Array,
    n: number,
    k: number,
    hessian: Float64Array,
    bits: number,
    blockSize: number,
    symmetric: boolean,
    clipSearch: boolean,
    dampRatio: number,
    actOrder: boolean,
    staticGroups: boolean,
    zeroDeadColumns: boolean,
    codes: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array,
    threads: number,
  ): void;
  /** sum over rows of d_r^T H d_r (H k x k), bit-identical to sumQuadraticFormsRef. */
  sumQuadraticForms(h: Float64Array, d: Float64Array, rows: number, k: number, threads: number): number;
  /** weightError against the dequantized unpacked codes, decoded on the fly (blockSize <= 256). */
  weightErrorCodes(
    w: Float32Array,
    codes: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array,
    n: number,
    k: number,
    blockSize: number,
    sums: Float64Array,
    colErr: Float64Array,
    colNorm: Float64Array,
  ): void;
  /** int4 GEMM with each activation row quantized to int8 per weight block (blockSize % 32 == 0), y[m][n]. */
  gemmInt4Q8(
    packed: Uint8Array,
    scales: Float32Array,
    zeroPoints: Uint8Array | null,
    n: number,
    k: number,
    blockSize: number,
    x: Float32Array,
    m: number,
    y: Float32Array,
    threads: number,
  ): void;
  // The methods below are optional: an addon or wasm module built before they existed lacks them, and
  // their callers then run the TypeScript reference.
  /**
   * Table-format codes as quantizeTableRef stores them (unpacked [n][blocksPerRow * blockSize]) and block
   * scales; tableLength 0 means FP8 E4M3 (table null). scaleMode: 0 absmax / max|table|, 1 MX, 2 absmax.
   */
  quantizeTable?(
    wT: Float32Array,
    n: number,
    k: number,
    blockSize: number,
    table: Float32Array | null,
    tableLength: number,
    scaleMode: number,
    codes: Uint8Array,
    scales: Float32Array,
    threads: number,
  ): void;
  /** out[n][k] = table[code] * scale from unpacked table codes. */
  dequantizeTable?(codes: Uint8Array, scales: Float32Array, table: Float32Array, n: number, k: number, blockSize: number, out: Float32Array): void;
  /** out[i] = a[i] - b[i] in float64. */
  subF32ToF64?(a: Float32Array, b: Float32Array, out: Float64Array): void;
  /** out [k][count]: out[c][j] = sum_r e[r][c] v[j][r]. */
  lowrankEtV?(e: Float64Array, n: number, k: number, v: Float64Array, count: number, out: Float64Array, threads: number): void;
  /** y [count][n]: y_j = E H E^T v_j (H k x k, or its diagonal). */
  lowrankApplyG?(
    e: Float64Array,
    n: number,
    k: number,
    h: Float64Array,
    diagonal: boolean,
    v: Float64Array,
    count: number,
    y: Float64Array,
    threads: number,
  ): void;
  /** out [n][k] = E H for a full H. */
  lowrankWeightedRows?(e: Float64Array, n: number, k: number, h: Float64Array, out: Float64Array, threads: number): void;
  /** out [n][k] += (a [k][rank] . b [rank][n])^T, float64 sums rounded once. */
  addLowRank?(out: Float32Array, a: Float32Array, b: Float32Array, n: number, k: number, rank: number, threads: number): void;
  /** out[r][c] = input[r][c] * scales[c] (float32; out may be input). */
  scaleColumns?(input: Float32Array, rows: number, cols: number, scales: Float32Array, out: Float32Array, threads: number): void;
  /** Adds |x|, x^2 per channel and x x^T (lower triangle, first gramRows rows) in float64. */
  activationStats?(
    data: Float32Array,
    rows: number,
    channels: number,
    sumAbs: Float64Array,
    sumSq: Float64Array,
    gram: Float64Array,
    gramRows: number,
    threads: number,
  ): void;
  /** out[c][r] = input[r * stride + c] for c < cols. */
  transposeU8?(input: Uint8Array, rows: number, cols: number, stride: number, out: Uint8Array, threads: number): void;
  /** values ascending as float64 into x, prefix sums of 1, x, x^2 into w, wx, wxx (length + 1); false if a value is not finite. */
  sortPrefix?(values: Float32Array, x: Float64Array, w: Float64Array, wx: Float64Array, wxx: Float64Array): boolean;
  /** out [n][k] = wT / its block's absmax (zero blocks stay 0). */
  normalizeBlocks?(wT: Float32Array, n: number, k: number, blockSize: number, out: Float32Array): void;
  /** out[i / 2] = codes[i] << 4 | codes[i + 1] for the first `count` codes (MatMulBnb4 packing). */
  packNibblesHigh?(codes: Uint8Array, count: number, out: Uint8Array): void;
  /** out = [sum v^2, sum v^4, count of |v| > threshold (threshold < 0: 0)], float64 in element order. */
  weightMoments?(w: Float32Array, threshold: number, out: Float64Array): void;
  /** out[0] = sum over [n][k] row-major of h[col] (1 when h is empty) * (w - deq)^2, float64 in element order. */
  weightedSquaredError?(w: Float32Array, deq: Float32Array, n: number, k: number, h: Float64Array, out: Float64Array): void;
  /** refineGroupScales in place on unpacked codes and scales (rounds of re-encoding). */
  refineScales?(
    wT: Float32Array,
    n: number,
    k: number,
    bits: number,
    blockSize: number,
    zeroPoints: Uint8Array,
    meanSquare: Float64Array,
    rounds: number,
    codes: Uint8Array,
    scales: Float32Array,
    threads: number,
  ): void;
  /** sumQuadraticForms of each segment of segmentRows consecutive rows (a multiple of 8, or rows) into out, one pass over H. */
  sumQuadraticFormsSegments?(h: Float64Array, d: Float64Array, rows: number, k: number, segmentRows: number, out: Float64Array, threads: number): void;
}
