"""A forecaster served: `lstmserve train --dataset sines` learns sensor-like series (sums of sines
with noise) with a regression head; here the server forecasts each held-out series `--horizon` steps
ahead from its first steps, each forecast step fed back as the next input (Generate with VALUE
feedback), and the error is set against the naive forecast that the last value stays.

    lstmserve train --dataset sines --hidden-sizes 32 --out checkpoints/sines.pt
    lstmserve export checkpoints/sines.pt --name sines
    lstmserve serve                                            # in another terminal
    python examples/forecast.py --address 127.0.0.1:50051
"""

from __future__ import annotations

import argparse

import numpy as np

from lstmserve.client import Client
from lstmserve.model.generated import sines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--model", default="sines")
    parser.add_argument("--history", type=int, default=50, help="steps seen before forecasting")
    parser.add_argument("--horizon", type=int, default=20, help="steps forecast")
    args = parser.parse_args()

    inputs, targets = sines(seed=99)  # series the model never saw (it trained on seed 0's)
    series = np.concatenate([inputs, targets[:, -1:]], axis=1)[:200]  # (200, 81, 1)
    history, future = series[:, : args.history], series[:, args.history : args.history + args.horizon]
    with Client(args.address, timeout=120) as client:
        generation = client.generate(args.model, history, max_steps=args.horizon, feedback="value")
        forecast = np.stack([step.logits for step in generation.steps()], axis=1)  # (200, horizon, 1)
    naive = np.repeat(history[:, -1:], args.horizon, axis=1)
    model_mse = ((forecast - future) ** 2).mean(axis=(0, 2))
    naive_mse = ((naive - future) ** 2).mean(axis=(0, 2))
    print(f"{len(series)} held-out series, {args.history} steps seen, {args.horizon} forecast on the server")
    print(
        f"  mean squared error, all {args.horizon} steps: model {model_mse.mean():.4f}, "
        f"last value {naive_mse.mean():.4f} ({naive_mse.mean() / model_mse.mean():.1f}x)"
    )
    for step in (1, 5, 10, args.horizon):
        if step <= args.horizon:
            print(f"  step {step:2d}: model {model_mse[step - 1]:.4f}, last value {naive_mse[step - 1]:.4f}")


if __name__ == "__main__":
    main()
