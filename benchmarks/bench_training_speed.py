"""Training speed: windows per second of one AGAD step (Algorithm 1) for the 1D and 2D defaults.

Builds G and D exactly as AGAD.fit does for a window shape, then times ``AGADTrainer.step``
on random batches after a warm-up. Run it from another checkout with
``PYTHONPATH=/path/to/checkout`` to compare versions on the same machine, in the same
minute (the machine's load moves these figures more than most code changes do).

usage: nice python benchmarks/bench_training_speed.py [--threads 1] [--channels-last] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from agad_stream.batchnorm import add_auxiliary_batchnorms
from agad_stream.generators import build_generator
from agad_stream.networks import Discriminator
from agad_stream.training import AGADTrainer, TrainingConfig, init_weights

#: (name, window shape, widths, latent size, batch): AGAD's auto choices for small data sets
CASES = [
    ("1d-ecg-beat", (1, 144), (32, 64, 128), 18, 64),
    ("2d-digits-8x8", (1, 8, 8), (32, 64, 128), 16, 32),
    ("2d-fmnist-28x28", (1, 28, 28), (32, 64, 128), 98, 64),
]


def steps_per_second(shape, channels, latent_dim, batch, steps: int, channels_last: bool, compiled: bool) -> float:
    ndim = len(shape) - 1
    G = add_auxiliary_batchnorms(build_generator("naive", ndim, shape[0], shape[1:], channels=channels, latent_dim=latent_dim))
    D = add_auxiliary_batchnorms(Discriminator(ndim, shape[0], shape[1:], channels))
    init_weights(G)
    init_weights(D)
    x = torch.randn(batch, *shape)
    if channels_last and ndim == 2:
        G, D, x = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    trainer = AGADTrainer(G, D, TrainingConfig())
    step = torch.compile(trainer.step) if compiled else trainer.step
    for _ in range(5):
        step(x)
    started = time.perf_counter()
    for _ in range(steps):
        step(x)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--channels-last", action="store_true", help="2D networks and inputs in channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for name, shape, channels, latent_dim, batch in CASES:
        rate = steps_per_second(shape, channels, latent_dim, batch, args.steps, args.channels_last, args.compile)
        results[name] = {"steps_per_s": rate, "windows_per_s": rate * batch, "batch": batch}
        print(f"{name}: {rate * batch:.0f} windows/s ({1000 / rate:.1f} ms per step of {batch})", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, {args.threads} thread(s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results, "load_average": os.getloadavg()[0]}, f, indent=2)


if __name__ == "__main__":
    main()
