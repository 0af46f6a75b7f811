// Sampling with the probability-flow ODE dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 (Song et al., ICLR
// 2021, and CaloScore's appendix A), integrated from t = 1 to timeMin with a fixed-step solver
// (Euler or Heun) or an adaptive Dormand-Prince Runge-Kutta 5(4) solver. The solvers work on a list
// of tensors so that the likelihood can integrate the state and its log-density change together.
import { full, Generator, noGrad, Shape, Tensor, tidy } from "../torch";
import { paperSamplerSteps, reverseTimeGrid, SamplerResult, StepCallback } from "./pcSampler";
import { perSample, Sde, sampleTimeMin } from "./sde";
import { ScoreModel } from "./scoreModel";

/** Right-hand side of an ODE system dy/dt = F(t, y) over a list of tensors. */
export type OdeFunction = (t: number, y: readonly Tensor[]) => Tensor[];

/**
 * Drift of the probability-flow ODE, f(x, t) - g(t)^2 s(x, t) / 2.
 * x: [batch, ...shape]; t: [batch]; condition: [batch] -> [batch, ...shape].
 */
export function probabilityFlowDrift(model: ScoreModel, sde: Sde, x: Tensor, t: Tensor, condition: Tensor): Tensor {
  return tidy(() => {
    const g = sde.diffusion(t);
    const score = model.score(x, t, condition);
    return sde.drift(x, t).sub(score.mul(perSample(g.square().mul(0.5), x)));
  });
}

// ---------------------------------------------------------------------------------------------
// Fixed-step solvers

/** Fixed-step integration methods: Euler (first order, one evaluation per step) and Heun (second order, two). */
export type FixedStepMethod = "euler" | "heun";

function addScaled(y: readonly Tensor[], k: readonly Tensor[], h: number): Tensor[] {
  return y.map((value, i) => value.add(k[i].mul(h)));
}

/**
 * Integrates dy/dt = F(t, y) along the given time grid (increasing or decreasing). Returns the final
 * state and the number of F evaluations; intermediate tensors are freed.
 */
export function integrateFixedStep(
  fn: OdeFunction,
  grid: readonly number[],
  y0: readonly Tensor[],
  method: FixedStepMethod,
  onStep?: StepCallback,
): { y: Tensor[]; evaluations: number } {
  let evaluations = 0;
  const y = tidy(() => {
    let state = y0.map((value) => value.clone());
    for (let i = 0; i + 1 < grid.length; i++) {
      const t = grid[i];
      const h = grid[i + 1] - t;
      const next = tidy(() => {
        const k1 = fn(t, state);
        evaluations += 1;
        const euler = addScaled(state, k1, h);
        if (method === "euler") return euler;
        const k2 = fn(t + h, euler);
        evaluations += 1;
        return state.map((value, j) => value.add(k1[j].add(k2[j]).mul(h / 2)));
      });
      for (const value of state) value.dispose();
      state = next;
      onStep?.(i + 1, grid.length - 1, grid[i + 1]);
    }
    return state;
  });
  return { y, evaluations };
}

// ---------------------------------------------------------------------------------------------
// Adaptive Dormand-Prince 5(4)

/** Dormand-Prince (1980) tableau: nodes, stage coefficients and fifth-order weights. */
const dpNodes = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1];
const dpStages: number[][] = [
  [],
  [1 / 5],
  [3 / 40, 9 / 40],
  [44 / 45, -56 / 15, 32 / 9],
  [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
  [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
];
const dpWeights = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84];
/** Fifth-order minus embedded fourth-order weights over the seven stages (the seventh is F at the new point). */
const dpErrorWeights = [71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40];

export interface Rk45Options {
  /** Relative tolerance; 1e-5 unless set. */
  rtol?: number;
  /** Absolute tolerance; 1e-5 unless set. */
  atol?: number;
  /** Initial step size (absolute); chosen from the derivative at t0 unless set. */
  firstStep?: number;
  /** Step attempts after which the integration fails; 100000 unless set. */
  maxSteps?: number;
}

export interface Rk45Result {
  y: Tensor[];
  evaluations: number;
  acceptedSteps: number;
  rejectedSteps: number;
}

/** Root mean square of a / (atol + rtol max(|b|, |c|)) over every element of the lists. */
function scaledRms(a: readonly Tensor[], b: readonly Tensor[], c: readonly Tensor[], rtol: number, atol: number): number {
  return tidy(() => {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < a.length; i++) {
      const scale = b[i].abs().maximum(c[i].abs()).mul(rtol).add(atol);
      sum += a[i].to({ dtype: "float64" }).div(scale).square().sum().item();
      count += a[i].numel;
    }
    return Math.sqrt(sum / count);
  });
}

