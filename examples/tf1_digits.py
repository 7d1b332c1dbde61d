"""A TensorFlow 1 tutorial's model: MultiRNNCell of BasicLSTMCell(forget_bias=1.0) under dynamic_rnn,
trained briefly on scikit-learn's digits (each 8x8 image read row by row: 8 steps of 8 features) and
saved with tf.train.Saver. Also writes TF's own logits for some held-out digits, to compare with what
lstmserve serves after `lstmserve import` (docs/bring-your-model.md).

    python examples/tf1_digits.py --out tf1-digits        # about 5 s on 2 cores
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TF 2.16+: the TF1 cells live in tf_keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

tf1 = tf.compat.v1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tf1-digits", help="folder for model.ckpt and tf_predictions.npz")
    parser.add_argument("--steps", type=int, default=400, help="training steps of 64 digits")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="hidden size per layer")
    args = parser.parse_args()

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (n, 8 rows, 8 columns): rows are time steps
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    train, test = order[:1500], order[1500:]

    random.seed(0)  # tf_keras draws the cells' initializer seeds from Python's own generator
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, [None, None, 8], name="x")
        lengths = tf1.placeholder(tf.int32, [None], name="lengths")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        cell = tf1.nn.rnn_cell.MultiRNNCell(
            [tf1.nn.rnn_cell.BasicLSTMCell(size, forget_bias=1.0) for size in args.hidden]
        )
        _, state = tf1.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tf.float32)
        with tf1.variable_scope("softmax"):
            kernel = tf1.get_variable("kernel", [args.hidden[-1], 10])
            bias = tf1.get_variable("bias", [10], initializer=tf1.zeros_initializer())
        logits = tf.matmul(state[-1].h, kernel) + bias  # from the top layer's final h
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = tf1.train.AdamOptimizer(0.01).minimize(loss)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        saver = tf1.train.Saver()

        # One thread each: TF's CPU kernels then add in one order, and a run repeats to the bit.
        single = tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with tf1.Session(graph=graph, config=single) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(args.steps):
                batch = rng.choice(train, 64)
                session.run(step, {x: images[batch], lengths: np.full(64, 8), labels: digits.target[batch]})
            feed = {x: images[test], lengths: np.full(len(test), 8), labels: digits.target[test]}
            print(f"held-out accuracy {100 * session.run(accuracy, feed):.1f}% on {len(test)} digits")
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            print("saved", saver.save(session, str(out / "model.ckpt")))
            shown = test[:32]
            tf_logits = session.run(logits, {x: images[shown], lengths: np.full(len(shown), 8)})
            np.savez(
                out / "tf_predictions.npz",
                images=images[shown],
                labels=digits.target[shown],
                logits=tf_logits,
            )


if __name__ == "__main__":
    main()
