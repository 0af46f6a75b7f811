// The TypeScript face of the libtorch binding: a Tensor class, creation functions and scopes that
// free native memory deterministically.
import { native, NativeGenerator, NativeTensor } from "./native";

export type DType = "float32" | "float64" | "int64" | "int32" | "bool" | "uint8" | "bfloat16" | "float16";
export type Device = "cpu" | "cuda" | `cuda:${number}`;
export type Shape = readonly number[];
export type TypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}

// ---------------------------------------------------------------------------------------------
// Scopes

const scopeStack: Set<Tensor>[] = [];

function track(t: Tensor): Tensor {
  const scope = scopeStack[scopeStack.length - 1];
  if (scope !== undefined) scope.add(t);
  return t;
}

function collectTensors(value: unknown, found: Set<Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== "object") return;
  if (value instanceof Tensor) {
    found.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) collectTensors(item, found, depth + 1);
    return;
  }
  if (value instanceof Map) {
    for (const item of value.values()) collectTensors(item, found, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) collectTensors(item, found, depth + 1);
  }
}

/**
 * Runs `fn` in a scope and frees every tensor created inside it, except the tensors found in its
 * return value (a tensor, or arrays, maps and plain objects of them, up to four levels deep),
 * which move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopeStack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scopeStack.pop();
    for (const t of scope) t.dispose();
    throw error;
  }
  scopeStack.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error("tidy() received an async function; tensors cannot be tracked across await");
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept);
  for (const t of scope) {
    if (kept.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

/** Removes tensors from the current scope so that they outlive it; the caller then owns them. */
export function keep<T extends Tensor | Tensor[]>(value: T): T {
  const list = Array.isArray(value) ? value : [value];
  for (const t of list) {
    for (const scope of scopeStack) scope.delete(t);
  }
  return value;
}

/**
 * Applies `fn` to an intermediate tensor and frees that tensor's handle as soon as `fn` returns
 * (unless `fn` returned it), so that a chain of ops holds one intermediate at a time instead of
 * every one until the enclosing scope ends. Safe under autograd, whose graph keeps its own
 * references. Never pass a tensor that is still used afterwards.
 */
export function consume(t: Tensor, fn: (t: Tensor) => Tensor): Tensor {
  const out = fn(t);
  if (out !== t) t.dispose();
  return out;
}

/** Number of native tensors alive in this process (created and not yet freed). */
export function liveTensors(): number {
  return native.liveCount() as number;
}

/**
 * Bytes of tensor storage that this process has reported to V8 as external memory (napi_adjust_external_memory).
 * Node 20's process.memoryUsage().external does not include this figure.
 */
export function externalMemoryBytes(): number {
  return native.externalMemory() as number;
}

/** Counters of the engine's CPU allocator, which caches freed blocks of 32 KiB or more for reuse. */
export interface CpuAllocatorStats {
  /** Bytes mapped for blocks of 32 KiB or more: live tensor storage plus the cache. */
  mappedBytes: number;
  /** Bytes of freed blocks kept for reuse. */
  cachedBytes: number;
  /** Requests served from the cache. */
  hits: number;
  /** Requests that mapped a new block. */
  misses: number;
}

export function cpuAllocatorStats(): CpuAllocatorStats {
  return native.cpuAllocatorStats() as CpuAllocatorStats;
}

/** Unmaps every cached CPU block, returning its memory to the system; returns the bytes released. */
export function releaseCpuCache(): number {
  return native.releaseCpuCache() as number;
}

/** Disposes every tensor in a value (tensor, array, map or plain object of them). */
export function disposeAll(value: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(value, found);
  for (const t of found) t.dispose();
}

// ---------------------------------------------------------------------------------------------
// Autograd mode

/** Runs `fn` with gradient recording disabled (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const previous = native.setGradEnabled(false) as boolean;
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled() as boolean;
}

// ---------------------------------------------------------------------------------------------
// Tensor

type Operand = Tensor | number;

function handleOf(x: Operand): NativeTensor | number {
  return x instanceof Tensor ? x.handle : x;
}

function wrap(handle: unknown): Tensor {
  return track(new Tensor(handle as NativeTensor));
}

/** Wraps a handle returned by the binding in a Tensor owned by the current scope (for sibling modules). */
export const adopt = wrap;

