// Networks of the WGAN-GP baseline, built from the halves of the CaloScore U-Net. The generator is
// a dense layer into the coarsest level followed by the decoder without skip connections. The
// critic is the encoder followed by a dense layer to one score. Both are conditioned on the
// transformed incident energy through an EnergyEmbedding.
import { cat, Generator, nn, rand, Tensor, tidy } from "../torch";
import { EnergyEmbedding } from "../score/embedding";
import { cropEnd, Decoder, Encoder, levelShapes, padEnd, paddedSpatialShape, UNetConfig, validateUNetConfig } from "../score/unet";

/** A conditional generator: noise and condition in, one sample per row out. */
export abstract class GeneratorNetwork extends nn.Module {
  /** Length of the noise vector that forward() expects. */
  abstract readonly noiseDim: number;
  /** Shape of one generated sample, without the batch axis. */
  abstract readonly outputShape: number[];
  /** noise: [batch, noiseDim] in [-1, 1), condition: [batch] in [0, 1] -> [batch, ...outputShape] */
  abstract forward(noise: Tensor, condition: Tensor): Tensor;
}

/** A conditional Wasserstein critic: an unbounded score per sample, higher for samples that look real. */
export abstract class CriticNetwork extends nn.Module {
  /** x: [batch, ...inputShape], condition: [batch] -> [batch] */
  abstract forward(x: Tensor, condition: Tensor): Tensor;
}

/** Draws generator noise uniform in [-1, 1): [batch, noiseDim]. */
export function sampleNoise(batch: number, noiseDim: number, generator?: Generator): Tensor {
  return tidy(() => rand([batch, noiseDim], { generator }).mul(2).sub(1));
}

// Both networks use no dropout: the generator's randomness comes from its noise input, and
// dropout in the critic would make the gradient penalty depend on a random mask.
const ganDropout = 0;

/**
 * Generator: [noise, condition] -> dense + swish -> [channels[last], ...coarsest padded shape] ->
 * U-Net decoder without skip connections (with batch norm) -> cropped to the model shape.
 */
export class UNetGenerator extends GeneratorNetwork {
  readonly outputShape: number[];
  private readonly embedding: EnergyEmbedding;
  private readonly dense: nn.Linear;
  private readonly decoder: Decoder;
  private readonly spatial: number[];
  private readonly bottomShape: number[];

  constructor(readonly config: UNetConfig, readonly noiseDim: number, generator?: Generator) {
    super();
    validateUNetConfig(config);
    if (!Number.isInteger(noiseDim) || noiseDim < 1) throw new Error(`generator noiseDim must be a positive integer, found ${noiseDim}`);
    this.outputShape = [...config.inputShape];
    this.spatial = config.inputShape.slice(1);
    const levels = config.channels.length;
    const padded = paddedSpatialShape(this.spatial, config.pooling, levels);
    const coarsest = levelShapes(padded, config.pooling, levels)[levels - 1];
    this.bottomShape = [config.channels[levels - 1], ...coarsest];
    const bottomSize = this.bottomShape.reduce((a, b) => a * b, 1);

    this.embedding = this.child("embedding", new EnergyEmbedding(config.embedding, config.energyFourierScale ?? config.fourierScale ?? 16, generator));
    this.dense = this.child("dense", new nn.Linear(noiseDim + 1, bottomSize, true, { generator }));
    this.decoder = this.child("decoder", new Decoder(config, config.embedding, { dropout: ganDropout, normalize: true }, generator));
  }

  forward(noise: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      const batch = noise.shape[0];
      const embedding = this.embedding.forward(condition);
      const input = cat([noise, condition.reshape([batch, 1])], 1);
      const bottom = this.dense.forward(input).silu().reshape([batch, ...this.bottomShape]);
      return cropEnd(this.decoder.forward(bottom, embedding, null), this.spatial);
    });
  }
}

/**
 * Critic: input zero-padded to the U-Net's padded shape -> U-Net encoder without batch norm (batch
 * statistics would couple the samples and break the per-sample gradient penalty) -> flattened
 * coarsest level -> dense layer to one output, no activation.
 */
export class UNetCritic extends CriticNetwork {
  private readonly embedding: EnergyEmbedding;
  private readonly encoder: Encoder;
  private readonly dense: nn.Linear;
  private readonly spatial: number[];
  private readonly padded: number[];

  constructor(readonly config: UNetConfig, generator?: Generator) {
    super();
    validateUNetConfig(config);
    this.spatial = config.inputShape.slice(1);
    const levels = config.channels.length;
    this.padded = paddedSpatialShape(this.spatial, config.pooling, levels);
    const coarsest = levelShapes(this.padded, config.pooling, levels)[levels - 1];
    const flatSize = config.channels[levels - 1] * coarsest.reduce((a, b) => a * b, 1);

    this.embedding = this.child("embedding", new EnergyEmbedding(config.embedding, config.energyFourierScale ?? config.fourierScale ?? 16, generator));
    this.encoder = this.child("encoder", new Encoder(config, config.embedding, { dropout: ganDropout, normalize: false }, generator));
    this.dense = this.child("dense", new nn.Linear(flatSize, 1, true, { generator }));
  }

  forward(x: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      const embedding = this.embedding.forward(condition);
      const levels = this.encoder.forward(padEnd(x, this.spatial, this.padded), embedding);
      const coarsest = levels[levels.length - 1];
      return this.dense.forward(coarsest.flatten(1)).reshape([x.shape[0]]);
    });
  }
}
