// Predictor-corrector sampling of the reverse-time SDE (Song et al., ICLR 2021, with the settings
// of CaloScore, Mikuni and Nachman, arXiv:2206.11898): a Langevin corrector step followed by a
// reverse-time Euler-Maruyama predictor step, both driven by one score evaluation per time step.
import { full, Generator, noGrad, ones, randn, Shape, Tensor, tidy } from "../torch";
import { Sde, sampleTimeMin } from "./sde";
import { ScoreModel } from "./scoreModel";

/** Output of every sampler. */
export interface SamplerResult {
  /** Generated samples in the model's (preprocessed) space, [batch, ...shape]. */
  samples: Tensor;
  /** Number of score-model evaluations, each on the whole batch. */
  evaluations: number;
}

/**
 * Progress report after each step. `total` is null for adaptive solvers, whose number of steps is
 * not known in advance; `t` is the diffusion time reached.
 */
export type StepCallback = (step: number, total: number | null, t: number) => void;

/** Number of predictor-corrector steps that CaloScore uses per dataset. */
export const paperSamplerSteps: Readonly<Record<"1" | "2" | "3", number>> = { "1": 100, "2": 200, "3": 200 };

export interface PredictorCorrectorOptions {
  /** Number of time steps (each one score evaluation); 200 unless set. */
  steps?: number;
  /** Target signal-to-noise ratio r of the Langevin corrector; 0.2 unless set. */
  snr?: number;
  /** Time at which sampling stops; sampleTimeMin (1e-3) unless set. */
  timeMin?: number;
  /** Source of the prior draw and of all noise, for reproducible samples. */
  generator?: Generator;
}

/** Time grid 1 = t_0 > t_1 > ... > t_steps = timeMin, uniform. */
export function reverseTimeGrid(steps: number, timeMin: number): number[] {
  return Array.from({ length: steps + 1 }, (_, i) => 1 - (i * (1 - timeMin)) / steps);
}

/**
 * Computes the corrector's step-size factor alpha_t (score_sde's LangevinCorrector): 1 - beta(t) dt for VP and
 * subVP, 1 for VE. It is read off the SDE's linear drift f(x, t) = -beta(t) x / 2 as
 * 1 + 2 f(1, t) dt, so that the sampler never branches on the SDE's name.
 */
export function langevinAlpha(sde: Sde, t: number, dt: number): number {
  return tidy(() => 1 + 2 * sde.drift(ones([1, 1], { dtype: "float64" }), full([1], t, { dtype: "float64" })).item() * dt);
}

/** Averages the per-sample Euclidean norms of v: [batch, ...] over the batch. */
function meanSampleNorm(v: Tensor): number {
  return tidy(() => v.flatten(1).norm(2, [1]).mean().item());
}

function validateCommon(name: string, shape: Shape, condition: Tensor, timeMin: number): void {
  if (condition.ndim !== 1) throw new Error(`${name}: condition must have shape [batch], found [${condition.shape.join(", ")}]`);
  if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`${name}: shape must list positive integers, found [${shape.join(", ")}]`);
  }
  if (!(timeMin > 0 && timeMin < 1)) throw new Error(`${name}: timeMin must lie in (0, 1), found ${timeMin}`);
}

/**
 * Draws condition.shape[0] samples of shape `shape` with the predictor-corrector sampler.
 *
 * At each grid time t_i (from 1 down to timeMin, `steps` steps of dt = (1 - timeMin) / steps) the
 * score s = s(x, t_i) is evaluated once, then:
 * 1. Langevin corrector: x <- x + eps s + sqrt(2 eps) z, with eps = 2 alpha_t (r ||z|| / ||s||)^2 and
 *    norms averaged over the batch.
 * 2. Euler-Maruyama predictor: x <- x - [f(x, t_i) - g(t_i)^2 s] dt + g(t_i) sqrt(dt) z'.
 * The predictor reuses s although x moved in step 1, as in CaloScore's PCSampler, so a step costs
 * one network evaluation instead of two. The last predictor step adds no noise, so the result is
 * its mean at t = timeMin.
 *
 * condition: [batch] (transformed incident energy). Runs without gradients; every intermediate
 * tensor is freed, and the caller owns the returned samples.
 */
export function samplePredictorCorrector(
  model: ScoreModel,
  sde: Sde,
  shape: Shape,
  condition: Tensor,
  options: PredictorCorrectorOptions = {},
  onStep?: StepCallback,
): SamplerResult {
  const steps = options.steps ?? paperSamplerSteps["2"];
  const snr = options.snr ?? 0.2;
  const timeMin = options.timeMin ?? sampleTimeMin;
  const generator = options.generator;
  validateCommon("samplePredictorCorrector", shape, condition, timeMin);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`samplePredictorCorrector: steps must be a positive integer, found ${steps}`);
  if (!(snr >= 0)) throw new Error(`samplePredictorCorrector: snr must be non-negative, found ${snr}`);

  const batch = condition.shape[0];
  const grid = reverseTimeGrid(steps, timeMin);

  // beta(t) grows with t, so alpha_t is smallest at t = 1. A negative alpha would make the
  // corrector's noise scale sqrt(2 eps) NaN, as it would in score_sde with so few steps.
  const firstAlpha = langevinAlpha(sde, grid[0], grid[0] - grid[1]);
  if (!(firstAlpha > 0)) {
    const beta = (1 - firstAlpha) / (grid[0] - grid[1]);
    throw new Error(
      `samplePredictorCorrector: ${steps} steps are too few for the ${sde.name} SDE because the corrector factor ` +
        `alpha = 1 - beta(1) dt is ${firstAlpha.toFixed(3)}; use more than ${Math.floor(beta * (1 - timeMin))} steps`,
    );
  }

  const samples = noGrad(() =>
    tidy(() => {
      let x = sde.priorSample([batch, ...shape], generator);
      for (let i = 0; i < steps; i++) {
        const t = grid[i];
        const dt = t - grid[i + 1];
        const last = i === steps - 1;
        const next = tidy(() => {
          const time = full([batch], t);
          const score = model.score(x, time, condition);

          const noise = randn(x.shape, { generator });
          const ratio = (snr * meanSampleNorm(noise)) / meanSampleNorm(score);
          const eps = 2 * langevinAlpha(sde, t, dt) * ratio * ratio;
          const corrected = x.add(score.mul(eps)).add(noise.mul(Math.sqrt(2 * eps)));

          const g = sde.diffusionScalar(t);
          const reverseDrift = sde.drift(corrected, time).sub(score.mul(g * g));
          const mean = corrected.sub(reverseDrift.mul(dt));
          if (last) return mean;
          return mean.add(randn(x.shape, { generator }).mul(g * Math.sqrt(dt)));
        });
        x.dispose();
        x = next;
        onStep?.(i + 1, steps, grid[i + 1]);
      }
      return x;
    }),
  );
  return { samples, evaluations: steps };
}
