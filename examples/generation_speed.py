"""Characters per second from a running server: generated there (`client.generate`, one call) against
the client-side loop (one `infer` call per character, the state carried by the client), greedy, the
same prompt, rounds interleaved; the median of each and their ratio.

    python examples/generation_speed.py --model text --address 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lstmserve.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="text")
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with Client(args.address, timeout=120, coalesce=False) as client:
        size = client.model(args.model).input_size
        prompt = np.zeros((1, 1, size), np.float32)
        prompt[0, 0, 1] = 1  # any one-hot first character
        server, local, same = [], [], True
        for _ in range(args.rounds):
            started = time.perf_counter()
            generated = client.generate(args.model, prompt, max_steps=args.steps).steps()
            server.append(args.steps / (time.perf_counter() - started))

            started = time.perf_counter()
            result = client.infer(args.model, prompt)
            chosen = []
            for _ in range(args.steps - 1):
                choice = int(result.logits[0, -1].argmax())
                chosen.append(choice)
                x = np.zeros((1, 1, size), np.float32)
                x[0, 0, choice] = 1
                result = client.infer(args.model, x, state=result.state)
            chosen.append(int(result.logits[0, -1].argmax()))
            local.append(args.steps / (time.perf_counter() - started))
            same &= chosen == [int(step.choices[0]) for step in generated]
    print(f"{args.model}: {args.steps} characters, greedy, {args.rounds} rounds interleaved")
    print(f"  generated on the server: {statistics.median(server):8.0f} chars/s (median)")
    print(f"  client-side loop:        {statistics.median(local):8.0f} chars/s (median)")
    print(f"  ratio {statistics.median(server) / statistics.median(local):.1f}x; same characters: {same}")


if __name__ == "__main__":
    main()
