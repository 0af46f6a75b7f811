// Optimizers, learning-rate schedule, gradient clipping and an exponential moving average of
// weights. Updates run in place under no-grad, with libtorch's kernels.
import { keep, noGrad, Tensor, tidy, zerosLike } from "./tensor";

/** Optimizer state that a checkpoint stores: scalar settings in JSON, moment tensors by name. */
export interface OptimizerState {
  kind: string;
  step: number;
  lr: number;
  tensors: Map<string, Tensor>;
}

export interface Optimizer {
  lr: number;
  /** Applies one update from the gradients accumulated in the parameters. */
  step(): void;
  zeroGrad(): void;
  state(): OptimizerState;
  loadState(state: OptimizerState): void;
  dispose(): void;
}

abstract class BaseOptimizer implements Optimizer {
  protected stepCount = 0;
  protected readonly slots: Map<string, Tensor>[] = [];

  constructor(
    protected readonly kind: string,
    protected readonly params: readonly Tensor[],
    protected readonly slotNames: readonly string[],
    public lr: number,
  ) {
    for (const p of params) {
      const slots = new Map<string, Tensor>();
      for (const name of slotNames) slots.set(name, keep(noGrad(() => zerosLike(p))));
      this.slots.push(slots);
    }
  }

  abstract update(param: Tensor, grad: Tensor, slots: Map<string, Tensor>): void;

  step(): void {
    this.stepCount++;
    noGrad(() =>
      tidy(() => {
        this.params.forEach((p, i) => {
          const g = p.grad;
          if (g !== null) this.update(p, g, this.slots[i]);
        });
      }),
    );
  }

  zeroGrad(): void {
    for (const p of this.params) p.clearGrad();
  }

  state(): OptimizerState {
    const tensors = new Map<string, Tensor>();
    this.slots.forEach((slots, i) => {
      for (const [name, t] of slots) tensors.set(`${i}.${name}`, t);
    });
    return { kind: this.kind, step: this.stepCount, lr: this.lr, tensors };
  }

  loadState(state: OptimizerState): void {
    if (state.kind !== this.kind) throw new Error(`optimizer state is for ${state.kind}; this optimizer is ${this.kind}`);
    this.slots.forEach((slots, i) => {
      for (const [name, target] of slots) {
        const key = `${i}.${name}`;
        const value = state.tensors.get(key);
        if (value === undefined) throw new Error(`optimizer state is missing tensor '${key}'`);
        if (value.shape.join(",") !== target.shape.join(",")) {
          throw new Error(`optimizer state tensor '${key}' has shape [${value.shape}]; expected [${target.shape}]`);
        }
        target.copy_(value);
      }
    });
    this.stepCount = state.step;
    this.lr = state.lr;
  }

  dispose(): void {
    for (const slots of this.slots) for (const t of slots.values()) t.dispose();
  }
}

export interface AdamOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** L2 penalty added to the gradient, as torch.optim.Adam's weight_decay. */
  weightDecay?: number;
}

/** Adam with bias correction (Kingma and Ba 2015), matching torch.optim.Adam. */
export class Adam extends BaseOptimizer {
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;

  constructor(params: readonly Tensor[], options: AdamOptions = {}) {
    super("adam", params, ["exp_avg", "exp_avg_sq"], options.lr ?? 1e-3);
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
  }

  update(param: Tensor, grad: Tensor, slots: Map<string, Tensor>): void {
    const g = this.weightDecay !== 0 ? grad.add(param.mul(this.weightDecay)) : grad;
    const m = slots.get("exp_avg")!;
    const v = slots.get("exp_avg_sq")!;
    m.lerp_(g, 1 - this.beta1);
    v.mul_(this.beta2).addcmul_(g, g, 1 - this.beta2);
    const correction1 = 1 - this.beta1 ** this.stepCount;
    const correction2 = 1 - this.beta2 ** this.stepCount;
    const denominator = v.sqrt().div(Math.sqrt(correction2)).add(this.eps);
    param.addcdiv_(m, denominator, -this.lr / correction1);
  }
}

export interface RmsPropOptions {
  lr?: number;
  alpha?: number;
  eps?: number;
}

/** RMSprop without momentum, matching torch.optim.RMSprop's defaults (alpha 0.99, eps 1e-8). */
export class RmsProp extends BaseOptimizer {
  private readonly alpha: number;
  private readonly eps: number;

