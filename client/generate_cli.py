"""`lstmserve generate`: text from a character model (its labels are its characters), or steps from
any model whose outputs can be its next input, generated on the server and printed as they come."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cli import InputFileError, add_connection_flags, connect, load_sequence
from .generation import GeneratedStep, choices_of
from .messages import ModelInfo
from .state import State


def add_generate(commands) -> None:
    parser = commands.add_parser(
        "generate",
        help="generate on the server from a prompt",
        description="Run a prompt, then let the server generate up to --steps steps, each fed the step "
        "before's choice: text for a model whose labels are characters (--prompt), or any model from a "
        ".npy prompt (--input; --value feeds the outputs themselves back, for a forecaster).",
    )
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--version", type=int, default=0, help="model version (default: the newest)")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="text, for a model whose labels are single characters")
    prompt.add_argument("--input", help=".npy prompt: (batch, time, features) or (time, features)")
    parser.add_argument("--steps", type=int, default=200, help="most steps to generate (default 200)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sample (default 0)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest only (0: all)")
    parser.add_argument("--seed", type=int, help="the sampler's seed, for a repeatable run")
    parser.add_argument("--stop", default="", help="characters that end the text (with --prompt)")
    parser.add_argument("--value", action="store_true", help="feed the outputs back, not a one-hot choice")
    parser.add_argument("--output", help="write each step's logits (and choices) and the final state to .npz")
    add_connection_flags(parser)
    parser.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.model(args.model, args.version)
        alphabet = list(info.labels)
        x, stop = _prompt(args, info) if args.prompt is not None else (load_sequence(Path(args.input)), [])
        started = time.perf_counter()
        try:  # the request is made here: --seed, --steps or --top-k out of the wire's range
            generation = client.generate(
                args.model,
                x,
                max_steps=args.steps,
                version=args.version,
                temperature=args.temperature,
                top_k=args.top_k,
                seed=args.seed,
                stop_classes=stop,
                feedback="value" if args.value else "choice",
                timeout=max(60.0, args.steps * 0.05),
            )
        except ValueError as exc:
            raise InputFileError(str(exc)) from None
        if args.prompt is not None:
            sys.stdout.write(args.prompt)
        steps = []
        for step in generation:
            steps.append(step)
            if args.prompt is not None and step.choices is not None and step.choices[0] >= 0:
                sys.stdout.write(alphabet[step.choices[0]])
                sys.stdout.flush()
        seconds = time.perf_counter() - started
    print()
    print(
        f"{info.name} v{info.version}: {len(steps)} steps generated in {seconds:.2f} s "
        f"({len(steps) / max(seconds, 1e-9):.0f} steps/s; seed {generation.seed})",
        file=sys.stderr,
    )
    if args.output:
        _write_steps(args.output, steps, generation.state)
    return 0


def _prompt(args: argparse.Namespace, info: ModelInfo) -> tuple[np.ndarray, list[int]]:
    """--prompt as one-hot steps of the model's single-character labels, (1, time, input_size), and
    the classes of --stop's characters."""
    alphabet = list(info.labels)
    if not alphabet or any(len(label) != 1 for label in alphabet):
        raise InputFileError(f"{info.name} has no single-character labels: give --input instead")
    unknown = sorted({char for char in args.prompt if char not in alphabet})
    if unknown or not args.prompt:
        raise InputFileError(f"--prompt must be characters of {info.name}'s alphabet; not in it: {unknown}")
    x = np.zeros((1, len(args.prompt), info.input_size), np.float32)
    x[0, np.arange(len(args.prompt)), [alphabet.index(char) for char in args.prompt]] = 1
    return x, [alphabet.index(char) for char in args.stop if char in alphabet]


def _write_steps(path: str, steps: list[GeneratedStep], state: State | None) -> None:
    """`lstmserve generate --output`: each step's logits (and choices), and the final state."""
    arrays: dict[str, Any] = {"logits": np.stack([step.logits for step in steps], axis=1)}
    if steps and steps[0].choices is not None:
        arrays["choices"] = choices_of(steps)
    assert state is not None
    for layer, (c, h) in enumerate(state.layers):
        arrays[f"final_c_{layer}"], arrays[f"final_h_{layer}"] = c, h
    np.savez(path, **arrays)
    print(f"wrote {path}", file=sys.stderr)