export class Tensor {
  /** The native tensor; valid until dispose(). */
  readonly handle: NativeTensor;

  constructor(handle: NativeTensor) {
    this.handle = handle;
  }

  get shape(): number[] {
    return native.shape(this.handle) as number[];
  }
  get dtype(): DType {
    return native.dtype(this.handle) as DType;
  }
  get device(): string {
    return native.device(this.handle) as string;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get isDisposed(): boolean {
    return native.isDisposed(this.handle) as boolean;
  }

  /** Frees the native memory now; further use of this tensor raises an error. */
  dispose(): void {
    native.dispose(this.handle);
  }

  /** Copies the data to a new typed array (bool and uint8 as Uint8Array, int64 as BigInt64Array). */
  data(): TypedArray {
    return native.toBuffer(this.handle) as TypedArray;
  }
  /** Copies the data to a Float32Array, converting the dtype when needed. */
  toFloat32(): Float32Array {
    const d = this.data();
    return d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>, Number);
  }
  /** Copies the data to a Float64Array, converting the dtype when needed. */
  toFloat64(): Float64Array {
    const d = this.data();
    if (d instanceof Float64Array) return d;
    if (d instanceof BigInt64Array) return Float64Array.from(d, Number);
    return Float64Array.from(d);
  }
  item(): number {
    return native.item(this.handle) as number;
  }