// Step-size control constants, the usual choices (the same as scipy.integrate.RK45's).
const safety = 0.9;
const minFactor = 0.2;
const maxFactor = 10;
const errorExponent = -1 / 5;

/**
 * Initial step from the size of the state and of its derivative (Hairer, Norsett and Wanner,
 * "Solving Ordinary Differential Equations I", section II.4): one extra F evaluation.
 */
function initialStep(fn: OdeFunction, t0: number, y0: readonly Tensor[], f0: readonly Tensor[], direction: number, rtol: number, atol: number): number {
  return tidy(() => {
    const d0 = scaledRms(y0, y0, y0, rtol, atol);
    const d1 = scaledRms(f0, y0, y0, rtol, atol);
    const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : (0.01 * d0) / d1;
    const y1 = addScaled(y0, f0, direction * h0);
    const f1 = fn(t0 + direction * h0, y1);
    const difference = f1.map((value, i) => value.sub(f0[i]));
    const d2 = scaledRms(difference, y0, y0, rtol, atol) / h0;
    const h1 = Math.max(d1, d2) <= 1e-15 ? Math.max(1e-6, h0 * 1e-3) : (0.01 / Math.max(d1, d2)) ** (1 / 5);
    return Math.min(100 * h0, h1);
  });
}

/**
 * Integrates dy/dt = F(t, y) from t0 to t1 (either direction) with the adaptive Dormand-Prince
 * 5(4) method: fifth-order solution, error from the embedded fourth-order one, measured as the RMS
 * over every element of err / (atol + rtol max(|y|, |y_new|)), and a step accepted when that norm is
 * below 1. The last stage of an accepted step is the first of the next (first same as last), so
 * a step costs six evaluations. The whole list of tensors shares one step size, so samples in a batch
 * are integrated together, as score_sde does with scipy.
 */
export function integrateRk45(
  fn: OdeFunction,
  t0: number,
  t1: number,
  y0: readonly Tensor[],
  options: Rk45Options = {},
  onStep?: StepCallback,
): Rk45Result {
  const rtol = options.rtol ?? 1e-5;
  const atol = options.atol ?? 1e-5;
  const maxSteps = options.maxSteps ?? 100_000;
  if (!(rtol > 0) || !(atol > 0)) throw new Error(`integrateRk45: rtol and atol must be positive, found ${rtol} and ${atol}`);
  const direction = Math.sign(t1 - t0);
  const span = Math.abs(t1 - t0);

  let evaluations = 0;
  let acceptedSteps = 0;
  let rejectedSteps = 0;
  const evaluate: OdeFunction = (t, y) => {
    evaluations += 1;
    return fn(t, y);
  };

  const y = tidy(() => {
    let state = y0.map((value) => value.clone());
    if (direction === 0) return state;
    let derivative = evaluate(t0, state);
    let stepSize = Math.min(options.firstStep ?? initialStep(evaluate, t0, state, derivative, direction, rtol, atol), span);
    let t = t0;

    while (direction * (t1 - t) > 0) {
      let rejected = false;
      let accepted = false;
      while (!accepted) {
        if (acceptedSteps + rejectedSteps >= maxSteps) {
          throw new Error(`integrateRk45: no convergence after ${maxSteps} steps at t = ${t} (rtol ${rtol}, atol ${atol})`);
        }
        const minStep = 10 * Math.abs(t) * Number.EPSILON;
        if (stepSize < minStep) {
          throw new Error(`integrateRk45: step size ${stepSize} fell below ${minStep} at t = ${t}; the ODE is too stiff for rtol ${rtol}, atol ${atol}`);
        }
        let tNew = t + direction * stepSize;
        if (direction * (tNew - t1) > 0) tNew = t1;
        const h = tNew - t;

        const trial = tidy(() => {
          const stages: Tensor[][] = [derivative];
          for (let s = 1; s < 6; s++) {
            const point = state.map((value, i) => {
              let sum = value;
              for (let j = 0; j < s; j++) {
                if (dpStages[s][j] !== 0) sum = sum.add(stages[j][i].mul(h * dpStages[s][j]));
              }
              return sum;
            });
            stages.push(evaluate(t + dpNodes[s] * h, point));
          }
          const yNew = state.map((value, i) => {
            let sum = value;
            for (let j = 0; j < 6; j++) {
              if (dpWeights[j] !== 0) sum = sum.add(stages[j][i].mul(h * dpWeights[j]));
            }
            return sum;
          });
          const fNew = evaluate(tNew, yNew);
          stages.push(fNew);
          const error = state.map((_, i) => {
            let sum = stages[0][i].mul(h * dpErrorWeights[0]);
            for (let j = 2; j < 7; j++) sum = sum.add(stages[j][i].mul(h * dpErrorWeights[j]));
            return sum;
          });
          const errorNorm = scaledRms(error, state, yNew, rtol, atol);
          return { yNew, fNew, errorNorm };
        });

        if (trial.errorNorm < 1) {
          let factor = trial.errorNorm === 0 ? maxFactor : Math.min(maxFactor, safety * trial.errorNorm ** errorExponent);
          if (rejected) factor = Math.min(1, factor);
          stepSize = Math.abs(h) * factor;
          for (const value of [...state, ...derivative]) value.dispose();
          state = trial.yNew;
          derivative = trial.fNew;
          t = tNew;
          accepted = true;
          acceptedSteps += 1;
          onStep?.(acceptedSteps, null, t);
        } else {
          for (const value of [...trial.yNew, ...trial.fNew]) value.dispose();
          stepSize = Math.abs(h) * Math.max(minFactor, safety * trial.errorNorm ** errorExponent);
          rejected = true;
          rejectedSteps += 1;
        }
      }
    }
    return state;
  });
  return { y, evaluations, acceptedSteps, rejectedSteps };
}

