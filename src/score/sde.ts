// The three stochastic differential equations of score-based generative modelling (Song et al.,
// "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021):
// dx = f(x, t) dt + g(t) dW on t in [0, 1], with Gaussian perturbation kernels
// p_t(x | x0) = N(meanScale(t) x0, std(t)^2 I) in closed form. Losses, samplers and the
// likelihood use only this interface and never branch on the SDE's name.
import { Generator, randn, Shape, Tensor, tidy } from "../torch";

export type SdeName = "VE" | "VP" | "subVP";

export interface Sde {
  readonly name: SdeName;
  /** drift f(x, t); x: [batch, ...], t: [batch] -> [batch, ...] */
  drift(x: Tensor, t: Tensor): Tensor;
  /** diffusion coefficient g(t); t: [batch] -> [batch] */
  diffusion(t: Tensor): Tensor;
  /** Perturbation-kernel mean factor and standard deviation; t: [batch] -> [batch] each. */
  marginal(t: Tensor): { meanScale: Tensor; std: Tensor };
  /** The same in double precision for a scalar t, for tests and step-size choices. */
  marginalScalar(t: number): { meanScale: number; std: number };
  diffusionScalar(t: number): number;
  /** Samples of the prior p_1 (the marginal at t = 1 for data near 0). */
  priorSample(shape: Shape, generator?: Generator): Tensor;
  /** log p_1(z) summed over every dimension but the first; z: [batch, ...] -> [batch] */
  priorLogProb(z: Tensor): Tensor;
}

/** Reshapes a per-sample value [batch] so that it broadcasts against x [batch, ...]. */
export function perSample(value: Tensor, x: Tensor): Tensor {
  return value.reshape([value.shape[0], ...Array<number>(x.ndim - 1).fill(1)]);
}

function gaussianLogProb(z: Tensor, sigma: number): Tensor {
  return tidy(() => {
    const dims = z.shape.slice(1);
    const n = dims.reduce((a, b) => a * b, 1);
    const reduce = dims.map((_, i) => i + 1);
    const squared = z.square().sum(reduce).div(2 * sigma * sigma);
    return squared.neg().sub(0.5 * n * Math.log(2 * Math.PI * sigma * sigma));
  });
}

/** Variance exploding: sigma(t) = sigmaMin (sigmaMax / sigmaMin)^t, no drift. */
export class VeSde implements Sde {
  readonly name = "VE" as const;
  private readonly logRatio: number;

  constructor(readonly sigmaMin = 0.01, readonly sigmaMax = 50) {
    this.logRatio = Math.log(sigmaMax / sigmaMin);
  }

  private sigma(t: Tensor): Tensor {
    return t.mul(this.logRatio).exp().mul(this.sigmaMin);
  }

  drift(x: Tensor): Tensor {
    return x.mul(0);
  }
  diffusion(t: Tensor): Tensor {
    return this.sigma(t).mul(Math.sqrt(2 * this.logRatio));
  }
  marginal(t: Tensor): { meanScale: Tensor; std: Tensor } {
    return { meanScale: t.mul(0).add(1), std: this.sigma(t) };
  }
  marginalScalar(t: number): { meanScale: number; std: number } {
    return { meanScale: 1, std: this.sigmaMin * Math.exp(t * this.logRatio) };
  }
  diffusionScalar(t: number): number {
    return this.sigmaMin * Math.exp(t * this.logRatio) * Math.sqrt(2 * this.logRatio);
  }
  priorSample(shape: Shape, generator?: Generator): Tensor {
    return tidy(() => randn(shape, { generator }).mul(this.sigmaMax));
  }
  priorLogProb(z: Tensor): Tensor {
    return gaussianLogProb(z, this.sigmaMax);
  }
}

/**
 * Shared part of VP and subVP: beta(t) = betaMin + t (betaMax - betaMin) and the log of the
 * mean factor, -t^2 (betaMax - betaMin) / 4 - t betaMin / 2.
 */
abstract class LinearBetaSde {
  constructor(readonly betaMin = 0.1, readonly betaMax = 20) {}

