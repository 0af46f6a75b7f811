// Closed-form scores of Gaussian data, for testing samplers and the likelihood without a network.
// If x0 ~ N(mu, Sigma) and the perturbation kernel is p_t(x | x0) = N(m(t) x0, s(t)^2 I), every
// marginal is Gaussian too: p_t = N(m(t) mu, m(t)^2 Sigma + s(t)^2 I), with score
// -(m^2 Sigma + s^2 I)^-1 (x - m mu). With Sigma = Q diag(lambda) Q^T the inverse is
// Q diag(1 / (m^2 lambda + s^2)) Q^T for every t, so one eigendecomposition serves all times.
import { tensor, Tensor, tidy } from "../torch";
import { Sde } from "./sde";
import { ScoreModel } from "./scoreModel";

/** Eigenvalues and orthonormal eigenvectors (columns of `vectors`, row-major n x n) of a symmetric matrix. */
export interface SymmetricEigen {
  values: Float64Array;
  vectors: Float64Array;
}

/**
 * Diagonalises a symmetric matrix (row-major, n x n) with cyclic Jacobi rotations, which converge
 * to machine precision for the small matrices of tests (n up to a few hundred).
 */
export function symmetricEigen(matrix: ArrayLike<number>, n: number): SymmetricEigen {
  if (matrix.length !== n * n) throw new Error(`symmetricEigen: expected ${n * n} entries, found ${matrix.length}`);
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;

  for (let sweep = 0; sweep < 100; sweep++) {
    let offDiagonal = 0;
    let diagonal = 0;
    for (let i = 0; i < n; i++) {
      diagonal += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) offDiagonal += a[i * n + j] ** 2;
    }
    if (offDiagonal <= 1e-30 * diagonal || offDiagonal === 0) break;

    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        // Rotation angle that zeroes a[p][q]: tan(2 theta) = 2 a_pq / (a_qq - a_pp), taking the
        // smaller root for stability.
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const tangent = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cosine = 1 / Math.sqrt(tangent * tangent + 1);
        const sine = tangent * cosine;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = cosine * akp - sine * akq;
          a[k * n + q] = sine * akp + cosine * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = cosine * apk - sine * aqk;
          a[q * n + k] = sine * apk + cosine * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = cosine * vkp - sine * vkq;
          v[k * n + q] = sine * vkp + cosine * vkq;
        }
      }
    }
  }

  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: v };
}

/**
 * Exact score of the SDE marginals of Gaussian data N(mean, covariance), as a ScoreModel.
 *
 * The marginal uses the SDE's own perturbation kernel (`Sde.marginal`), which is what denoising
 * score matching trains a network towards. For VE that kernel has std sigma(t), whereas the forward
 * SDE started at t = 0 adds only sigma(t)^2 - sigmaMin^2. Samplers driven by this score therefore
 * end near N(mean, covariance + sigmaMin^2 I), i.e. 1e-4 extra variance with sigmaMin = 0.01, as they
 * do with a trained network.
 */
export class GaussianScoreModel implements ScoreModel {
  /** Number of dimensions of one sample (the product of the model shape). */
  readonly dimensions: number;
  readonly mean: Float64Array;
  /** Row-major dimensions x dimensions. */
  readonly covariance: Float64Array;
  private readonly eigen: SymmetricEigen;

  /**
   * mean: [dimensions]; covariance: a full row-major matrix [dimensions * dimensions], or its
   * diagonal [dimensions]. The covariance must be symmetric positive definite.
   */
  constructor(
    readonly sde: Sde,
    mean: ArrayLike<number>,
    covariance: ArrayLike<number>,
  ) {
    const n = mean.length;
    this.dimensions = n;
    this.mean = Float64Array.from(mean);
    if (covariance.length === n) {
      this.covariance = new Float64Array(n * n);
      for (let i = 0; i < n; i++) this.covariance[i * n + i] = covariance[i];
    } else if (covariance.length === n * n) {
      this.covariance = Float64Array.from(covariance);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < i; j++) {
          const difference = Math.abs(this.covariance[i * n + j] - this.covariance[j * n + i]);
          if (difference > 1e-12 * (1 + Math.abs(this.covariance[i * n + j]))) {
            throw new Error(`GaussianScoreModel: covariance is not symmetric at (${i}, ${j})`);
          }
        }
      }
    } else {
      throw new Error(
        `GaussianScoreModel: covariance has ${covariance.length} entries; expected ${n} (diagonal) or ${n * n} (full) for a mean of ${n}`,
      );
    }
    this.eigen = symmetricEigen(this.covariance, n);
    const smallest = Math.min(...this.eigen.values);
    if (!(smallest > 0)) throw new Error(`GaussianScoreModel: covariance is not positive definite (smallest eigenvalue ${smallest})`);
  }

  /**
   * x: [batch, ...shape] with prod(shape) = dimensions; t: [batch]; the condition is ignored.
   * Returns -(m^2 Sigma + s^2 I)^-1 (x - m mu) with the shape of x, differentiable in x.
   */
  score(x: Tensor, t: Tensor, _condition?: Tensor): Tensor {
    return tidy(() => {
      const batch = x.shape[0];
      const n = this.dimensions;
      if (x.numel !== batch * n) {
        throw new Error(`GaussianScoreModel: x has shape [${x.shape.join(", ")}]; expected ${n} values per sample`);
      }
      const options = { dtype: x.dtype };
      const mean = tensor(this.mean, [1, n], options);
      const eigenvectors = tensor(this.eigen.vectors, [n, n], options);
      const eigenvalues = tensor(this.eigen.values, [1, n], options);

      const { meanScale, std } = this.sde.marginal(t.to(options));
      const m = meanScale.reshape([batch, 1]);
      const variance = std.square().reshape([batch, 1]);
      const centred = x.reshape([batch, n]).sub(m.mul(mean));
      const projected = centred.matmul(eigenvectors);
      const marginalEigenvalues = m.square().mul(eigenvalues).add(variance);
      return projected.div(marginalEigenvalues).matmul(eigenvectors.transpose(0, 1)).neg().reshape(x.shape);
    });
  }

  /** log N(x; m(t) mu, m(t)^2 Sigma + s(t)^2 I) in double precision; x: [batch, ...shape] -> [batch]. */
  logDensity(x: Tensor, time: number): Float64Array {
    const n = this.dimensions;
    const values = x.toFloat64();
    const batch = values.length / n;
    const { meanScale, std } = this.sde.marginalScalar(time);
    const { values: lambda, vectors } = this.eigen;
    const marginalEigenvalues = Array.from(lambda, (l) => meanScale * meanScale * l + std * std);
    const logDeterminant = marginalEigenvalues.reduce((sum, l) => sum + Math.log(l), 0);

    const result = new Float64Array(batch);
    for (let b = 0; b < batch; b++) {
      let quadratic = 0;
      for (let k = 0; k < n; k++) {
        let projection = 0;
        for (let i = 0; i < n; i++) projection += (values[b * n + i] - meanScale * this.mean[i]) * vectors[i * n + k];
        quadratic += (projection * projection) / marginalEigenvalues[k];
      }
      result[b] = -0.5 * (quadratic + logDeterminant + n * Math.log(2 * Math.PI));
    }
    return result;
  }
}
