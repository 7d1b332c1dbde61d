"""Read the IDX files MNIST ships in (plain or gzipped), refusing anything malformed by name."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import DataError

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/ describes the format).
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one IDX file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:  # gzip raises these on a damaged or cut-off archive
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise DataError(f"{path}: truncated: header says {shape} ({expected} bytes of data), found {found}")
    if found > expected:
        raise DataError(f"{path}: {found - expected} bytes after the {shape} array: malformed")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(folder: Path, stem: str) -> Path | None:
    """The file for one of MNIST's standard names, in any of the spellings it is distributed under."""
    kind, rest = stem.split("-", 1)  # "train-images-idx3-ubyte" -> "train", "images-idx3-ubyte"
    part, idx_ubyte = rest.split("-", 1)
    for name in (stem, f"{kind}-{part}.{idx_ubyte}"):
        for suffix in ("", ".gz"):
            path = folder / (name + suffix)
            if path.is_file():
                return path
    return None
