// Conditional U-Net score networks (1D for dataset 1, 3D for datasets 2 and 3), after the CaloScore
// architecture. Convolutions get their bias from the (time, energy) embedding and are followed by
// batch norm, swish and dropout. Average pooling goes down a level and nearest upsampling comes
// back up, skip connections are added and scaled by 1/sqrt(2), and the output is divided by the
// marginal standard deviation of the SDE.
import { consume, F, Generator, nn, Tensor, tidy, zeros } from "../torch";
import { ConditionEmbedding } from "./embedding";
import { perSample, Sde } from "./sde";
import { ScoreModel } from "./scoreModel";

export interface UNetConfig {
  /** Spatial dimensions of the convolutions: 1 (dataset 1) or 3 (datasets 2 and 3). */
  dims: 1 | 3;
  /** Input shape without the batch axis: [channels, ...spatial], e.g. [1, 45, 12, 12]. */
  inputShape: number[];
  /** Channels per level, e.g. [32, 64, 128]. */
  channels: number[];
  /** Cubic kernel size (odd). */
  kernel: number;
  /** Average-pooling factor per spatial axis between levels, e.g. [3, 2, 2]. */
  pooling: number[];
  /** Width of the (time, energy) embedding. */
  embedding: number;
  dropout: number;
  /** Spatial axes (0 = first spatial axis) with circular padding, e.g. [1] for alpha in [layers, alpha, r]. */
  circularAxes?: number[];
  /** Scale of the random Fourier features of the diffusion time. */
  fourierScale?: number;
  /** Scale of the random Fourier features of the incident-energy condition (default: fourierScale). */
  energyFourierScale?: number;
  /**
   * Adds a learned tensor [channels[0], ...padded spatial] after the input convolution, so the
   * network can tell entries apart (a convolution treats every position alike).
   */
  positionEmbedding?: boolean;
}

/** Convolution with "same" padding whose bias is shifted per sample by a dense map of the embedding. */
export class ConditionalConv extends nn.Module {
  private readonly conv: nn.Conv;
  private readonly dense: nn.Linear;

  constructor(dims: number, inChannels: number, readonly outChannels: number, kernel: number, embedding: number, circularAxes: number[], generator?: Generator) {
    super();
    this.conv = this.child("conv", new nn.Conv(dims, inChannels, outChannels, kernel, { padding: "same", circularAxes, generator }));
    this.dense = this.child("dense", new nn.Linear(embedding, outChannels, true, { generator }));
  }

  /** x: [batch, in, ...spatial], embedding: [batch, E] -> [batch, out, ...spatial] */
  forward(x: Tensor, embedding: Tensor): Tensor {
    return tidy(() => {
      const bias = this.dense.forward(embedding);
      const shape = [bias.shape[0], this.outChannels, ...Array<number>(x.ndim - 2).fill(1)];
      return consume(this.conv.forward(x), (h) => h.add(bias.reshape(shape)));
    });
  }
}

export interface BlockOptions {
  dropout: number;
  /** Batch normalisation after each convolution (off in the WGAN critic, where it would break the gradient penalty). */
  normalize: boolean;
}

/** Two conditional convolutions, each followed by batch norm and swish, with dropout between them. */
export class ConditionalBlock extends nn.Module {
  private readonly conv1: ConditionalConv;
  private readonly conv2: ConditionalConv;
  private readonly norm1: nn.BatchNorm | null;
  private readonly norm2: nn.BatchNorm | null;
  private readonly drop: nn.Dropout;

  constructor(dims: number, inChannels: number, outChannels: number, kernel: number, embedding: number, circularAxes: number[], options: BlockOptions, generator?: Generator) {
    super();
    this.conv1 = this.child("conv1", new ConditionalConv(dims, inChannels, outChannels, kernel, embedding, circularAxes, generator));
    this.norm1 = options.normalize ? this.child("norm1", new nn.BatchNorm(outChannels)) : null;
    this.drop = this.child("dropout", new nn.Dropout(options.dropout));
    this.conv2 = this.child("conv2", new ConditionalConv(dims, outChannels, outChannels, kernel, embedding, circularAxes, generator));
    this.norm2 = options.normalize ? this.child("norm2", new nn.BatchNorm(outChannels)) : null;
  }