  // Shape and indexing
  reshape(shape: Shape): Tensor {
    return wrap(native.reshape(this.handle, [...shape]));
  }
  view(shape: Shape): Tensor {
    return this.reshape(shape);
  }
  permute(dims: Shape): Tensor {
    return wrap(native.permute(this.handle, [...dims]));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return wrap(native.transpose(this.handle, dim0, dim1));
  }
  contiguous(): Tensor {
    return wrap(native.contiguous(this.handle));
  }
  clone(): Tensor {
    return wrap(native.clone(this.handle));
  }
  /** Elements start..end (exclusive) with a step along one dimension; a view. */
  slice(dim: number, start: number, end: number, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start, end, step));
  }
  select(dim: number, index: number): Tensor {
    return wrap(native.select(this.handle, dim, index));
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(native.indexSelect(this.handle, dim, index.handle));
  }
  gather(dim: number, index: Tensor): Tensor {
    return wrap(native.gather(this.handle, dim, index.handle));
  }
  scatterAdd(dim: number, index: Tensor, source: Tensor): Tensor {
    return wrap(native.scatterAdd(this.handle, dim, index.handle, source.handle));
  }
  indexAdd(dim: number, index: Tensor, source: Tensor): Tensor {
    return wrap(native.indexAdd(this.handle, dim, index.handle, source.handle));
  }
  squeeze(dim: number): Tensor {
    return wrap(native.squeeze(this.handle, dim));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(native.unsqueeze(this.handle, dim));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return wrap(native.flatten(this.handle, startDim, endDim));
  }
  expand(shape: Shape): Tensor {
    return wrap(native.expand(this.handle, [...shape]));
  }
  repeat(repeats: Shape): Tensor {
    return wrap(native.repeat(this.handle, [...repeats]));
  }
  repeatInterleave(repeats: number, dim: number): Tensor {
    return wrap(native.repeatInterleave(this.handle, repeats, dim));
  }
  flip(dims: Shape): Tensor {
    return wrap(native.flip(this.handle, [...dims]));
  }
  /** Pads the last dimensions; `pads` lists (before, after) pairs, last dimension first. */
  pad(pads: Shape, mode: "constant" | "circular" | "reflect" | "replicate" = "constant", value = 0): Tensor {
    return wrap(native.pad(this.handle, [...pads], mode, value));
  }
  to(options: TensorOptions): Tensor {
    return wrap(native.to(this.handle, options.dtype ?? this.dtype, options.device ?? this.device));
  }

  // Elementwise
  private unary(name: string): Tensor {
    return wrap(native.unary(name, this.handle));
  }
  private binary(name: string, other: Operand): Tensor {
    return wrap(native.binary(name, this.handle, handleOf(other)));
  }
  add(other: Operand): Tensor {
    return this.binary("add", other);
  }
  sub(other: Operand): Tensor {
    return this.binary("sub", other);
  }
  mul(other: Operand): Tensor {
    return this.binary("mul", other);
  }
  div(other: Operand): Tensor {
    return this.binary("div", other);
  }
  pow(exponent: Operand): Tensor {
    return this.binary("pow", exponent);
  }
  /** other - this, for a number other. */
  rsub(other: number): Tensor {
    return this.binary("rsub", other);
  }
  /** other / this, for a number other. */
  rdiv(other: number): Tensor {
    return this.binary("rdiv", other);
  }
  maximum(other: Operand): Tensor {
    return this.binary("maximum", other);
  }
  minimum(other: Operand): Tensor {
    return this.binary("minimum", other);
  }
  atan2(other: Tensor): Tensor {
    return this.binary("atan2", other);
  }
  eq(other: Operand): Tensor {
    return this.binary("eq", other);
  }
  ne(other: Operand): Tensor {
    return this.binary("ne", other);
  }
  lt(other: Operand): Tensor {
    return this.binary("lt", other);
  }
  le(other: Operand): Tensor {
    return this.binary("le", other);
  }
  gt(other: Operand): Tensor {
    return this.binary("gt", other);
  }
  ge(other: Operand): Tensor {
    return this.binary("ge", other);
  }
  logicalAnd(other: Tensor): Tensor {
    return this.binary("logicalAnd", other);
  }
  logicalOr(other: Tensor): Tensor {
    return this.binary("logicalOr", other);
  }
  logicalNot(): Tensor {
    return this.unary("logicalNot");
  }
  neg(): Tensor {
    return this.unary("neg");
  }
  exp(): Tensor {
    return this.unary("exp");
  }
  expm1(): Tensor {
    return this.unary("expm1");
  }
  log(): Tensor {
    return this.unary("log");
  }
  log1p(): Tensor {
    return this.unary("log1p");
  }
  sqrt(): Tensor {
    return this.unary("sqrt");
  }
  rsqrt(): Tensor {
    return this.unary("rsqrt");
  }
  sin(): Tensor {
    return this.unary("sin");
  }
  cos(): Tensor {
    return this.unary("cos");
  }
  sigmoid(): Tensor {
    return this.unary("sigmoid");
  }
  logit(): Tensor {
    return this.unary("logit");
  }
  /** Swish, x * sigmoid(x). */
  silu(): Tensor {
    return this.unary("silu");
  }
  tanh(): Tensor {
    return this.unary("tanh");
  }
  relu(): Tensor {
    return this.unary("relu");
  }
  leakyRelu(negativeSlope = 0.01): Tensor {
    return wrap(native.leakyRelu(this.handle, negativeSlope));
  }
  softplus(): Tensor {
    return this.unary("softplus");
  }
  abs(): Tensor {
    return this.unary("abs");
  }
  square(): Tensor {
    return this.unary("square");
  }
  sign(): Tensor {
    return this.unary("sign");
  }
  floor(): Tensor {
    return this.unary("floor");
  }
  ceil(): Tensor {
    return this.unary("ceil");
  }
  round(): Tensor {
    return this.unary("round");
  }
  erf(): Tensor {
    return this.unary("erf");
  }
  reciprocal(): Tensor {
    return this.unary("reciprocal");
  }
  isnan(): Tensor {
    return this.unary("isnan");
  }
  isfinite(): Tensor {
    return this.unary("isfinite");
  }
  clamp(min: number | null, max: number | null = null): Tensor {
    return wrap(native.clamp(this.handle, min, max));
  }

  // Reductions; dims null reduces every dimension.
  sum(dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.sum(this.handle, dims === null ? null : [...dims], keepdim));
  }
  mean(dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.mean(this.handle, dims === null ? null : [...dims], keepdim));
  }
  max(dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.amax(this.handle, dims === null ? null : [...dims], keepdim));
  }
  min(dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.amin(this.handle, dims === null ? null : [...dims], keepdim));
  }
  argmax(dim: number, keepdim = false): Tensor {
    return wrap(native.argmax(this.handle, dim, keepdim));
  }
  /** Vector p-norm over dims (all when null). */
  norm(p = 2, dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.norm(this.handle, p, dims === null ? null : [...dims], keepdim));
  }
  logsumexp(dims: Shape | null = null, keepdim = false): Tensor {
    return wrap(native.logsumexp(this.handle, dims === null ? null : [...dims], keepdim));
  }
  variance(dims: Shape | null = null, unbiased = true, keepdim = false): Tensor {
    return wrap(native.variance(this.handle, dims === null ? null : [...dims], unbiased, keepdim));
  }
  cumsum(dim: number): Tensor {
    return wrap(native.cumsum(this.handle, dim));
  }
  /** Sorted values and their int64 indices along dim. */
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    const [values, indices] = native.sort(this.handle, dim, descending) as unknown[];
    return [wrap(values), wrap(indices)];
  }
  matmul(other: Tensor): Tensor {
    return wrap(native.matmul(this.handle, other.handle));
  }

  // In-place updates (never recorded by autograd); each returns this.
  zero_(): this {
    native.inplace("zero", this.handle);
    return this;
  }
  fill_(value: number): this {
    native.inplace("fill", this.handle, value);
    return this;
  }
  copy_(source: Tensor): this {
    native.inplace("copy", this.handle, source.handle);
    return this;
  }
  /** this += alpha * other */
  add_(other: Operand, alpha = 1): this {
    native.inplace("add", this.handle, handleOf(other), alpha);
    return this;
  }
  mul_(other: Operand): this {
    native.inplace("mul", this.handle, handleOf(other));
    return this;
  }
  /** this += value * a * b */
  addcmul_(a: Tensor, b: Tensor, value = 1): this {
    native.inplace("addcmul", this.handle, a.handle, b.handle, value);
    return this;
  }
  /** this += value * a / b */
  addcdiv_(a: Tensor, b: Tensor, value = 1): this {
    native.inplace("addcdiv", this.handle, a.handle, b.handle, value);
    return this;
  }
  /** this += weight * (end - this) */
  lerp_(end: Tensor, weight: number): this {
    native.inplace("lerp", this.handle, end.handle, weight);
    return this;
  }

  // Autograd
  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle) as boolean;
  }
  requiresGrad_(value = true): this {
    native.setRequiresGrad(this.handle, value);
    return this;
  }
  detach(): Tensor {
    return wrap(native.detach(this.handle));
  }
  /** Accumulates gradients into the leaves; `gradient` is needed for a non-scalar tensor. */
  backward(gradient: Tensor | null = null, retainGraph = false): void {
    native.backward(this.handle, gradient === null ? null : gradient.handle, retainGraph);
  }
  /** The accumulated gradient as a new handle (tracked by the current scope), or null. */
  get grad(): Tensor | null {
    const g = native.grad(this.handle);
    return g === null ? null : wrap(g);
  }
  clearGrad(): void {
    native.clearGrad(this.handle);
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Creation

const defaultDtype: DType = "float32";
const defaultDevice: Device = "cpu";

function dtypeOf(options?: TensorOptions): DType {
  return options?.dtype ?? defaultDtype;
}
function deviceOf(options?: TensorOptions): Device {
  return options?.device ?? defaultDevice;
}

/** Creates a tensor from a typed array (copied) or a nested array of numbers. */
export function tensor(data: TypedArray | number[] | number[][], shape?: Shape, options?: TensorOptions): Tensor {
  let array: TypedArray;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    array = data;
    inferred = [data.length];
  } else if (data.length > 0 && Array.isArray(data[0])) {
    const rows = data as number[][];
    array = Float64Array.from(rows.flat());
    inferred = [rows.length, rows[0].length];
  } else {
    array = Float64Array.from(data as number[]);
    inferred = [data.length];
  }
  const dtype = options?.dtype ?? (array instanceof Float64Array && !ArrayBuffer.isView(data) ? defaultDtype : inferDtype(array));
  return wrap(native.fromBuffer(array, [...(shape ?? inferred)], dtype, deviceOf(options)));
}