  constructor(params: readonly Tensor[], options: RmsPropOptions = {}) {
    super("rmsprop", params, ["square_avg"], options.lr ?? 1e-2);
    this.alpha = options.alpha ?? 0.99;
    this.eps = options.eps ?? 1e-8;
  }

  update(param: Tensor, grad: Tensor, slots: Map<string, Tensor>): void {
    const s = slots.get("square_avg")!;
    s.mul_(this.alpha).addcmul_(grad, grad, 1 - this.alpha);
    param.addcdiv_(grad, s.sqrt().add(this.eps), -this.lr);
  }
}

/**
 * Scales gradients in place so that their global 2-norm is at most maxNorm.
 * Returns the norm before clipping.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  return noGrad(() =>
    tidy(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return 0;
      let squared = 0;
      for (const g of grads) squared += g.square().sum().item();
      const norm = Math.sqrt(squared);
      const scale = maxNorm / (norm + 1e-6);
      if (scale < 1) for (const g of grads) g.mul_(scale);
      return norm;
    }),
  );
}

export interface PlateauOptions {
  /** Multiplier applied to the learning rate after `patience` epochs without improvement. */
  factor?: number;
  patience?: number;
  minLr?: number;
  /** Relative improvement needed to count as better. */
  threshold?: number;
}

/**
 * Reduces the learning rate when a monitored loss stops improving (torch's ReduceLROnPlateau, mode
 * min, threshold mode rel). Unlike torch 1.13, a negative best loss needs loss < best - |best| *
 * threshold, so a slightly worse negative loss never counts as an improvement.
 */
export class ReduceLrOnPlateau {
  best = Infinity;
  badEpochs = 0;
  private readonly factor: number;
  private readonly patience: number;
  private readonly minLr: number;
  private readonly threshold: number;

  constructor(private readonly optimizer: Optimizer, options: PlateauOptions = {}) {
    this.factor = options.factor ?? 0.5;
    this.patience = options.patience ?? 10;
    this.minLr = options.minLr ?? 0;
    this.threshold = options.threshold ?? 1e-4;
  }

  /** Records one epoch's loss; returns true when the learning rate was reduced. */
  step(loss: number): boolean {
    if (loss < this.best * (1 - Math.sign(this.best) * this.threshold)) {
      this.best = loss;
      this.badEpochs = 0;
      return false;
    }
    this.badEpochs++;
    if (this.badEpochs <= this.patience) return false;
    this.badEpochs = 0;
    const reduced = Math.max(this.optimizer.lr * this.factor, this.minLr);
    const changed = reduced < this.optimizer.lr;
    this.optimizer.lr = reduced;
    return changed;
  }

  state(): { best: number; badEpochs: number } {
    return { best: this.best, badEpochs: this.badEpochs };
  }

  loadState(state: { best: number | null; badEpochs: number }): void {
    this.best = state.best ?? Infinity;
    this.badEpochs = state.badEpochs;
  }
}

/**
 * Exponential moving average of parameters: shadow = d * shadow + (1 - d) * param with d = decay,
 * or with `warmup` d = min(decay, (1 + n) / (10 + n)) after n updates (the schedule of
 * TensorFlow's ExponentialMovingAverage with num_updates), so that a short run is not dominated
 * by the initial weights.
 */
export class Ema {
  readonly shadow: Tensor[];
  /** Updates applied so far; part of the state to save for an exact resume. */
  updates = 0;

  constructor(
    private readonly params: readonly Tensor[],
    readonly decay = 0.999,
    readonly warmup = false,
  ) {
    this.shadow = params.map((p) => keep(noGrad(() => tidy(() => p.detach().clone()))));
  }

  update(): void {
    const decay = this.warmup ? Math.min(this.decay, (1 + this.updates) / (10 + this.updates)) : this.decay;
    this.updates++;
    noGrad(() => {
      this.params.forEach((p, i) => this.shadow[i].lerp_(p, 1 - decay));
    });
  }

  /** Copies the averaged weights into the parameters. */
  copyTo(params: readonly Tensor[] = this.params): void {
    noGrad(() => params.forEach((p, i) => p.copy_(this.shadow[i])));
  }

  dispose(): void {
    for (const t of this.shadow) t.dispose();
  }
}