// ---------------------------------------------------------------------------------------------
// Sampler

/** Probability-flow solvers: fixed-step Euler or Heun, or adaptive Dormand-Prince ("rk45"). */
export type OdeMethod = FixedStepMethod | "rk45";

export interface OdeSamplerOptions extends Rk45Options {
  /** Solver; "heun" unless set. */
  method?: OdeMethod;
  /** Steps of the fixed-step solvers; 200 unless set. Ignored by rk45. */
  steps?: number;
  /** Time at which integration stops; sampleTimeMin (1e-3) unless set. */
  timeMin?: number;
  /** Source of the prior draw (the only randomness), for reproducible samples. */
  generator?: Generator;
}

/**
 * Draws condition.shape[0] samples by integrating the probability-flow ODE from a prior draw at
 * t = 1 down to timeMin. Heun (the default) is second order, so at the same number of evaluations
 * it is more accurate than Euler. rk45 adapts its steps to rtol and atol (1e-5 each, as in score_sde).
 * condition: [batch]. Runs without gradients; the caller owns the returned samples.
 */
export function sampleProbabilityFlow(
  model: ScoreModel,
  sde: Sde,
  shape: Shape,
  condition: Tensor,
  options: OdeSamplerOptions = {},
  onStep?: StepCallback,
): SamplerResult {
  const method = options.method ?? "heun";
  const steps = options.steps ?? paperSamplerSteps["2"];
  const timeMin = options.timeMin ?? sampleTimeMin;
  if (condition.ndim !== 1) throw new Error(`sampleProbabilityFlow: condition must have shape [batch], found [${condition.shape.join(", ")}]`);
  if (!(timeMin > 0 && timeMin < 1)) throw new Error(`sampleProbabilityFlow: timeMin must lie in (0, 1), found ${timeMin}`);
  if (method !== "rk45" && (!Number.isInteger(steps) || steps < 1)) throw new Error(`sampleProbabilityFlow: steps must be a positive integer, found ${steps}`);
  const batch = condition.shape[0];

  const drift: OdeFunction = (t, [x]) => [probabilityFlowDrift(model, sde, x, full([batch], t, { dtype: x.dtype }), condition)];

  return noGrad(() =>
    tidy(() => {
      const prior = sde.priorSample([batch, ...shape], options.generator);
      if (method === "rk45") {
        const result = integrateRk45(drift, 1, timeMin, [prior], options, onStep);
        return { samples: result.y[0], evaluations: result.evaluations };
      }
      if (method !== "euler" && method !== "heun") {
        throw new Error(`sampleProbabilityFlow: unknown method '${String(method)}'; expected euler, heun or rk45`);
      }
      const result = integrateFixedStep(drift, reverseTimeGrid(steps, timeMin), [prior], method, onStep);
      return { samples: result.y[0], evaluations: result.evaluations };
    }),
  );
}
