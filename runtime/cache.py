"""The persistent compile cache: object code of compiled programs, on disk, shared
by every process of the user.

NOTE: [What a cache key covers]
A key is looked up *before* any LLVM IR is built (generating it costs tens of
ms, LLVM's optimiser and code generator hundreds). It has two halves,
``<program>-<environment>``:

- program: a SHA-256 of the program text the caller hands in (the compiler
  passes the optimised IR without source locations, plus anything else that
  changes the generated code for the same IR, such as donated buffers);
- environment: a SHA-256 of everything else the object code depends on: the
  entry format version, the target triple, host CPU name and feature string,
  llvmlite and LLVM versions, the numpy data-pointer offset baked into the
  Python wrapper (runtime/pyabi.py), the runtime's own sources, and the
  compiler's ``salt`` (its version, a fingerprint of its code generator and
  the values of the knobs that change generated code).

Keeping the halves apart is what explains a miss: when no entry has the key
but entries for the same program exist, their recorded environments say which
component changed ("compiler: ...a1 -> ...b7").

NOTE: [Entry format and atomic writes]
An entry ``<key>.xo`` is ``MAGIC | u32 header length | u64 payload length |
SHA-256 of header + payload | JSON header | object code``. A reader checks the
magic, the lengths against the file size (truncation) and the checksum
(corruption) before using anything, and deletes an entry that fails: the
program is then recompiled and stored again, never loaded from a bad file.
Writers write a temporary file in the same folder and ``os.replace`` it onto
the entry, so a reader sees either the old entry, the new one or none, even
with several processes compiling the same program at once.

The default folder is ``$XLAC_CACHE_DIR``, else ``$XDG_CACHE_HOME/xla-py``,
else ``~/.cache/xla-py``; ``XLAC_CACHE_DIR=off`` disables the cache.

NOTE: [Installed objects]
Code every program shares (the thread pool, the GEMM kernel library of
compiler/kernel_library.py) is compiled when the package is installed, into
``runtime/_installed/`` next to this file, in the entry format of this cache.
``find_object`` looks there first, read-only, then in the user's cache
(``$XLAC_INSTALLED_OBJECTS`` names another store; ``off``: none, as on a
machine where the install-time build failed). The
keys are made the same way, so an installed object built by another llvmlite
or for another CPU is simply never found, and is compiled (and cached) as
before. ``xlac cache clear`` leaves the installed store alone: it is part of
the installation, as a native extension would be.

NOTE: [Size limit]
The folder holds at most ``$XLAC_CACHE_MAX_MB`` MiB (default 1024; 0 means no
limit). After each store, entries beyond the limit are deleted least recently
used first: a hit touches its entry's mtime, so "oldest mtime" is "longest
unused" whether or not the file system records access times. Eviction only
runs after a store, which follows a compile of tens to hundreds of ms, so the
directory listing it needs costs nothing noticeable.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import struct
import tempfile
import threading
import time
import warnings
from typing import Callable, Sequence

import llvmlite
import llvmlite.binding as llvm

from ir.dtypes import TensorType
from ir.parser import parse_type
from runtime.target import host_target

__all__ = ["CACHE_DIR_ENV", "CACHE_MAX_ENV", "DISABLED_VALUES", "default_max_bytes", "CacheEvent", "CacheStats", "CompileCache",
           "ProgramInfo", "default_cache_dir", "environment", "source_fingerprint", "cache_stats",
           "reset_cache_stats", "cached_object", "find_object", "has_object", "store_object", "installed_cache",
           "INSTALLED_DIR"]

CACHE_DIR_ENV = "XLAC_CACHE_DIR"  # mirrored by compiler/flags.py ("cache_dir")
CACHE_MAX_ENV = "XLAC_CACHE_MAX_MB"  # mirrored by compiler/flags.py ("cache_max_mb")
DEFAULT_MAX_MB = 1024
DISABLED_VALUES = ("off", "0", "none", "false")
FORMAT_VERSION = 1
_MAGIC = b"XLACOBJ1"
_PREFIX = struct.Struct("<8sIQ32s")  # magic, header length, payload length, sha256
_SUFFIX = ".xo"
_RUNTIME_DIR = pathlib.Path(__file__).resolve().parent
INSTALLED_DIR = _RUNTIME_DIR / "_installed"
INSTALLED_ENV = "XLAC_INSTALLED_OBJECTS"


def default_max_bytes() -> int | None:
    """The size limit from ``$XLAC_CACHE_MAX_MB`` (None: no limit)."""
    configured = os.environ.get(CACHE_MAX_ENV, "").strip()
    try:
        megabytes = float(configured) if configured else DEFAULT_MAX_MB
    except ValueError:
        raise ValueError(f"{CACHE_MAX_ENV}={configured!r}: expected a number of MiB "
                         "(0 for no limit)") from None
    if megabytes < 0:
        raise ValueError(f"{CACHE_MAX_ENV}={configured!r}: the limit cannot be negative")
    return int(megabytes * 2 ** 20) if megabytes else None


def default_cache_dir() -> pathlib.Path | None:
    """Where entries go unless told otherwise (None: disabled by ``XLAC_CACHE_DIR=off``)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None:
        return None if configured.strip().lower() in DISABLED_VALUES + ("",) else \
            pathlib.Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "xla-py"


