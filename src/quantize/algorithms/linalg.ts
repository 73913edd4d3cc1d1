// Dense float64 linear algebra for the quantization algorithms (Cholesky, triangular inverse, Jacobi
// eigensolver, Gram-Schmidt, a seeded Gaussian source): small, deterministic and dependency-free, so
// every result is reproducible bit for bit across runs and machines with the same Node version.
// Matrices are row-major Float64Arrays; "vectors" blocks are stored one vector after another.

import { activeKernels } from "../../kernels/active.js";

/** xorshift32 uniform in (0, 1) from a fixed seed. */
export function uniformSource(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller on xorshift32) from a fixed seed. */
export function gaussianSource(seed: number): () => number {
  const u = uniformSource(seed);
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/**
 * Lower Cholesky factor of a symmetric positive definite n x n matrix: a = L L^T.
 * Returns undefined when a pivot is not positive (the matrix is not numerically PD).
 */
export function choleskyLower(a: Float64Array, n: number): Float64Array | undefined {
  const l = Float64Array.from(a);
  return choleskyLowerInPlace(l, n) ? l : undefined;
}

/** In-place Cholesky: the lower triangle of `a` becomes L, the upper is zeroed. False if not PD (a is then garbage). */
export function choleskyLowerInPlace(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j]!;
    for (let p = 0; p < j; p++) s -= a[rj + p]! * a[rj + p]!;
    if (!(s > 0) || !Number.isFinite(s)) return false;
    const d = Math.sqrt(s);
    a[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j]!;
      for (let p = 0; p < j; p++) t -= a[ri + p]! * a[rj + p]!;
      a[ri + j] = t / d;
    }
  }
  for (let i = 0; i < n; i++) a.fill(0, i * n + i + 1, (i + 1) * n);
  return true;
}

/** Inverse of a lower triangular matrix with nonzero diagonal (the result is lower triangular). */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(l);
  invertLowerInPlace(m, n);
  return m;
}

/**
 * In-place inverse of a lower triangular matrix. Row i of M = inv(L) needs only row i of L and the rows
 * of M above it: M[i][j] = -(sum_{p=j}^{i-1} L[i][p] M[p][j]) / L[i][i].
 */
export function invertLowerInPlace(a: Float64Array, n: number): void {
  const acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    acc.fill(0, 0, i);
    for (let p = 0; p < i; p++) {
      const lip = a[ri + p]!;
      if (lip === 0) continue;
      const rp = p * n;
      for (let j = 0; j <= p; j++) acc[j]! += lip * a[rp + j]!;
    }
    const inv = 1 / a[ri + i]!;
    for (let j = 0; j < i; j++) a[ri + j] = -acc[j]! * inv;
    a[ri + i] = inv;
  }
}

/** a[i][j] <-> a[n-1-i][n-1-j] in place (J a J for the reversal permutation J). */
function rotateHalfTurn(a: Float64Array, n: number): void {
  const last = n * n - 1;
  for (let i = 0; i < (n * n) >> 1; i++) {
    const t = a[i]!;
    a[i] = a[last - i]!;
    a[last - i] = t;
  }
}

/**
 * Upper Cholesky factor U of inv(a) (inv(a) = U^T U) for a symmetric PD matrix, as GPTQ needs it.
 * Uses one Cholesky and one triangular inverse: with J the reversal permutation, J a J = L L^T gives
 * inv(a) = (J inv(L) J)^T (J inv(L) J), and J inv(L) J is upper triangular with a positive diagonal.
 * With `inPlace` the input is overwritten (one k x k buffer in all); otherwise it is left alone.
 */
export function upperCholeskyOfInverse(a: Float64Array, n: number, inPlace = false): Float64Array | undefined {
  const u = inPlace ? a : Float64Array.from(a);
  rotateHalfTurn(u, n);
  if (!choleskyLowerInPlace(u, n)) return undefined;
  invertLowerInPlace(u, n);
  rotateHalfTurn(u, n);
  return u;
}

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  readonly values: Float64Array;
  /** n x n row-major; column j is the unit eigenvector of values[j]. */
  readonly vectors: Float64Array;
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations (accurate; O(n^3) per sweep). */
export function symmetricEigen(input: Float64Array, n: number, maxSweeps = 60): SymmetricEigen {
  const a = Float64Array.from(input);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i]! * a[i]!;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! * a[p * n + q]!;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        // Skip rotations that cannot change anything at double precision.
        if (Math.abs(apq) < 1e-300 || (Math.abs(apq) < 1e-18 * Math.abs(app) && Math.abs(apq) < 1e-18 * Math.abs(aqq))) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y]! - a[x * n + x]! || x - y);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src]!;
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src]!;
  });
  return { values, vectors };
}

