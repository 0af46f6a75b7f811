"""The predictor-corrector sampling loop of caloscore (src/score/pcSampler.ts, subVP SDE) in
PyTorch, on the U-Net of bench/unet_reference.py, for side-by-side timing with bench/sample.ts.
Run with Debian's /usr/bin/python3 (torch 1.13).

Times the first `--timed` steps of a `--total`-step schedule (each step: one no-grad network
evaluation, a Langevin corrector step and an Euler-Maruyama predictor step) and prints one JSON
object with the time per step, the parameter count and the FLOPs of one network evaluation
(2 x multiply-adds of every convolution and linear layer, counted with forward hooks).

  /usr/bin/python3 bench/sample_reference.py --config '{"dims":1,...}' --batch 100 --total 100 --timed 2
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_reference import UNet  # noqa: E402

BETA_MIN, BETA_MAX = 0.1, 20.0
TIME_MIN = 1e-3


def twice_log_mean(t):
    return -0.5 * t * t * (BETA_MAX - BETA_MIN) - t * BETA_MIN


def beta(t):
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def marginal_std(t):
    return -math.expm1(twice_log_mean(t))


def diffusion_squared(t):
    return beta(t) * -math.expm1(2 * twice_log_mean(t))


def count_flops(model, x, t, condition):
    """FLOPs of one forward pass: 2 per multiply-add of the convolutions and linear layers."""
    total = [0]

    def conv_hook(module, inputs, output):
        kernel = math.prod(module.kernel_size)
        total[0] += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    def linear_hook(module, inputs, output):
        total[0] += 2 * output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv3d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(x, t, condition)
    for handle in handles:
        handle.remove()
    return total[0]


def pc_steps(model, x, condition, grid, first, count, snr, generator):
    """Runs steps first .. first + count - 1 of the schedule `grid` on x and returns x."""
    batch = x.shape[0]
    for i in range(first, first + count):
        t = grid[i]
        dt = t - grid[i + 1]
        time_tensor = torch.full((batch,), t)
        score = model(x, time_tensor, condition) / marginal_std(t)

        noise = torch.randn(x.shape, generator=generator)
        ratio = snr * noise.reshape(batch, -1).norm(dim=1).mean() / score.reshape(batch, -1).norm(dim=1).mean()
        eps = 2 * (1 - beta(t) * dt) * ratio * ratio
        x = x + eps * score + torch.sqrt(2 * eps) * noise

        g2 = diffusion_squared(t)
        drift = -0.5 * beta(t) * x - g2 * score
        x = x - drift * dt + math.sqrt(g2 * dt) * torch.randn(x.shape, generator=generator)
    return x


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="U-Net configuration as JSON (UNetConfig of src/score/unet.ts)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--total", type=int, required=True, help="steps of the full schedule")
    parser.add_argument("--timed", type=int, default=2, help="steps timed, from the start of the schedule")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--snr", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.warmup + args.timed > args.total:
        parser.error(f"--warmup {args.warmup} plus --timed {args.timed} exceed the {args.total} steps of the schedule")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = json.loads(args.config)
    model = UNet(config)
    model.eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((args.batch, *config["inputShape"]), generator=generator)
    condition = torch.rand(args.batch, generator=generator)
    grid = [1 - i * (1 - TIME_MIN) / args.total for i in range(args.total + 1)]
    flops = count_flops(model, x, torch.full((args.batch,), 0.5), condition)

    with torch.no_grad():
        x = pc_steps(model, x, condition, grid, 0, args.warmup, args.snr, generator)
        start = time.perf_counter()
        x = pc_steps(model, x, condition, grid, args.warmup, args.timed, args.snr, generator)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "step_ms": 1000 * seconds / args.timed,
        "timed_steps": args.timed,
        "flops_per_evaluation": flops,
        "parameters": sum(p.numel() for p in model.parameters()),
        "finite": bool(torch.isfinite(x).all()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