# -- what an entry holds --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    """Everything besides the object code that calling a program needs."""

    name: str
    entry: str
    call_symbol: str
    param_types: tuple[TensorType, ...]
    result_types: tuple[TensorType, ...]
    arena_bytes: int
    takes_objects: bool
    donated: tuple[tuple[int, int], ...] = ()  # (result index, parameter index)
    exports: tuple[str, ...] = ()  # a library's symbols (runtime/libraries.py)
    links: tuple[str, ...] = ()    # the shared libraries a program calls into

    def to_json(self) -> dict:
        return {
            "exports": list(self.exports), "links": list(self.links),
            "name": self.name, "entry": self.entry, "call_symbol": self.call_symbol,
            "param_types": [str(t) for t in self.param_types],
            "result_types": [str(t) for t in self.result_types],
            "arena_bytes": self.arena_bytes, "takes_objects": self.takes_objects,
            "donated": [list(pair) for pair in self.donated],
        }

    @classmethod
    def from_json(cls, data: dict) -> "ProgramInfo":
        return cls(
            name=str(data["name"]), entry=str(data["entry"]), call_symbol=str(data["call_symbol"]),
            param_types=tuple(parse_type(t) for t in data["param_types"]),
            result_types=tuple(parse_type(t) for t in data["result_types"]),
            arena_bytes=int(data["arena_bytes"]), takes_objects=bool(data["takes_objects"]),
            donated=tuple((int(j), int(i)) for j, i in data["donated"]),
            exports=tuple(str(name) for name in data.get("exports", ())),
            links=tuple(str(name) for name in data.get("links", ())),
        )


# -- statistics -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CacheEvent:
    """One lookup: ``outcome`` is "hit", "miss" or "store"; ``reason`` says why a miss."""

    outcome: str
    program: str
    key: str
    reason: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class CacheStats:
    """Process-wide counts of lookups (``runtime.cache_stats()`` returns a copy)."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    errors: int = 0  # entries found unusable (corrupt, truncated, failed to link)
    miss_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    events: list[CacheEvent] = dataclasses.field(default_factory=list)  # the most recent ones

    def __str__(self) -> str:
        lines = [f"compile cache: {self.hits} hit(s), {self.misses} miss(es), "
                 f"{self.stores} store(s), {self.errors} bad entr(ies)"]
        lines += [f"  miss: {reason} (x{count})"
                  for reason, count in self.miss_reasons.most_common()]
        return "\n".join(lines)


_MAX_EVENTS = 200
_stats = CacheStats()
_stats_lock = threading.Lock()


def _record(event: CacheEvent, *, error: bool = False) -> None:
    with _stats_lock:
        if event.outcome == "hit":
            _stats.hits += 1
        elif event.outcome == "miss":
            _stats.misses += 1
            _stats.miss_reasons[_reason_kind(event.reason)] += 1
        elif event.outcome == "store":
            _stats.stores += 1
        _stats.errors += error
        _stats.events.append(event)
        del _stats.events[:-_MAX_EVENTS]


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def cache_stats() -> CacheStats:
    """A snapshot of this process's cache hits, misses (with reasons) and stores."""
    with _stats_lock:
        return CacheStats(_stats.hits, _stats.misses, _stats.stores, _stats.errors,
                          collections.Counter(_stats.miss_reasons), list(_stats.events))