  forward(x: Tensor, embedding: Tensor): Tensor {
    // Each intermediate is freed as soon as the next one exists, which bounds the memory of
    // no-grad sampling to a few activations of the largest level.
    return tidy(() => {
      const norm1 = this.norm1;
      const norm2 = this.norm2;
      let h = this.conv1.forward(x, embedding);
      if (norm1 !== null) h = consume(h, (t) => norm1.forward(t));
      h = consume(h, (t) => t.silu());
      h = consume(h, (t) => this.drop.forward(t));
      h = consume(h, (t) => this.conv2.forward(t, embedding));
      if (norm2 !== null) h = consume(h, (t) => norm2.forward(t));
      return consume(h, (t) => t.silu());
    });
  }
}

/** Spatial shape after each level: level 0 is the (padded) input, each next level divided by the pooling. */
export function levelShapes(spatial: number[], pooling: number[], levels: number): number[][] {
  const shapes = [spatial];
  for (let level = 1; level < levels; level++) {
    shapes.push(shapes[level - 1].map((n, axis) => n / pooling[axis]));
  }
  return shapes;
}

/** Pads each spatial size up to a multiple of pooling^(levels - 1), so every pooling divides exactly. */
export function paddedSpatialShape(spatial: number[], pooling: number[], levels: number): number[] {
  return spatial.map((n, axis) => {
    const multiple = pooling[axis] ** (levels - 1);
    return Math.ceil(n / multiple) * multiple;
  });
}

/** Encoder half: input convolution, then one block per level with pooling between levels. */
export class Encoder extends nn.Module {
  private readonly input: ConditionalConv;
  private readonly position: Tensor | null = null;
  private readonly blocks: ConditionalBlock[] = [];

  constructor(readonly config: UNetConfig, embedding: number, options: BlockOptions, generator?: Generator) {
    super();
    const { dims, channels, kernel } = config;
    const circular = config.circularAxes ?? [];
    this.input = this.child("input", new ConditionalConv(dims, config.inputShape[0], channels[0], kernel, embedding, circular, generator));
    if (config.positionEmbedding === true) {
      const padded = paddedSpatialShape(config.inputShape.slice(1), config.pooling, channels.length);
      this.position = this.param("position", zeros([1, channels[0], ...padded]));
    }
    channels.forEach((c, level) => {
      const inChannels = level === 0 ? channels[0] : channels[level - 1];
      this.blocks.push(this.child(`down${level}`, new ConditionalBlock(dims, inChannels, c, kernel, embedding, circular, options, generator)));
    });
  }

  /** x: [batch, C, ...padded spatial] -> the activation of every level, finest first. */
  forward(x: Tensor, embedding: Tensor): Tensor[] {
    return tidy(() => {
      const skips: Tensor[] = [];
      let h = this.input.forward(x, embedding);
      const position = this.position;
      if (position !== null) h = consume(h, (t) => t.add(position));
      this.blocks.forEach((block, level) => {
        // Each level's output stays alive as a skip connection; the pooled copy does not.
        const input = level === 0 ? h : F.avgPool(h, this.config.pooling);
        h = consume(input, (t) => block.forward(t, embedding));
        skips.push(h);
      });
      return skips;
    });
  }
}

/** Decoder half: from the coarsest level up, upsampling, a conditional convolution, the skip connection, a block. */
export class Decoder extends nn.Module {
  private readonly reduce: ConditionalConv[] = [];
  private readonly blocks: ConditionalBlock[] = [];
  private readonly output: nn.Conv;

  constructor(readonly config: UNetConfig, embedding: number, options: BlockOptions, generator?: Generator) {
    super();
    const { dims, channels, kernel } = config;
    const circular = config.circularAxes ?? [];
    for (let level = channels.length - 2; level >= 0; level--) {
      this.reduce.push(this.child(`up${level}.reduce`, new ConditionalConv(dims, channels[level + 1], channels[level], kernel, embedding, circular, generator)));
      this.blocks.push(this.child(`up${level}.block`, new ConditionalBlock(dims, channels[level], channels[level], kernel, embedding, circular, options, generator)));
    }
    this.output = this.child("output", new nn.Conv(dims, channels[0], config.inputShape[0], kernel, { padding: "same", circularAxes: circular, generator }));
  }

