// Conditioning of the score network on diffusion time and incident energy: Gaussian random
// Fourier features (Tancik et al. 2020) of each, concatenated and passed through dense layers.
import { cat, Generator, nn, randn, Tensor, tidy } from "../torch";

/**
 * Fixed random projection: [sin(2 pi W v), cos(2 pi W v)] with W ~ N(0, scale^2), W not trained.
 * v: [batch] -> [batch, 2 * frequencies]
 */
export class GaussianFourierFeatures extends nn.Module {
  readonly weight: Tensor;

  constructor(readonly frequencies: number, readonly scale = 16, generator?: Generator) {
    super();
    this.weight = this.buffer("W", tidy(() => randn([1, frequencies], { generator }).mul(scale * 2 * Math.PI)));
  }

  forward(v: Tensor): Tensor {
    return tidy(() => {
      const projected = v.reshape([-1, 1]).matmul(this.weight);
      return cat([projected.sin(), projected.cos()], 1);
    });
  }
}

/**
 * Embedding of (t, condition): Fourier features of each (width/2 frequencies), concatenated to
 * 2 x width, then Linear(2 width, 2 width) + swish and Linear(2 width, width) + swish.
 * t: [batch], condition: [batch] -> [batch, width]. `scale` sets the frequencies of t's features
 * and `energyScale` those of the condition's.
 */
export class ConditionEmbedding extends nn.Module {
  private readonly timeFeatures: GaussianFourierFeatures;
  private readonly energyFeatures: GaussianFourierFeatures;
  private readonly dense1: nn.Linear;
  private readonly dense2: nn.Linear;

  constructor(readonly width: number, scale = 16, generator?: Generator, energyScale = scale) {
    super();
    if (width % 2 !== 0) throw new Error(`embedding width must be even, found ${width}`);
    this.timeFeatures = this.child("time", new GaussianFourierFeatures(width / 2, scale, generator));
    this.energyFeatures = this.child("energy", new GaussianFourierFeatures(width / 2, energyScale, generator));
    this.dense1 = this.child("dense1", new nn.Linear(2 * width, 2 * width, true, { generator }));
    this.dense2 = this.child("dense2", new nn.Linear(2 * width, width, true, { generator }));
  }

  forward(t: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      const features = cat([this.timeFeatures.forward(t), this.energyFeatures.forward(condition)], 1);
      return this.dense2.forward(this.dense1.forward(features).silu()).silu();
    });
  }
}

/** Embedding of the condition alone (no time), for the GAN: Fourier features then dense layers. */
export class EnergyEmbedding extends nn.Module {
  private readonly features: GaussianFourierFeatures;
  private readonly dense: nn.Linear;

  constructor(readonly width: number, scale = 16, generator?: Generator) {
    super();
    this.features = this.child("energy", new GaussianFourierFeatures(width / 2, scale, generator));
    this.dense = this.child("dense", new nn.Linear(width, width, true, { generator }));
  }

  forward(condition: Tensor): Tensor {
    return tidy(() => this.dense.forward(this.features.forward(condition)).silu());
  }
}
