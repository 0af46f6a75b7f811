// Neural-network modules: a Module base with named parameters and buffers, and the layers the
// score networks and the GAN are built from.
import * as F from "./functional";
import { Generator, keep, ones, rand, Tensor, tidy, zeros } from "./tensor";

/**
 * Base class. A subclass creates its parameters with `param`, its buffers with `buffer` and its
 * children with `child`, in a fixed order, so that names are stable for checkpoints.
 */
export abstract class Module {
  private readonly params = new Map<string, Tensor>();
  private readonly buffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  private isTraining = true;

  protected param(name: string, value: Tensor): Tensor {
    keep(value);
    value.requiresGrad_(true);
    this.params.set(name, value);
    return value;
  }

  protected buffer(name: string, value: Tensor): Tensor {
    keep(value);
    this.buffers.set(name, value);
    return value;
  }

  protected child<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** Parameters by dotted name ("down.0.conv.weight"), in registration order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, p] of this.params) out.push([prefix + name, p]);
    for (const [name, c] of this.children) out.push(...c.namedParameters(`${prefix}${name}.`));
    return out;
  }

  namedBuffers(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, b] of this.buffers) out.push([prefix + name, b]);
    for (const [name, c] of this.children) out.push(...c.namedBuffers(`${prefix}${name}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Parameters and buffers by name: what a checkpoint stores. */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies tensors into this module's parameters and buffers. Every name must be present with
   * the same shape; the error names the tensor that is missing, extra or of the wrong shape.
   */
  loadStateDict(state: Map<string, Tensor>, source = "checkpoint"): void {
    const own = this.stateDict();
    for (const name of state.keys()) {
      if (!own.has(name)) throw new Error(`${source} has tensor '${name}', which this model does not have`);
    }
    for (const [name, target] of own) {
      const value = state.get(name);
      if (value === undefined) throw new Error(`${source} is missing tensor '${name}' (shape [${target.shape.join(", ")}])`);
      const expected = target.shape.join(", ");
      const found = value.shape.join(", ");
      if (expected !== found) {
        throw new Error(`${source} tensor '${name}' has shape [${found}]; the model expects [${expected}]`);
      }
      if (value.dtype !== target.dtype) {
        throw new Error(`${source} tensor '${name}' has dtype ${value.dtype}; the model expects ${target.dtype}`);
      }
      target.copy_(value);
    }
  }

  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  get training(): boolean {
    return this.isTraining;
  }

  train(mode = true): this {
    this.isTraining = mode;
    for (const c of this.children.values()) c.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.clearGrad();
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const t of this.buffers.values()) t.dispose();
    for (const c of this.children.values()) c.dispose();
  }
}

/** Uniform samples in [-bound, bound). */
function uniform(shape: number[], bound: number, generator?: Generator): Tensor {
  return tidy(() => rand(shape, { generator }).mul(2 * bound).sub(bound));
}

/**
 * Default initialisation, as PyTorch's Linear and ConvNd: weights and biases uniform in
 * [-1/sqrt(fanIn), 1/sqrt(fanIn)] (Kaiming uniform with a = sqrt(5)), fanIn = inputs x kernel size.
 */
function initialBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}

export interface InitOptions {
  generator?: Generator;
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true, init: InitOptions = {}) {
    super();
    const bound = initialBound(inFeatures);
    this.weight = this.param("weight", uniform([outFeatures, inFeatures], bound, init.generator));
    this.bias = bias ? this.param("bias", uniform([outFeatures], bound, init.generator)) : null;
  }
  /** x: [..., inFeatures] -> [..., outFeatures] */
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export interface ConvModuleOptions extends InitOptions {
  stride?: number;
  padding?: number | "same";
  dilation?: number;
  bias?: boolean;
  /** Circular padding along these spatial axes (0 = first spatial axis), zero padding elsewhere. */
  circularAxes?: readonly number[];
}

/**
 * Convolution over `dims` spatial dimensions (1 or 3 in this project) with a cubic kernel.
 * Padding "same" keeps the spatial size for stride 1 and odd kernels.
 */
export class Conv extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  private readonly padding: number;
  private readonly stride: number;
  private readonly dilation: number;
  private readonly circularAxes: readonly number[];

  constructor(
    readonly dims: number,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    options: ConvModuleOptions = {},
  ) {
    super();
    this.stride = options.stride ?? 1;
    this.dilation = options.dilation ?? 1;
    this.padding = options.padding === "same" ? (this.dilation * (kernel - 1)) / 2 : (options.padding ?? 0);
    if (!Number.isInteger(this.padding)) throw new Error(`padding "same" needs an odd kernel, found ${kernel}`);
    this.circularAxes = options.circularAxes ?? [];
    const fanIn = inChannels * kernel ** dims;
    const bound = initialBound(fanIn);
    this.weight = this.param("weight", uniform([outChannels, inChannels, ...Array<number>(dims).fill(kernel)], bound, options.generator));
    this.bias = options.bias === false ? null : this.param("bias", uniform([outChannels], bound, options.generator));
  }

  /** x: [batch, inChannels, ...spatial] -> [batch, outChannels, ...spatial'] */
  forward(x: Tensor): Tensor {
    if (this.circularAxes.length === 0 || this.padding === 0) {
      return F.conv(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation });
    }
    return tidy(() => {
      // pad() lists (before, after) pairs from the last dimension backwards.
      const circular: number[] = [];
      const zero: number[] = [];
      for (let axis = this.dims - 1; axis >= 0; axis--) {
        const isCircular = this.circularAxes.includes(axis);
        circular.push(isCircular ? this.padding : 0, isCircular ? this.padding : 0);
        zero.push(isCircular ? 0 : this.padding, isCircular ? 0 : this.padding);
      }
      const padded = x.pad(circular, "circular").pad(zero, "constant", 0);
      return F.conv(padded, this.weight, this.bias, { stride: this.stride, padding: 0, dilation: this.dilation });
    });
  }
}

/** Batch normalisation over channel axis 1 with learnable scale and shift and running statistics. */
export class BatchNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  constructor(readonly channels: number, readonly momentum = 0.1, readonly eps = 1e-5) {
    super();
    this.weight = this.param("weight", ones([channels]));
    this.bias = this.param("bias", zeros([channels]));
    this.runningMean = this.buffer("running_mean", zeros([channels]));
    this.runningVar = this.buffer("running_var", ones([channels]));
  }
  forward(x: Tensor): Tensor {
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, this.training, this.momentum, this.eps);
  }
}

export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.p > 0 ? F.dropout(x, this.p, this.training) : x;
  }
}

/** Activation functions by name, for configurations. */
export const activations = {
  swish: (x: Tensor) => x.silu(),
  relu: (x: Tensor) => x.relu(),
  leakyRelu: (x: Tensor) => x.leakyRelu(0.01),
  tanh: (x: Tensor) => x.tanh(),
  sigmoid: (x: Tensor) => x.sigmoid(),
  softplus: (x: Tensor) => x.softplus(),
} as const;