function inferDtype(array: TypedArray): DType {
  if (array instanceof Float32Array) return "float32";
  if (array instanceof Float64Array) return "float64";
  if (array instanceof BigInt64Array) return "int64";
  if (array instanceof Int32Array) return "int32";
  return "uint8";
}

export function zeros(shape: Shape, options?: TensorOptions): Tensor {
  return wrap(native.zeros([...shape], dtypeOf(options), deviceOf(options)));
}
export function ones(shape: Shape, options?: TensorOptions): Tensor {
  return wrap(native.ones([...shape], dtypeOf(options), deviceOf(options)));
}
export function full(shape: Shape, value: number, options?: TensorOptions): Tensor {
  return wrap(native.full([...shape], value, dtypeOf(options), deviceOf(options)));
}
export function zerosLike(t: Tensor): Tensor {
  return zeros(t.shape, { dtype: t.dtype, device: t.device as Device });
}
export function onesLike(t: Tensor): Tensor {
  return ones(t.shape, { dtype: t.dtype, device: t.device as Device });
}
/** Standard normal samples; with a generator the draw is reproducible independently of the global seed. */
export function randn(shape: Shape, options?: TensorOptions & { generator?: Generator }): Tensor {
  return wrap(native.randn([...shape], dtypeOf(options), deviceOf(options), options?.generator?.native ?? null));
}
export function randnLike(t: Tensor, generator?: Generator): Tensor {
  return randn(t.shape, { dtype: t.dtype, device: t.device as Device, generator });
}
/** Uniform samples in [0, 1). */
export function rand(shape: Shape, options?: TensorOptions & { generator?: Generator }): Tensor {
  return wrap(native.rand([...shape], dtypeOf(options), deviceOf(options), options?.generator?.native ?? null));
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: Shape, options?: TensorOptions & { generator?: Generator }): Tensor {
  return wrap(
    native.randint(low, high, [...shape], options?.dtype ?? "int64", deviceOf(options), options?.generator?.native ?? null),
  );
}
export function randperm(n: number, options?: TensorOptions & { generator?: Generator }): Tensor {
  return wrap(native.randperm(n, options?.dtype ?? "int64", deviceOf(options), options?.generator?.native ?? null));
}
/** Values start, start + step, ... below end. */
export function arange(start: number, end: number, step = 1, options?: TensorOptions): Tensor {
  return wrap(native.arange(start, end, step, dtypeOf(options), deviceOf(options)));
}
export function linspace(start: number, end: number, steps: number, options?: TensorOptions): Tensor {
  return wrap(native.linspace(start, end, steps, dtypeOf(options), deviceOf(options)));
}

