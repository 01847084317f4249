"""Chunk sources: the batches one pass of a streamed fit reads.

A source is an array or ``numpy.memmap`` or ``.npy`` path cut into
``chunk_rows`` rows, a list of chunks, or a function returning an iterable of
chunks; :func:`iterate_chunks` turns any of them into :class:`Batch` tuples,
reading files and memory maps with plain reads (see :func:`read_rows`).
"""

from __future__ import annotations

import mmap
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np


class Batch(NamedTuple):
    """One chunk of data with optional weights, lengths and latent evidence.

    A chunk source may yield plain data (an array or pytree of arrays with
    leading axis N, or (B, T) for chains) or a ``Batch`` when the chunk has
    weights, sequence lengths or evidence.

    Attributes:
        data: (N, ...) observations or (B, T, ...) sequences.
        weights: None or (N,) (or (B,)) non-negative weights.
        lengths: None or (B,) valid sequence lengths (chains only).
        evidence: None or the chunk's ``latent_evidence`` (partial labels):
            (N, K) for a ``Categorical`` latent, (B, T, K) for a
            ``MarkovChain``, as ``jaxem.fit``'s; every chunk or none has it.
    """

    data: Any
    weights: Any = None
    lengths: Any = None
    evidence: Any = None


ALIGNMENT = 64
"""Byte alignment of the chunks read from files: a CPU device then uses a
numpy chunk in place (``jax.device_put`` without a copy)."""


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-ordered array whose data start on a
    :data:`ALIGNMENT`-byte boundary.

    Examples:
        >>> aligned_empty((3, 5), np.float32).ctypes.data % ALIGNMENT
        0
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _check_npy(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"chunks: can only read .npy files, got {str(path)!r}")
    return path


def _load_path(path) -> np.ndarray:
    return np.load(_check_npy(path), allow_pickle=False)


def _npy_chunks(path, chunk_rows: int) -> Iterator[np.ndarray]:
    """Read a ``.npy`` file ``chunk_rows`` rows at a time with plain reads.

    Plain reads, not a memory map: pages of a mapped file stay resident in the
    process until the kernel reclaims them, so a pass over a mapped file grows
    the resident set to the whole file; reads keep it at one chunk.
    """
    with open(_check_npy(path), "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        if fortran or dtype.hasobject or not shape:
            raise ValueError(
                f"chunks: {str(path)!r} must hold a C-ordered numeric array with "
                "a leading row axis"
            )
        for start in range(0, shape[0], chunk_rows):
            rows = min(chunk_rows, shape[0] - start)
            chunk = aligned_empty((rows,) + tuple(shape[1:]), dtype)
            if f.readinto(memoryview(chunk.reshape(-1).view(np.uint8))) != chunk.nbytes:
                raise ValueError(f"chunks: {str(path)!r} is truncated")
            yield chunk


def _mapped_file(array) -> bool:
    """True for a whole C-ordered ``numpy.memmap`` (not a view of one) whose
    file can be read directly."""
    return (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and array.flags.c_contiguous
        and isinstance(getattr(array, "filename", None), str | os.PathLike)
    )


def read_rows(array, start: int, stop: int) -> np.ndarray:
    """A copy of ``array[start:stop]``; from a memory map, by a plain read.

    A slice of a memory-mapped array would map its pages into the process
    (resident until the kernel reclaims them, so a pass over the file grows
    the resident set towards the file's size); reading the rows' bytes from
    the file with ``os.pread`` into a fresh array keeps only the copy. The
    array is 64-byte aligned, so a CPU device uses it without another copy.
    """
    if not _mapped_file(array):
        return np.array(array[start:stop])
    row = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    out = aligned_empty((stop - start,) + array.shape[1:], array.dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    with open(array.filename, "rb") as f:
        done, offset = 0, array.offset + start * row
        while done < view.nbytes:
            got = os.preadv(f.fileno(), [view[done:]], offset + done)
            if got <= 0:
                raise ValueError(f"chunks: {str(array.filename)!r} is truncated")
            done += got
    return out


def read_indexed_rows(array, index: np.ndarray) -> np.ndarray:
    """A copy of ``array[index]`` (sorted row indices); from a memory map, by
    plain reads of those rows.

    Indexing a memory map would map every page it touches into the process:
    a sample of rows spread evenly over a file touches most of its pages, and
    they stay resident (a 65,536-row sample of a 320 MB file mapped 305 MB).
    """
    if not _mapped_file(array):
        return np.asarray(array[index])
    row = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    out = aligned_empty((len(index),) + array.shape[1:], array.dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    with open(array.filename, "rb") as f:
        for i, r in enumerate(np.asarray(index, np.int64)):
            piece = view[i * row : (i + 1) * row]
            if os.preadv(f.fileno(), [piece], array.offset + int(r) * row) != row:
                raise ValueError(f"chunks: {str(array.filename)!r} is truncated")
    return out


def _array_chunks(array, chunk_rows: int) -> Iterator[Any]:
    for start in range(0, array.shape[0], chunk_rows):
        yield read_rows(array, start, min(start + chunk_rows, array.shape[0]))


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray | jax.Array)


def iterate_chunks(chunks: Any, chunk_rows: int | None = None) -> Iterator[Batch]:
    """One pass over a chunk source, as ``Batch``es of host or device arrays.

    Args:
        chunks: a chunk source: an array (a ``numpy.memmap`` or
            ``np.load(path, mmap_mode="r")`` is read chunk by chunk, never
            whole) or the path of a ``.npy`` file, both cut into ``chunk_rows``
            rows; a list or tuple of chunks (arrays, ``Batch``es or ``.npy``
            paths); or a function of no arguments returning an iterable of
            chunks (a generator factory: called once per pass).
        chunk_rows: rows per chunk when ``chunks`` is one array or path.

    Yields:
        ``Batch`` tuples.
    """
    if isinstance(chunks, str | os.PathLike):
        if chunk_rows is None:
            raise ValueError("chunk_rows: needed to cut one file into chunks")
        items: Iterable[Any] = _npy_chunks(chunks, chunk_rows)
    elif _is_array(chunks):
        if chunk_rows is None:
            raise ValueError("chunk_rows: needed to cut one array into chunks")
        items = _array_chunks(chunks, chunk_rows)
    elif isinstance(chunks, list | tuple):
        items = chunks
    elif callable(chunks):
        items = chunks()
    else:
        raise ValueError(
            "chunks: expected an array, a .npy path, a list of chunks or a function "
            f"returning an iterable of chunks, got {type(chunks).__name__}"
        )
    for item in items:
        if isinstance(item, str | os.PathLike):
            item = _load_path(item)
        yield item if isinstance(item, Batch) else Batch(item)