def reset_cache_stats() -> None:
    """Forget the counts (e.g. between benchmark phases)."""
    global _stats
    with _stats_lock:
        _stats = CacheStats()


# -- the environment half of a key ----------------------------------------------------


@functools.cache
def _runtime_fingerprint() -> str:
    """A hash of this package's sources: the wrapper and load path are part of the code."""
    return source_fingerprint([_RUNTIME_DIR])


def source_fingerprint(paths: Sequence[os.PathLike]) -> str:
    """SHA-256 (hex, 16 digits) of the given ``.py`` files and those under the given folders."""
    digest = hashlib.sha256()
    for root in paths:
        root = pathlib.Path(root)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def environment(salt: str = "", data_offset: int | None = None) -> dict[str, str]:
    """The environment half of a key, as named components (see the module notes).

    ``salt`` is the compiler's part, ``data_offset`` the numpy data-pointer
    offset the Python wrapper was built with (None: no wrapper).
    """
    host = host_target()
    return {
        "format": str(FORMAT_VERSION),
        "triple": host.triple,
        "cpu": host.cpu,
        "features": host.features,
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(str(v) for v in llvm.llvm_version_info),
        "numpy_data_offset": str(data_offset),
        "runtime": _runtime_fingerprint(),
        "compiler": salt,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- the cache ------------------------------------------------------------------------


class CompileCache:
    """Object code on disk, keyed by program and environment (see the module notes).

    ``CompileCache(directory)`` uses ``directory`` (created on first store);
    ``CompileCache()`` the default folder (``default_cache_dir()``). A cache
    without a directory (``"off"``, or ``use_default=False``) is disabled:
    every lookup misses with reason "disabled" and nothing is stored.
    ``max_bytes`` bounds the folder's size (default ``default_max_bytes()``;
    0 or None: no limit); see the size-limit note above.
    """

    def __init__(self, directory: os.PathLike | str | None = None, *, use_default: bool = True,
                 max_bytes: int | None | str = "default", read_only: bool = False):
        if directory is None and use_default:
            directory = default_cache_dir()
        elif isinstance(directory, str) and directory.strip().lower() in DISABLED_VALUES + ("",):
            directory = None
        self.directory = pathlib.Path(directory).expanduser() if directory is not None else None
        self.max_bytes = default_max_bytes() if max_bytes == "default" else (max_bytes or None)
        # Read-only (the installed store, [Installed objects]): looked up, never
        # written, touched or pruned.
        self.read_only = read_only

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @staticmethod
    def key(program_text: str, environment: dict[str, str]) -> str:
        """``<program hash>-<environment hash>``; ``environment`` from ``environment()``."""
        environment_hash = _digest(json.dumps(environment, sort_keys=True))
        return f"{_digest(program_text)[:40]}-{environment_hash[:16]}"

    def path(self, key: str) -> pathlib.Path:
        if self.directory is None:
            raise ValueError("the compile cache is disabled")
        return self.directory / f"{key}{_SUFFIX}"

    # -- reading ----------------------------------------------------------------------

    def load(self, key: str, *, program: str = "", environment: dict | None = None
             ) -> tuple[bytes, ProgramInfo] | None:
        """The object code and program info stored under ``key``, or None (a miss,
        recorded with its reason). A bad entry is deleted."""
        start = time.perf_counter()
        if self.directory is None:
            _record(CacheEvent("miss", program, key, "disabled"))
            return None
        path = self.path(key)
        # The installed store is no cache: its loads are neither hits nor misses
        # (``xlac kernels info`` tells whether its library is usable).
        record = _record if not self.read_only else (lambda event, error=False: None)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            record(CacheEvent("miss", program, key, self._why_absent(key, environment)))
            return None
        except OSError as error:
            record(CacheEvent("miss", program, key, f"unreadable: {error}"), error=True)
            return None
        try:
            header, payload = _decode(blob)
            if header.get("key") != key:
                raise _BadEntry(f"bad header: written for key {header.get('key')!r}")
            info = ProgramInfo.from_json(header["program"])
        except (_BadEntry, KeyError, TypeError, ValueError) as error:
            reason = str(error) if isinstance(error, _BadEntry) else f"bad header: {error!r}"
            record(CacheEvent("miss", program, key, reason), error=True)
            self._discard(path)
            return None
        try:
            if not self.read_only:
                os.utime(path)  # most recently used: evicted last (see the size-limit note)
        except OSError:
            pass
        record(CacheEvent("hit", program, key, seconds=time.perf_counter() - start))
        return payload, info

    def _why_absent(self, key: str, environment: dict | None) -> str:
        """"not cached", or which environment component differs from the entries
        stored for the same program."""
        program_hash = key.split("-", 1)[0]
        if environment is not None:
            for other in sorted(self.directory.glob(f"{program_hash}-*{_SUFFIX}")):
                try:
                    header, _ = _decode(other.read_bytes())
                except (OSError, _BadEntry, ValueError):
                    continue
                changed = [
                    f"{name}: {_short(header.get('environment', {}).get(name))} -> {_short(value)}"
                    for name, value in environment.items()
                    if header.get("environment", {}).get(name) != value
                ]
                if changed:
                    return "stale: cached for another " + "; ".join(changed)
        return "not cached"

    def note_unusable(self, key: str, program: str, reason: str) -> None:
        """An entry that decoded but could not be used (e.g. the JIT refused to link
        it): recorded as a miss and deleted, so the next store replaces it."""
        _record(CacheEvent("miss", program, key, f"unusable: {reason}"), error=True)
        if self.directory is not None:
            self._discard(self.path(key))

    # -- writing ----------------------------------------------------------------------

    def store(self, key: str, object_code: bytes, info: ProgramInfo, *,
              environment: dict | None = None) -> pathlib.Path | None:
        """Write an entry atomically; returns its path (None if disabled or the write
        failed: a cache that cannot be written never stops a compile)."""
        if self.directory is None or self.read_only:
            return None
        header = {"key": key, "program": info.to_json(), "environment": environment or {},
                  "created": time.time()}
        blob = _encode(header, object_code)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(temporary, self.path(key))
            except BaseException:
                _unlink(temporary)
                raise
        except OSError as error:
            _record(CacheEvent("miss", info.name, key, f"store failed: {error}"), error=True)
            _warn_unwritable(self.directory, error)
            return None
        _record(CacheEvent("store", info.name, key))
        self.evict(keep=self.path(key))
        return self.path(key)

    # -- housekeeping -----------------------------------------------------------------

    def entries(self) -> list[pathlib.Path]:
        """The entry files, least recently used first."""
        if self.directory is None or not self.directory.is_dir():
            return []
        stamped = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                if not path.name.startswith("."):
                    stamped.append((path.stat().st_mtime, path))
            except OSError:  # deleted by another process meanwhile
                continue
        return [path for _, path in sorted(stamped)]

    def evict(self, keep: pathlib.Path | None = None) -> int:
        """Delete least recently used entries until the folder fits ``max_bytes``
        (never ``keep``, the entry just stored); returns how many were deleted."""
        if self.max_bytes is None:
            return 0
        sized = []
        for path in self.entries():
            try:
                sized.append((path, path.stat().st_size))
            except OSError:  # deleted by another process meanwhile
                continue
        total = sum(size for _, size in sized)
        removed = 0
        for path, size in sized:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            _unlink(path)
            total -= size
            removed += 1
        return removed

    def clear(self) -> int:
        """Delete every entry (and stray temporary files); returns how many entries."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        removed = 0
        for path in self.directory.glob(f"*{_SUFFIX}"):
            removed += not path.name.startswith(".")
            _unlink(path)
        return removed

    def info(self) -> dict:
        """Folder, entry count and total size: what ``xlac cache info`` prints."""
        entries = self.entries()
        return {
            "directory": str(self.directory) if self.directory is not None else None,
            "enabled": self.enabled,
            "entries": len(entries),
            "bytes": sum(p.stat().st_size for p in entries),
            "max_bytes": self.max_bytes,
        }

    def describe(self, path: pathlib.Path) -> dict:
        """The header of one entry (raises ValueError if it is corrupt)."""
        header, payload = _decode(path.read_bytes())
        return {**header, "object_bytes": len(payload)}

    def _discard(self, path: pathlib.Path) -> None:
        if not self.read_only:
            _unlink(path)

    def __repr__(self) -> str:
        return f"CompileCache({str(self.directory) if self.directory else 'disabled'})"


def installed_cache() -> CompileCache:
    """The read-only store of objects built when the package was installed
    (see [Installed objects]): ``$XLAC_INSTALLED_OBJECTS`` if set ('off': none),
    else ``runtime/_installed``."""
    configured = os.environ.get(INSTALLED_ENV)
    directory = INSTALLED_DIR if configured is None else configured
    return CompileCache(directory, use_default=False, max_bytes=None, read_only=True)


def _stored(text: str, salt: str, cache: CompileCache | None):
    """(store, key, environment) of each store holding an entry for ``text``:
    the installed one first, then ``cache`` (default: the user's)."""
    env = environment(salt)
    key = CompileCache.key(text, env)
    for store in (installed_cache(), CompileCache() if cache is None else cache):
        if store.enabled and store.path(key).is_file():
            yield store, key, env


def find_object(text: str, *, name: str, salt: str = "", cache: CompileCache | None = None
                ) -> tuple[bytes, ProgramInfo] | None:
    """The object code (and info) stored for ``text``: from the installed store,
    else the disk cache (``cache``, default the user's); None if neither has it.
    Only a load from the user's cache counts in ``cache_stats``; an absent entry
    is no miss (the caller compiles it, or goes without)."""
    for store, key, env in _stored(text, salt, cache):
        found = store.load(key, program=name, environment=env)
        if found is not None:
            return found
    return None


def has_object(text: str, *, salt: str = "", cache: CompileCache | None = None) -> bool:
    """Whether ``find_object`` would look at a stored entry for ``text`` (it may
    still turn out corrupt); cheap: no file is read."""
    return next(_stored(text, salt, cache), None) is not None


def store_object(text: str, object_code: bytes, info: ProgramInfo, *, salt: str = "",
                 cache: CompileCache | None = None) -> pathlib.Path | None:
    """Store object code for ``text`` (where ``find_object`` looks it up)."""
    cache = CompileCache() if cache is None else cache
    return cache.store(CompileCache.key(text, environment(salt)), object_code, info,
                       environment=environment(salt))


def cached_object(text: str, compile: Callable[[], bytes], *, name: str, salt: str = "",
                  cache: CompileCache | None = None) -> bytes:
    """Object code for ``text`` (e.g. LLVM IR of a runtime helper module) from the
    installed store or the disk cache, or ``compile()``-d and stored. For code
    that is not a program with the Executable calling convention (those go
    through ``load_cached``)."""
    found = find_object(text, name=name, salt=salt, cache=cache)
    if found is not None:
        return found[0]
    object_code = compile()
    store_object(text, object_code, ProgramInfo(name, "", "", (), (), 0, False), salt=salt,
                 cache=cache)
    return object_code


_warned_unwritable: set[str] = set()


def _warn_unwritable(directory: pathlib.Path, error: OSError) -> None:
    """Say once per folder and process that programs run but are not cached."""
    with _stats_lock:
        if str(directory) in _warned_unwritable:
            return
        _warned_unwritable.add(str(directory))
    warnings.warn(
        f"xla-py: the compile cache folder {directory} cannot be written ({error}); programs "
        f"still compile and run, but are not cached. Set {CACHE_DIR_ENV} to a writable folder "
        "(or 'off').", RuntimeWarning, stacklevel=3)


class _BadEntry(ValueError):
    pass


def _encode(header: dict, payload: bytes) -> bytes:
    header_bytes = json.dumps(header, sort_keys=True).encode()
    checksum = hashlib.sha256(header_bytes + payload).digest()
    return _PREFIX.pack(_MAGIC, len(header_bytes), len(payload), checksum) + header_bytes + payload


def _decode(blob: bytes) -> tuple[dict, bytes]:
    if len(blob) < _PREFIX.size:
        raise _BadEntry(f"truncated: {len(blob)} bytes, shorter than the entry prefix")
    magic, header_length, payload_length, checksum = _PREFIX.unpack_from(blob)
    if magic != _MAGIC:
        raise _BadEntry(f"bad magic {magic!r} (another format or not an entry)")
    expected = _PREFIX.size + header_length + payload_length
    if len(blob) != expected:
        raise _BadEntry(f"truncated: {len(blob)} of {expected} bytes")
    body = memoryview(blob)[_PREFIX.size:]
    if hashlib.sha256(body).digest() != checksum:
        raise _BadEntry("corrupt: checksum mismatch")
    header = json.loads(bytes(body[:header_length]))
    if not isinstance(header, dict):
        raise _BadEntry("bad header: not an object")
    return header, bytes(body[header_length:])


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...{text[-10:]}"


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
