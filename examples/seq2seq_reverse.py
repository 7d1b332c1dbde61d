"""A seq2seq model as TensorFlow 1's basic_rnn_seq2seq builds it: an encoder LSTM reads a sequence of
digits, and a decoder LSTM starts from the encoder's final state and writes the digits reversed, fed
its previous digit at each step. Trained here on generated sequences, exported as two models (the
decoder declared to take the encoder's state), then, with --address, served: the encoder's state goes
from one model to the other in the client, and the server generates the reversed digits greedily.

    python examples/seq2seq_reverse.py --repository models        # trains (about 10 s), exports
    lstmserve serve --repository models                          # in another terminal
    python examples/seq2seq_reverse.py --repository models --address 127.0.0.1:50051 --serve-only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstmserve.export.publish import publish
from lstmserve.export.settings import ExportSettings
from lstmserve.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lstmserve.model.config import LSTMConfig
from lstmserve.model.stack import LSTMStack

DIGITS, GO = 10, 10  # the decoder's first input is GO, a class of its own
LENGTH = 6


def batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    digits = rng.integers(0, DIGITS, (n, LENGTH))
    return digits, digits[:, ::-1].copy()


def one_hot(ids: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((*ids.shape, size), np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def decoder_inputs(target: np.ndarray) -> np.ndarray:
    """Teacher forcing: GO, then the target shifted by one."""
    return one_hot(np.concatenate([np.full((len(target), 1), GO), target[:, :-1]], axis=1), DIGITS + 1)


def train(steps: int, hidden: int, seed: int) -> tuple[LSTMStack, LSTMStack]:
    torch.manual_seed(seed)
    encoder = LSTMStack(LSTMConfig(input_size=DIGITS, hidden_sizes=(hidden,)))
    decoder = LSTMStack(
        LSTMConfig(
            input_size=DIGITS + 1,
            hidden_sizes=(hidden,),
            head="per_step",
            num_outputs=DIGITS + 1,
            labels=tuple("0123456789") + ("<go>",),
        )
    )
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        source, target = batch(rng, 128)
        state = encoder(torch.from_numpy(one_hot(source, DIGITS))).state
        logits = decoder(torch.from_numpy(decoder_inputs(target)), state).logits
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, DIGITS + 1), torch.from_numpy(target).reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return encoder.eval(), decoder.eval()


@torch.no_grad()
def greedy(encoder: LSTMStack, decoder: LSTMStack, source: np.ndarray) -> np.ndarray:
    """PyTorch's own greedy decoding: each step fed the digit chosen at the step before."""
    state = encoder(torch.from_numpy(one_hot(source, DIGITS))).state
    x, out = one_hot(np.full((len(source), 1), GO), DIGITS + 1), []
    for _ in range(LENGTH):
        result = decoder(torch.from_numpy(x), state)
        choice = result.logits[:, -1].argmax(-1).numpy()
        out.append(choice)
        state, x = result.state, one_hot(choice[:, None], DIGITS + 1)
    return np.stack(out, axis=1)


def served(address: str, source: np.ndarray) -> np.ndarray:
    from lstmserve.client import Client
    from lstmserve.client.generation import choices_of

    with Client(address) as client:
        encoded = client.infer("encoder", one_hot(source, DIGITS))  # its final state: the handoff
        go = one_hot(np.full((len(source), 1), GO), DIGITS + 1)
        generation = client.generate("decoder", go, max_steps=LENGTH, state=encoded.state)
        return choices_of(generation.steps())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default="models")
    parser.add_argument("--checkpoints", default="checkpoints", help="where the two checkpoints go")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of 128 sequences")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--address", help="a server of --repository: compare its answers with PyTorch's")
    parser.add_argument("--serve-only", action="store_true", help="use the checkpoints trained before")
    args = parser.parse_args()

    folder = Path(args.checkpoints)
    if args.serve_only:
        encoder = load_checkpoint(folder / "seq2seq-encoder.pt").model
        decoder = load_checkpoint(folder / "seq2seq-decoder.pt").model
    else:
        encoder, decoder = train(args.steps, args.hidden, seed=0)
        for name, stack in (("encoder", encoder), ("decoder", decoder)):
            save_checkpoint(folder / f"seq2seq-{name}.pt", Checkpoint(stack))
        publish(folder / "seq2seq-encoder.pt", ExportSettings("encoder", args.repository), force=True)
        publish(
            folder / "seq2seq-decoder.pt",
            ExportSettings("decoder", args.repository, accepts_state_from=("encoder",)),
            force=True,
        )
        print(f"exported encoder and decoder (accepts the encoder's state) into {args.repository}")

    source, target = batch(np.random.default_rng(12345), 1000)  # held out: another seed
    mine = greedy(encoder, decoder, source)
    print(
        f"PyTorch: {100 * (mine == target).all(axis=1).mean():.1f}% of 1000 held-out sequences reversed "
        f"exactly ({100 * (mine == target).mean():.1f}% of digits)"
    )
    if args.address:
        theirs = served(args.address, source)
        print(
            f"lstmserve: {100 * (theirs == target).all(axis=1).mean():.1f}% reversed exactly; "
            f"{int((theirs == mine).all(axis=1).sum())}/1000 sequences equal PyTorch's"
        )


if __name__ == "__main__":
    main()