  /**
   * bottom: [batch, channels[last], ...coarsest spatial]; skips: the encoder's outputs (finest
   * first) or null for a decoder without skip connections (the GAN generator).
   */
  forward(bottom: Tensor, embedding: Tensor, skips: Tensor[] | null): Tensor {
    return tidy(() => {
      let h = bottom;
      const levels = this.config.channels.length;
      this.reduce.forEach((reduce, i) => {
        const level = levels - 2 - i;
        const upsampled = F.upsampleNearest(h, this.config.pooling);
        if (h !== bottom) h.dispose();
        h = consume(upsampled, (t) => reduce.forward(t, embedding));
        if (skips !== null) {
          h = consume(h, (t) => t.add(skips[level]));
          h = consume(h, (t) => t.mul(Math.SQRT1_2));
        }
        h = consume(h, (t) => this.blocks[i].forward(t, embedding));
      });
      return this.output.forward(h);
    });
  }
}

/** The score network s(x, t | E_inc) = U-Net(x, embedding(t, E_inc)) / std(t). */
export class UNetScoreModel extends nn.Module implements ScoreModel {
  readonly embedding: ConditionEmbedding;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  private readonly spatial: number[];
  private readonly padded: number[];

  constructor(readonly config: UNetConfig, readonly sde: Sde, generator?: Generator) {
    super();
    validateUNetConfig(config);
    const options = { dropout: config.dropout, normalize: true };
    this.embedding = this.child("embedding", new ConditionEmbedding(config.embedding, config.fourierScale ?? 16, generator, config.energyFourierScale ?? config.fourierScale ?? 16));
    this.encoder = this.child("encoder", new Encoder(config, config.embedding, options, generator));
    this.decoder = this.child("decoder", new Decoder(config, config.embedding, options, generator));
    this.spatial = config.inputShape.slice(1);
    this.padded = paddedSpatialShape(this.spatial, config.pooling, config.channels.length);
  }

  /** Network output before division by std(t): the estimate of -z in x_t = m x0 + std z. */
  noisePrediction(x: Tensor, t: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      const embedding = this.embedding.forward(t, condition);
      const input = padEnd(x, this.spatial, this.padded);
      const skips = this.encoder.forward(input, embedding);
      const out = this.decoder.forward(skips[skips.length - 1], embedding, skips);
      return cropEnd(out, this.spatial);
    });
  }

  score(x: Tensor, t: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      const { std } = this.sde.marginal(t);
      return this.noisePrediction(x, t, condition).div(perSample(std, x));
    });
  }
}

/** Zero-pads the trailing spatial axes from `spatial` up to `padded`. */
export function padEnd(x: Tensor, spatial: number[], padded: number[]): Tensor {
  if (spatial.every((n, i) => n === padded[i])) return x;
  const pads: number[] = [];
  for (let axis = spatial.length - 1; axis >= 0; axis--) pads.push(0, padded[axis] - spatial[axis]);
  return x.pad(pads, "constant", 0);
}

/** Inverse of padEnd: keeps the first `spatial` entries of each trailing axis. */
export function cropEnd(x: Tensor, spatial: number[]): Tensor {
  let out = x;
  spatial.forEach((n, axis) => {
    if (out.shape[axis + 2] !== n) out = out.slice(axis + 2, 0, n);
  });
  return out;
}

export function validateUNetConfig(config: UNetConfig): void {
  const spatial = config.inputShape.length - 1;
  if (spatial !== config.dims) {
    throw new Error(`U-Net input shape [${config.inputShape}] has ${spatial} spatial axes; dims is ${config.dims}`);
  }
  if (config.pooling.length !== config.dims) {
    throw new Error(`U-Net pooling [${config.pooling}] needs one factor per spatial axis (${config.dims})`);
  }
  if (config.kernel % 2 !== 1) throw new Error(`U-Net kernel must be odd, found ${config.kernel}`);
  if (config.channels.length < 1) throw new Error("U-Net needs at least one level of channels");
}
