"""The container of a saved file: a zip of ``.npy`` entries, read without trust.

:func:`write` stores the metadata (UTF-8 JSON, as a ``uint8`` array under
``__jaxem__``) and each array as an uncompressed ``.npy`` entry, exactly what
``np.savez`` writes. :func:`read` parses such a file while assuming nothing of
it: every size is checked against the bytes actually present before anything is
allocated, only plain numeric dtypes are accepted, the JSON is bounded in size
and depth before it is decoded, and every array must match the shape, dtype and
SHA-256 that the metadata records. Any problem is a :class:`FileProblem`
(a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from typing import Any

import numpy as np

FORMAT = "jaxem"
FORMAT_VERSION = 1
META = "__jaxem__"
MAX_METADATA_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_ENTRIES = 10_000

# Numeric dtypes only, either byte order: no objects, strings or records.
_CODES = ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")
_CODES += ("f2", "f4", "f8", "c8", "c16")
DTYPES = frozenset(
    np.dtype(code).newbyteorder(order).str for code in _CODES for order in "<>"
)
_ARRAY_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FileProblem(ValueError):
    """A saved file is corrupted, hostile or not a jaxem file (one line)."""


def digest(a: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a file holding ``meta`` (JSON) and ``arrays``."""
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **{META: blob}, **arrays)
    return buffer.getvalue()


def read(raw: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata and arrays of a file's bytes, after every integrity check.

    Raises:
        FileProblem: the bytes are not an intact jaxem file of a known version.
    """
    if not raw.startswith(b"PK"):
        raise FileProblem(
            "not a jaxem model file (expected an .npz archive written by jaxem.save)"
        )
    entries = _entries(raw)
    if META not in entries:
        raise FileProblem("not a jaxem model file (no metadata entry)")
    meta = parse_json(_npy(entries.pop(META), META, "|u1").tobytes())
    check_header(meta)
    recorded = meta["arrays"]
    if set(recorded) != set(entries):
        raise FileProblem("corrupted: the arrays do not match the metadata")
    arrays = {}
    for key, info in recorded.items():
        a = _npy(entries[key], key, info["dtype"], tuple(info["shape"]))
        if digest(a) != info["sha256"]:
            raise FileProblem(f"array {key}: corrupted (checksum mismatch)")
        arrays[key] = a
    return meta, arrays


def _entries(raw: bytes) -> dict[str, bytes]:
    """Each stored entry's bytes by name (``.npy`` stripped), sizes checked."""
    try:
        # The standard library's zip reader raises a dozen different types on
        # damaged input (BadZipFile, OSError, EOFError, NotImplementedError,
        # RuntimeError, struct.error, ...); for a loader they all mean one thing.
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = zf.infolist()
            _check_entries(infos, len(raw))
            return {info.filename[:-4]: zf.read(info) for info in infos}
    except FileProblem:
        raise
    except Exception as err:  # noqa: BLE001 (see above)
        raise FileProblem(f"truncated or corrupted file ({_brief(err)})") from None


def _check_entries(infos: list[zipfile.ZipInfo], size: int) -> None:
    if len(infos) > MAX_ENTRIES:
        raise FileProblem(f"corrupted: {len(infos)} entries")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise FileProblem("corrupted: an entry name appears twice")
    total = 0
    for info in infos:
        stem = info.filename[:-4]
        if not info.filename.endswith(".npy") or not (
            stem == META or _ARRAY_KEY.fullmatch(stem)
        ):
            raise FileProblem(f"corrupted: unexpected entry {info.filename[:80]!r}")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise FileProblem(
                f"entry {stem}: compressed or encrypted (jaxem.save writes neither)"
            )
        if info.file_size != info.compress_size:
            raise FileProblem(f"entry {stem}: corrupted sizes")
        total += info.file_size
    if total > size:
        raise FileProblem("corrupted: entries larger than the file")


def _npy(data: bytes, key: str, dtype: str, shape: tuple | None = None) -> np.ndarray:
    """The array in one ``.npy`` entry; its header must say ``dtype`` (``shape``)."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        got_shape, fortran, got_dtype = read_header(fp)
    except Exception as err:  # noqa: BLE001 (numpy's header parser, as above)
        raise FileProblem(f"array {key}: corrupted header ({_brief(err)})") from None
    if got_dtype.str != dtype or (shape is not None and got_shape != shape):
        want = f"shape {shape} dtype {dtype}" if shape is not None else dtype
        raise FileProblem(
            f"array {key}: shape {got_shape} dtype {got_dtype} does not match the "
            f"recorded {want}"
        )
    if shape is None and len(got_shape) != 1:
        raise FileProblem(f"array {key}: corrupted (shape {got_shape})")
    count = int(np.prod(got_shape, dtype=object))
    offset = fp.tell()
    if count * got_dtype.itemsize != len(data) - offset:
        raise FileProblem(f"array {key}: its size does not match its shape")
    flat = np.frombuffer(data, dtype=got_dtype, count=count, offset=offset)
    return flat.reshape(got_shape, order="F" if fortran else "C").copy(order="K")


def parse_json(blob: bytes) -> Any:
    """JSON of bounded size and depth, without duplicate keys."""
    if len(blob) > MAX_METADATA_BYTES:
        raise FileProblem(f"metadata of {len(blob)} bytes is too large")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem("corrupted metadata (not UTF-8)") from None
    try:
        # The C parser is linear in the text and guards its own recursion.
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except FileProblem:
        raise
    except RecursionError:
        raise FileProblem(f"metadata nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, or an integer of 4300+ digits
        raise FileProblem(f"corrupted metadata ({_brief(err)})") from None
    if json_depth(value) > MAX_DEPTH:
        raise FileProblem(f"metadata nested deeper than {MAX_DEPTH} levels")
    return value


def json_depth(value: Any) -> int:
    """Deepest nesting of dicts and lists in parsed JSON (no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise FileProblem("corrupted metadata (a key appears twice)")
    return out


def check_header(meta: Any) -> None:
    """Format, version and the array table of the metadata."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileProblem("not a jaxem model file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        saved_by = meta.get("jaxem_version", "?")
        raise FileProblem(
            f"format version {_short(version)} is not supported by jaxem (this "
            f"jaxem reads version {FORMAT_VERSION}); saved by jaxem {_short(saved_by)}"
        )
    recorded = meta.get("arrays")
    if not isinstance(recorded, dict):
        raise FileProblem("corrupted metadata (no array table)")
    for key, info in recorded.items():
        _check_array_info(key, info)


def _check_array_info(key: str, info: Any) -> None:
    if not _ARRAY_KEY.fullmatch(key):
        raise FileProblem(f"corrupted metadata (array name {_short(key)})")
    if not isinstance(info, dict) or set(info) != {"shape", "dtype", "sha256"}:
        raise FileProblem(f"array {key}: corrupted metadata entry")
    shape = info["shape"]
    if not (
        isinstance(shape, list)
        and len(shape) <= 32
        and all(type(n) is int and n >= 0 for n in shape)
    ):
        raise FileProblem(f"array {key}: corrupted shape {_short(shape)}")
    if info["dtype"] not in DTYPES:
        raise FileProblem(f"array {key}: dtype {_short(info['dtype'])} is not numeric")
    if not (isinstance(info["sha256"], str) and _SHA256.fullmatch(info["sha256"])):
        raise FileProblem(f"array {key}: corrupted checksum entry")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _brief(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
