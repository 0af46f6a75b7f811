// Exact log-likelihood of a score model through its probability-flow ODE (Song et al., ICLR 2021,
// appendix D; CaloScore's appendix A): with dx/dt = F(x, t) = f(x, t) - g(t)^2 s(x, t) / 2,
// log p_0(x(0)) = log p_1(x(1)) + integral from 0 to 1 of div F(x(t), t) dt, integrating x forward
// from the data together with the divergence.
import { Generator, grad, isGradEnabled, randn, rand, Tensor, tidy, zeros, full } from "../torch";
import { native } from "../torch/native";
import { integrateFixedStep, integrateRk45, probabilityFlowDrift, FixedStepMethod, OdeFunction, Rk45Options } from "./odeSampler";
import { logStdSums, PreprocessingState } from "../calo/preprocess";
import { Sde, trainTimeMin } from "./sde";
import { ScoreModel } from "./scoreModel";

/**
 * Method for div F:
 * - "exact": the trace of the Jacobian, one backward pass per dimension of a sample.
 * - "hutchinson": Skilling-Hutchinson estimate E[v^T (dF/dx) v] with `probes` random vectors v
 *   (one backward pass each), drawn once and kept for the whole integration as score_sde does.
 */
export type DivergenceMethod = "exact" | "hutchinson";

export interface LikelihoodOptions extends Rk45Options {
  divergence?: DivergenceMethod;
  /** Probe vectors per sample for "hutchinson"; 1 unless set. */
  probes?: number;
  /** Probe distribution: Rademacher (+-1, lower variance) or Gaussian; "rademacher" unless set. */
  probeDistribution?: "rademacher" | "gaussian";
  /** Solver; "rk45" (adaptive, rtol = atol = 1e-5 unless set) or a fixed-step method with `steps`. */
  method?: "rk45" | FixedStepMethod;
  /** Steps of the fixed-step methods; 200 unless set. */
  steps?: number;
  /** Start of the integration; trainTimeMin (1e-5) unless set, since the ODE is singular at t = 0. */
  timeMin?: number;
  generator?: Generator;
}

export interface LikelihoodResult {
  /** log p_model(x) in nats per sample, [batch], float64. */
  logLikelihood: Tensor;
  /** -log p / (dimensions ln 2) per sample, [batch], float64. */
  bitsPerDimension: Tensor;
  /** log p_1 of the end point x(1) per sample, [batch], float64. */
  priorLogProb: Tensor;
  /** Number of evaluations of F (each one forward pass plus its backward passes). */
  evaluations: number;
  /** Number of values per sample. */
  dimensions: number;
}

/** Runs fn with autograd recording enabled, restoring the previous mode afterwards. */
function withGrad<T>(fn: () => T): T {
  if (isGradEnabled()) return fn();
  native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(false);
  }
}

/**
 * Computes F(x, t) and its divergence per sample. x: [batch, ...shape] -> [F: [batch, ...shape], div: [batch] float64].
 * The divergence of sample b uses only derivatives of F_b by x_b, which assumes that the model
 * treats samples independently (batch norm in evaluation mode, no cross-sample attention).
 */
export function driftAndDivergence(
  model: ScoreModel,
  sde: Sde,
  x: Tensor,
  t: number,
  condition: Tensor,
  divergence: DivergenceMethod,
  probes: readonly Tensor[],
): [Tensor, Tensor] {
  return withGrad(() =>
    tidy(() => {
      const batch = x.shape[0];
      const dimensions = x.numel / batch;
      const input = x.detach().requiresGrad_();
      const drift = probabilityFlowDrift(model, sde, input, full([batch], t, { dtype: x.dtype }), condition);

      let total = zeros([batch], { dtype: "float64" });
      if (divergence === "exact") {
        for (let i = 0; i < dimensions; i++) {
          const unit = zeros([batch, dimensions], { dtype: x.dtype });
          unit.select(1, i).fill_(1);
          const [row] = grad(drift, input, { gradOutputs: [unit.reshape(x.shape)], retainGraph: i < dimensions - 1 });
          total = total.add(row!.reshape([batch, dimensions]).select(1, i).to({ dtype: "float64" }));
        }
      } else {
        probes.forEach((probe, k) => {
          const [product] = grad(drift, input, { gradOutputs: [probe], retainGraph: k < probes.length - 1 });
          total = total.add(product!.mul(probe).flatten(1).sum([1]).to({ dtype: "float64" }));
        });
        total = total.div(probes.length);
      }
      return [drift.detach(), total];
    }),
  );
}

function drawProbes(shape: number[], count: number, distribution: "rademacher" | "gaussian", generator?: Generator): Tensor[] {
  return Array.from({ length: count }, () =>
    tidy(() => (distribution === "gaussian" ? randn(shape, { generator }) : rand(shape, { generator }).lt(0.5).to({ dtype: "float32" }).mul(2).sub(1))),
  );
}

/**
 * Computes the log-likelihood of data points x: [batch, ...shape] (preprocessed space) with condition: [batch],
 * by integrating x and the divergence of F from timeMin to 1. The caller owns the result's tensors.
 */