/**
 * Orthonormalize `count` vectors of length `len` stored back to back, in place, by modified Gram-Schmidt
 * applied twice ("twice is enough"). A vector that collapses (linearly dependent) is replaced by a
 * fresh seeded Gaussian vector, so the block always comes back with `count` orthonormal vectors.
 */
export function orthonormalize(vs: Float64Array, len: number, count: number, seed = 7): void {
  const g = gaussianSource(seed);
  for (let j = 0; j < count; j++) {
    const vj = vs.subarray(j * len, (j + 1) * len);
    let attempts = 0;
    for (;;) {
      let before = 0;
      for (let t = 0; t < len; t++) before += vj[t]! * vj[t]!;
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < j; i++) {
          const vi = vs.subarray(i * len, (i + 1) * len);
          let dot = 0;
          for (let t = 0; t < len; t++) dot += vi[t]! * vj[t]!;
          for (let t = 0; t < len; t++) vj[t]! -= dot * vi[t]!;
        }
      }
      let after = 0;
      for (let t = 0; t < len; t++) after += vj[t]! * vj[t]!;
      if (after > 1e-24 * before && after > 0) {
        const inv = 1 / Math.sqrt(after);
        for (let t = 0; t < len; t++) vj[t]! *= inv;
        break;
      }
      if (++attempts > 8) throw new RangeError(`cannot orthonormalize ${count} vectors of length ${len}`);
      for (let t = 0; t < len; t++) vj[t] = g();
    }
  }
}

/** sum over rows of d_r^T H d_r for d = a - b given as [rows][k] (H k x k, or its diagonal). */
export function weightedSquaredError(a: Float32Array | Float64Array, b: Float32Array | Float64Array, rows: number, k: number, h: Float64Array): number {
  const d = new Float64Array(rows * k);
  for (let i = 0; i < rows * k; i++) d[i] = a[i]! - b[i]!;
  return sumQuadraticForms(h, d, rows, k);
}

/**
 * sum over rows r of d_r^T H d_r, d given as [rows][k] row-major, H symmetric k x k (or its diagonal,
 * length k). Uses the upper triangle only and takes rows in groups of 8 so each row of H is read once
 * per group from cache: the cost is rows * k^2 / 2 multiply-adds, memory traffic rows / 8 passes over H.
 */
export function sumQuadraticForms(h: Float64Array, d: Float64Array, rows: number, k: number, threads = 1): number {
  const raw = activeKernels();
  // The kernel does the full matrix (k^2 per row); the diagonal case is k per row and stays here.
  if (raw && h.length === k * k && k > 1 && d.length >= rows * k) return raw.sumQuadraticForms(h, d, rows, k, threads);
  return sumQuadraticFormsRef(h, d, rows, k);
}

/** The TypeScript reference of sumQuadraticForms (the C kernel's oracle). */
export function sumQuadraticFormsRef(h: Float64Array, d: Float64Array, rows: number, k: number): number {
  if (h.length === k) {
    let s = 0;
    for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) s += h[c]! * d[r * k + c]! * d[r * k + c]!;
    return s;
  }
  const group = 8;
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += group) {
    const r1 = Math.min(rows, r0 + group);
    for (let i = 0; i < k; i++) {
      const hi = i * k;
      const hii = h[hi + i]!;
      for (let r = r0; r < r1; r++) {
        const base = r * k;
        const di = d[base + i]!;
        if (di === 0) continue;
        let s = 0;
        for (let j = i + 1; j < k; j++) s += h[hi + j]! * d[base + j]!;
        total += di * (hii * di + 2 * s);
      }
    }
  }
  return total;
}

/** d^T H d (H full k x k, or its diagonal when `diagonal`). */
export function quadraticForm(h: Float64Array, d: Float64Array, k: number, diagonal = h.length === k): number {
  let s = 0;
  if (diagonal) {
    for (let c = 0; c < k; c++) s += h[c]! * d[c]! * d[c]!;
    return s;
  }
  for (let i = 0; i < k; i++) {
    const di = d[i]!;
    if (di === 0) continue;
    const ri = i * k;
    let t = 0;
    for (let j = 0; j < k; j++) t += h[ri + j]! * d[j]!;
    s += di * t;
  }
  return s;
}
