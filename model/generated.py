"""Data sets made here, for the generation examples: nothing is downloaded.

- sines: sensor-like series, each a sum of three sines of random frequency, phase and amplitude with
  noise; the target of each step is the next value (a forecaster, trained with a regression head).
- text:  the documentation text that ships with Python itself (`pydoc_data.topics`), lower-cased, as
  windows of characters, one-hot; the target of each step is the next character (a character model).
"""

from __future__ import annotations

import numpy as np

SINES_SERIES, SINES_STEPS = 800, 80
TEXT_WINDOW, TEXT_CHARS = 64, 1_000_000  # all of it (about 465,000 characters)
# The characters the text model knows, the commonest in the documentation; any other becomes a space.
ALPHABET = tuple(" etaisnorlc-\nhdu\"pmfb_.gy*,=w()vx:|k'j>+1q][032;z<4")


def sines(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): (n, time, 1) float32 each; targets[:, t] = the series at t + 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(SINES_STEPS + 1)[None, :, None]
    frequency = rng.uniform(0.02, 0.15, (SINES_SERIES, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, (SINES_SERIES, 1, 3))
    amplitude = rng.uniform(0.2, 1.0, (SINES_SERIES, 1, 3)) / 3
    series = (amplitude * np.sin(2 * np.pi * frequency * t + phase)).sum(axis=2)
    series += rng.normal(0, 0.02, series.shape)
    series = series[:, :, None].astype(np.float32)
    return series[:, :-1], series[:, 1:]


def text() -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): (n, window, len(ALPHABET)) one-hot float32, and (n, window) next-char ids."""
    import pydoc_data.topics

    raw = "".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))
    ids = encode(raw.lower()[:TEXT_CHARS])
    n = (len(ids) - 1) // TEXT_WINDOW
    x = ids[: n * TEXT_WINDOW].reshape(n, TEXT_WINDOW)
    y = ids[1 : n * TEXT_WINDOW + 1].reshape(n, TEXT_WINDOW)
    return one_hot(x), y.astype(np.int64)


def encode(chars: str) -> np.ndarray:
    index = {char: i for i, char in enumerate(ALPHABET)}
    return np.array([index.get(char, 0) for char in chars], dtype=np.int64)


def one_hot(ids: np.ndarray) -> np.ndarray:
    out = np.zeros((*ids.shape, len(ALPHABET)), np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out
