"""Stream the held-out digits that tf1_digits.py saved through a running lstmserve, row by row with
the state carried between calls, and compare the predictions with TensorFlow's own.

    python examples/stream_digits.py tf1-digits/tf_predictions.npz --model tf1digits
"""

from __future__ import annotations

import argparse

import numpy as np

from lstmserve.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="tf_predictions.npz written by tf1_digits.py")
    parser.add_argument("--model", default="tf1digits")
    parser.add_argument("--address", default="127.0.0.1:50051")
    args = parser.parse_args()

    saved = np.load(args.predictions)
    images, tf_logits = saved["images"], saved["logits"]
    with Client(args.address) as client:
        stream = client.stream(args.model)
        for row in range(images.shape[1]):  # one image row per call, all digits side by side
            result = stream.feed(images[:, row : row + 1])
    served = result.logits
    gap = float(np.abs(served - tf_logits).max())
    same = int((served.argmax(1) == tf_logits.argmax(1)).sum())
    print(f"lstmserve: {served.argmax(1).tolist()}")
    print(f"tf:        {tf_logits.argmax(1).tolist()}")
    print(f"labels:    {saved['labels'].tolist()}")
    print(f"{same}/{len(images)} predictions equal TensorFlow's; largest logit gap {gap:.1e}")


if __name__ == "__main__":
    main()