// ---------------------------------------------------------------------------------------------
// Functions of several tensors

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return wrap(native.cat(tensors.map((t) => t.handle), dim));
}
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return wrap(native.stack(tensors.map((t) => t.handle), dim));
}
/** Elements of a where cond is true, else of b. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  return wrap(native.where(cond.handle, handleOf(a), handleOf(b)));
}

/**
 * Gradients of outputs with respect to inputs (torch.autograd.grad). With createGraph the
 * gradients are themselves differentiable, for second derivatives.
 */
export function grad(
  outputs: Tensor | readonly Tensor[],
  inputs: Tensor | readonly Tensor[],
  options: { gradOutputs?: readonly Tensor[]; createGraph?: boolean; retainGraph?: boolean; allowUnused?: boolean } = {},
): (Tensor | null)[] {
  const outs = outputs instanceof Tensor ? [outputs] : outputs;
  const ins = inputs instanceof Tensor ? [inputs] : inputs;
  const createGraph = options.createGraph ?? false;
  const result = native.autogradGrad(
    outs.map((t) => t.handle),
    ins.map((t) => t.handle),
    options.gradOutputs ? options.gradOutputs.map((t) => t.handle) : null,
    createGraph,
    options.retainGraph ?? createGraph,
    options.allowUnused ?? false,
  ) as (NativeTensor | null)[];
  return result.map((h) => (h === null ? null : wrap(h)));
}

// ---------------------------------------------------------------------------------------------
// Randomness

/** Seeds libtorch's global generator (CPU and, where present, CUDA). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** An explicit CPU random-number generator whose state can be saved and restored. */
export class Generator {
  readonly native: NativeGenerator;
  constructor(seed: number) {
    this.native = new native.Generator(seed);
  }
  getState(): Uint8Array {
    return this.native.getState();
  }
  setState(state: Uint8Array): void {
    this.native.setState(state);
  }
}

// ---------------------------------------------------------------------------------------------
// Runtime

export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`thread count must be a positive integer, found ${threads}`);
  }
  native.setNumThreads(threads);
}
export function getNumThreads(): number {
  return native.getNumThreads() as number;
}
export function cudaAvailable(): boolean {
  return native.cudaAvailable() as boolean;
}
export function torchVersion(): string {
  return native.version() as string;
}
