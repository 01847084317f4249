"""A persistent compilation cache that users get without configuring anything.

XLA compiles each of jaxem's programs the first time it meets a new shape, in
every new process. JAX can keep compiled programs on disk
(``jax_compilation_cache_dir``) so a second process starts warm, but only when
told where. The entry points that compile (``jaxem.fit``, the inference
helpers, the estimators, the command line) call :func:`enable` on their first
call (never on import), which points JAX at a folder in the user's cache
directory, unless:

- the environment sets ``JAXEM_NO_CACHE`` (to anything but ``""`` or ``"0"``);
- the user configured a cache already (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config.update("jax_compilation_cache_dir", ...)``), or turned JAX's
  cache off (``jax_enable_compilation_cache=False``); theirs is kept.

When it does enable the cache it also lowers JAX's thresholds (at their
defaults only) so that programs taking longer than ``MIN_COMPILE_TIME_SECS``
to compile are kept: jaxem's first fit is many programs of a fraction of a
second each, all below JAX's default of one second.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import jax

ENV_DISABLE = "JAXEM_NO_CACHE"
"""Environment variable that turns jaxem's default cache off."""

MIN_COMPILE_TIME_SECS = 0.0
"""Programs compiling for longer than this are cached (JAX's default: 1 s)."""

MAX_SIZE_BYTES = 1 << 30
"""The folder is kept below this size, least recently used entries first (when
the ``filelock`` package, which JAX needs for that, is installed)."""

_state = {"checked": False, "path": None}


def default_dir() -> Path:
    """The folder jaxem caches compiled programs in, per the platform.

    ``$XDG_CACHE_HOME/jaxem/xla`` (default ``~/.cache/jaxem/xla``) on Linux,
    ``~/Library/Caches/jaxem/xla`` on macOS, ``%LOCALAPPDATA%\\jaxem\\xla`` on
    Windows.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxem" / "xla"


def _user_configured() -> bool:
    return bool(
        os.environ.get("JAX_COMPILATION_CACHE_DIR")
        or jax.config.jax_compilation_cache_dir
        or not jax.config.jax_enable_compilation_cache
    )


def enable() -> str | None:
    """Turn on the persistent cache in ``default_dir()`` if nobody else did.

    Cheap after the first call (it decides once per process).

    Returns:
        The folder jaxem set, or None when it set nothing (turned off by
        ``JAXEM_NO_CACHE``, configured by the user, or not writable).
    """
    if _state["checked"]:
        return _state["path"]
    _state["checked"] = True
    if os.environ.get(ENV_DISABLE, "") not in ("", "0") or _user_configured():
        return None
    path = default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    defaults = {
        "jax_persistent_cache_min_compile_time_secs": (1.0, MIN_COMPILE_TIME_SECS)
    }
    if importlib.util.find_spec("filelock") is not None:
        defaults["jax_compilation_cache_max_size"] = (-1, MAX_SIZE_BYTES)
    for name, (default, value) in defaults.items():
        if getattr(jax.config, name) == default:
            jax.config.update(name, value)
    jax.config.update("jax_compilation_cache_dir", str(path))
    _state["path"] = str(path)
    return _state["path"]
