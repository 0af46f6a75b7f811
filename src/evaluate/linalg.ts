// Dense symmetric linear algebra in float64 for the Frechet distance: a Cholesky factor that
// accepts positive semi-definite matrices, and the eigenvalues of a symmetric matrix. Matrices
// are row-major Float64Array of n x n; sizes here are the feature count (a few hundred at most).

/** Product a (n x k) times b (k x m), row-major. */
export function matmul(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    const outRow = i * m;
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      if (aip === 0) continue;
      const bRow = p * m;
      for (let j = 0; j < m; j++) out[outRow + j] += aip * b[bRow + j];
    }
  }
  return out;
}

export function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}

/**
 * Lower-triangular L with L L^T = a for a symmetric positive semi-definite a. Where the
 * remaining pivot is at or below `relativeTolerance` times the largest diagonal entry, the
 * matrix is taken as singular in that direction and the column of L is set to zero, so a
 * rank-deficient covariance (a constant feature) needs no added jitter.
 */
export function choleskySemidefinite(a: Float64Array, n: number, relativeTolerance = 1e-13): Float64Array {
  let maxDiagonal = 0;
  for (let i = 0; i < n; i++) maxDiagonal = Math.max(maxDiagonal, a[i * n + i]);
  const tolerance = relativeTolerance * maxDiagonal;
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let pivot = a[j * n + j];
    for (let p = 0; p < j; p++) pivot -= l[j * n + p] * l[j * n + p];
    if (!(pivot > tolerance)) continue;
    const root = Math.sqrt(pivot);
    l[j * n + j] = root;
    for (let i = j + 1; i < n; i++) {
      let sum = a[i * n + j];
      for (let p = 0; p < j; p++) sum -= l[i * n + p] * l[j * n + p];
      l[i * n + j] = sum / root;
    }
  }
  return l;
}

/**
 * Reduces a symmetric matrix to tridiagonal form by Householder reflections (the input is
 * overwritten) and returns the diagonal and the sub-diagonal (length n - 1).
 */
function tridiagonalize(a: Float64Array, n: number): { diagonal: Float64Array; offDiagonal: Float64Array } {
  const v = new Float64Array(n);
  const w = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += a[i * n + k] * a[i * n + k];
    norm = Math.sqrt(norm);
    if (norm === 0) continue;

    // Reflection H = I - 2 v v^T (|v| = 1) that maps column k below the diagonal onto alpha e1;
    // alpha takes the sign opposite to the leading entry to avoid cancellation.
    const leading = a[(k + 1) * n + k];
    const alpha = leading > 0 ? -norm : norm;
    for (let i = k + 1; i < n; i++) v[i] = a[i * n + k];
    v[k + 1] -= alpha;
    let vNorm = 0;
    for (let i = k + 1; i < n; i++) vNorm += v[i] * v[i];
    vNorm = Math.sqrt(vNorm);
    if (vNorm === 0) continue;
    for (let i = k + 1; i < n; i++) v[i] /= vNorm;

    // H A H = A - 2 v q^T - 2 q v^T with w = A v and q = w - (v^T w) v, on the trailing block.
    let vw = 0;
    for (let i = k + 1; i < n; i++) {
      let sum = 0;
      for (let j = k + 1; j < n; j++) sum += a[i * n + j] * v[j];
      w[i] = sum;
      vw += v[i] * sum;
    }
    for (let i = k + 1; i < n; i++) w[i] -= vw * v[i];
    for (let i = k + 1; i < n; i++) {
      const vi = 2 * v[i];
      const wi = 2 * w[i];
      for (let j = k + 1; j < n; j++) a[i * n + j] -= vi * w[j] + wi * v[j];
    }
    a[(k + 1) * n + k] = alpha;
    a[k * n + k + 1] = alpha;
    for (let i = k + 2; i < n; i++) {
      a[i * n + k] = 0;
      a[k * n + i] = 0;
    }
  }
  const diagonal = new Float64Array(n);
  const offDiagonal = new Float64Array(Math.max(n - 1, 0));
  for (let i = 0; i < n; i++) diagonal[i] = a[i * n + i];
  for (let i = 0; i + 1 < n; i++) offDiagonal[i] = a[(i + 1) * n + i];
  return { diagonal, offDiagonal };
}

/** Number of eigenvalues of the tridiagonal matrix below x (Sturm sequence count). */
function countBelow(diagonal: Float64Array, squaredOff: Float64Array, x: number, tiny: number): number {
  let count = 0;
  let q = diagonal[0] - x;
  if (q === 0) q = -tiny;
  if (q < 0) count++;
  for (let i = 1; i < diagonal.length; i++) {
    q = diagonal[i] - x - squaredOff[i - 1] / q;
    if (q === 0) q = -tiny;
    if (q < 0) count++;
  }
  return count;
}

/**
 * Eigenvalues of a symmetric n x n matrix in ascending order: Householder tridiagonalisation,
 * then bisection on Sturm counts to the resolution of float64. The input is not modified.
 */
export function symmetricEigenvalues(matrix: Float64Array, n: number): Float64Array {
  if (n === 0) return new Float64Array(0);
  const { diagonal, offDiagonal } = tridiagonalize(Float64Array.from(matrix), n);
  const squaredOff = offDiagonal.map((e) => e * e);

  // Gershgorin bounds enclose every eigenvalue.
  let lower = Infinity;
  let upper = -Infinity;
  for (let i = 0; i < n; i++) {
    const radius = (i > 0 ? Math.abs(offDiagonal[i - 1]) : 0) + (i < n - 1 ? Math.abs(offDiagonal[i]) : 0);
    lower = Math.min(lower, diagonal[i] - radius);
    upper = Math.max(upper, diagonal[i] + radius);
  }
  const scale = Math.max(Math.abs(lower), Math.abs(upper), Number.MIN_VALUE);
  const tiny = scale * Number.EPSILON * Number.EPSILON;
  const resolution = scale * Number.EPSILON * 4;

  const eigenvalues = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    // Find the smallest x with more than k eigenvalues below it.
    let low = k > 0 ? Math.max(lower, eigenvalues[k - 1]) : lower;
    let high = upper;
    while (high - low > resolution) {
      const middle = 0.5 * (low + high);
      if (middle === low || middle === high) break;
      if (countBelow(diagonal, squaredOff, middle, tiny) > k) high = middle;
      else low = middle;
    }
    eigenvalues[k] = 0.5 * (low + high);
  }
  return eigenvalues;
}