export function logLikelihood(model: ScoreModel, sde: Sde, x: Tensor, condition: Tensor, options: LikelihoodOptions = {}): LikelihoodResult {
  const divergence = options.divergence ?? "hutchinson";
  const probeCount = options.probes ?? 1;
  const timeMin = options.timeMin ?? trainTimeMin;
  const method = options.method ?? "rk45";
  const steps = options.steps ?? 200;
  if (divergence !== "exact" && divergence !== "hutchinson") {
    throw new Error(`logLikelihood: unknown divergence '${String(divergence)}'; expected exact or hutchinson`);
  }
  if (!Number.isInteger(probeCount) || probeCount < 1) throw new Error(`logLikelihood: probes must be a positive integer, found ${probeCount}`);
  if (!(timeMin > 0 && timeMin < 1)) throw new Error(`logLikelihood: timeMin must lie in (0, 1), found ${timeMin}`);
  if (condition.ndim !== 1 || condition.shape[0] !== x.shape[0]) {
    throw new Error(`logLikelihood: condition has shape [${condition.shape.join(", ")}]; expected [${x.shape[0]}]`);
  }
  const batch = x.shape[0];
  const dimensions = x.numel / batch;

  let evaluations = 0;
  const result = tidy(() => {
    const probes =
      divergence === "hutchinson"
        ? drawProbes(x.shape, probeCount, options.probeDistribution ?? "rademacher", options.generator).map((p) => p.to({ dtype: x.dtype }))
        : [];
    const augmented: OdeFunction = (t, [state]) => driftAndDivergence(model, sde, state, t, condition, divergence, probes);
    const start = [x.detach(), zeros([batch], { dtype: "float64" })];

    let end: Tensor[];
    if (method === "rk45") {
      const solved = integrateRk45(augmented, timeMin, 1, start, options);
      evaluations = solved.evaluations;
      end = solved.y;
    } else {
      const grid = Array.from({ length: steps + 1 }, (_, i) => timeMin + (i * (1 - timeMin)) / steps);
      const solved = integrateFixedStep(augmented, grid, start, method);
      evaluations = solved.evaluations;
      end = solved.y;
    }

    const prior = sde.priorLogProb(end[0].to({ dtype: "float64" }));
    const logp = prior.add(end[1]);
    return { logp, prior, bpd: logp.neg().div(dimensions * Math.LN2) };
  });
  return { logLikelihood: result.logp, bitsPerDimension: result.bpd, priorLogProb: result.prior, evaluations, dimensions };
}

/**
 * Computes, per shower, the sum over voxels of log |dz_k / dE_k| for the preprocessing of the
 * cylindrical layout, which maps each voxel on its own model entry:
 *   E' = E / (f E_inc), x = a + (1 - 2a) E', u = logit(x), z = (u - mean_k) / std_k,
 *   log |dz_k / dE_k| = log(1 - 2a) - log(f E_inc) - log x_k - log(1 - x_k) - log std_k.
 * Then log p_data(E | E_inc) = log p_model(z | E_inc) + the returned value. f, a and std come from
 * the fitted state (std at the shower's energy when it depends on it), and the mean does not
 * enter. energies: [n * voxels] in MeV (file order); incidentEnergies: [n] in MeV -> [n] in nats.
 *
 * The other layouts have no such density: the flat layout (dataset 1) stores voxel fractions that
 * sum to 1 plus padding, and the Cartesian layout rebins voxels into cells, so neither map is a
 * bijection of voxel energies. Both raise an error.
 *
 * NOTE: a voxel with E = 0 sits on a point mass of real showers, where no density exists. The
 * formula still gives the finite Jacobian of the map there.
 */
export function preprocessingLogJacobian(state: PreprocessingState, energies: ArrayLike<number>, incidentEnergies: ArrayLike<number>): Float64Array {
  if (state.layout !== "cylindrical") {
    throw new Error(
      `preprocessingLogJacobian: the ${state.layout} layout of dataset ${state.dataset} is not a bijection of voxel energies, ` +
        "so showers have no data-space density; train with the cylindrical layout for data-space likelihoods",
    );
  }
  const n = incidentEnergies.length;
  const voxels = state.voxels;
  if (energies.length !== n * voxels) {
    throw new Error(`preprocessingLogJacobian: ${energies.length} voxel energies; expected ${n} showers x ${voxels} voxels`);
  }
  const f = state.maxDepositFactor;
  const a = state.logitOffset;
  const constant = voxels * Math.log(1 - 2 * a);
  const logStds = logStdSums(state, incidentEnergies, voxels);

  const result = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const scale = 1 / (f * incidentEnergies[i]);
    let sum = constant - logStds[i] + voxels * Math.log(scale);
    for (let k = 0; k < voxels; k++) {
      const x = a + (1 - 2 * a) * energies[i * voxels + k] * scale;
      sum -= Math.log(x) + Math.log1p(-x);
    }
    result[i] = sum;
  }
  return result;
}