  protected beta(t: Tensor): Tensor {
    return t.mul(this.betaMax - this.betaMin).add(this.betaMin);
  }
  protected betaScalar(t: number): number {
    return this.betaMin + t * (this.betaMax - this.betaMin);
  }
  /** 2 log meanScale(t) = -t^2 (betaMax - betaMin) / 2 - t betaMin */
  protected twiceLogMean(t: Tensor): Tensor {
    return t.square().mul(-0.5 * (this.betaMax - this.betaMin)).sub(t.mul(this.betaMin));
  }
  protected twiceLogMeanScalar(t: number): number {
    return -0.5 * t * t * (this.betaMax - this.betaMin) - t * this.betaMin;
  }

  drift(x: Tensor, t: Tensor): Tensor {
    return x.mul(perSample(this.beta(t), x)).mul(-0.5);
  }
  priorSample(shape: Shape, generator?: Generator): Tensor {
    return randn(shape, { generator });
  }
  priorLogProb(z: Tensor): Tensor {
    return gaussianLogProb(z, 1);
  }
}

/**
 * Variance preserving: dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW; std(t) = sqrt(1 - exp(2 log m)),
 * computed with expm1 so that it stays accurate for t near 0.
 */
export class VpSde extends LinearBetaSde implements Sde {
  readonly name = "VP" as const;

  diffusion(t: Tensor): Tensor {
    return this.beta(t).sqrt();
  }
  marginal(t: Tensor): { meanScale: Tensor; std: Tensor } {
    const twice = this.twiceLogMean(t);
    return { meanScale: twice.mul(0.5).exp(), std: twice.expm1().neg().sqrt() };
  }
  marginalScalar(t: number): { meanScale: number; std: number } {
    const twice = this.twiceLogMeanScalar(t);
    return { meanScale: Math.exp(0.5 * twice), std: Math.sqrt(-Math.expm1(twice)) };
  }
  diffusionScalar(t: number): number {
    return Math.sqrt(this.betaScalar(t));
  }
}

/**
 * Sub-variance preserving: same drift as VP, g(t)^2 = beta(t) (1 - exp(-2 betaMin t - (betaMax -
 * betaMin) t^2)); std(t) = 1 - exp(2 log m), below VP's at every t > 0.
 */
export class SubVpSde extends LinearBetaSde implements Sde {
  readonly name = "subVP" as const;

  diffusion(t: Tensor): Tensor {
    // 1 - exp(-2 betaMin t - (betaMax - betaMin) t^2) = -expm1(2 * twiceLogMean(t))
    return this.beta(t).mul(this.twiceLogMean(t).mul(2).expm1().neg()).sqrt();
  }
  marginal(t: Tensor): { meanScale: Tensor; std: Tensor } {
    const twice = this.twiceLogMean(t);
    return { meanScale: twice.mul(0.5).exp(), std: twice.expm1().neg() };
  }
  marginalScalar(t: number): { meanScale: number; std: number } {
    const twice = this.twiceLogMeanScalar(t);
    return { meanScale: Math.exp(0.5 * twice), std: -Math.expm1(twice) };
  }
  diffusionScalar(t: number): number {
    return Math.sqrt(this.betaScalar(t) * -Math.expm1(2 * this.twiceLogMeanScalar(t)));
  }
}

export interface SdeOptions {
  sigmaMin?: number;
  sigmaMax?: number;
  betaMin?: number;
  betaMax?: number;
}

/** Builds an SDE from its command-line or configuration name. */
export function createSde(name: string, options: SdeOptions = {}): Sde {
  switch (name) {
    case "VE":
      return new VeSde(options.sigmaMin ?? 0.01, options.sigmaMax ?? 50);
    case "VP":
      return new VpSde(options.betaMin ?? 0.1, options.betaMax ?? 20);
    case "subVP":
      return new SubVpSde(options.betaMin ?? 0.1, options.betaMax ?? 20);
    default:
      throw new Error(`unknown SDE '${name}'; expected VE, VP or subVP`);
  }
}

/** Training draws t uniformly in [trainTimeMin, 1]; sampling stops at sampleTimeMin. */
export const trainTimeMin = 1e-5;
export const sampleTimeMin = 1e-3;
