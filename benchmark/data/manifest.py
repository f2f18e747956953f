"""The manifest of a build: ``build_info.json`` (the build key, rows, and every file's size and CRC-32),
the marker that says a folder is a ctrbench build, the checks a reuse and ``data verify-build`` make,
the removal of temporary folders left by killed builds, and the readers of a build.

**Readers.** A job that reads a build while it runs (a streaming run reads a block at a time) registers
as a reader (``BuildReader``: a file ``.<dataset_id>.readers/<pid>-<n>`` beside the build folder). A
rebuild does not swap a new build in while another live process reads the folder: it stops with one line
naming the readers and leaves the folder as it is. The registration and the swap take turns on one lock
file, and a reader checks the build key at registration (against the key its config asks for) and again
after opening each block, so a job only ever reads the build it started with, or stops with one line."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shutil
import zlib

from ..errors import CTRBenchError
from ..util import process_alive
from .spec import BUILD_FORMAT, data_dir

INFO_FILE = "build_info.json"


def read_info(directory: str) -> dict | None:
    path = os.path.join(directory, INFO_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fd:
            return json.load(fd)
    except (OSError, json.JSONDecodeError):
        return None


MARKER_FILE = ".ctrbench_build"  # written into every ctrbench build, beside build_info.json
# builds up to this size have their checksums verified on every reuse (sizes are always checked)
VERIFY_ON_REUSE_BYTES = 256 * 1024**2


def is_legacy_dir(directory: str) -> bool:
    """A fuxictr-2.0 style directory: feature_map.json + train.h5 (+ valid/test) and nothing of
    ctrbench's own (no build_info.json, no build marker, no block folders)."""
    return (
        os.path.isfile(os.path.join(directory, "feature_map.json"))
        and os.path.isfile(os.path.join(directory, "train.h5"))
        and not os.path.exists(os.path.join(directory, INFO_FILE))
        and not os.path.exists(os.path.join(directory, MARKER_FILE))
    )


def _checksum(path: str) -> str:
    """CRC-32 of the file (corruption, not tampering: several times faster than a cryptographic hash)."""
    crc = 0
    with open(path, "rb") as fd:
        for chunk in iter(lambda: fd.read(1 << 22), b""):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def manifest(directory: str) -> dict[str, dict]:
    """``{relative path: {size, crc32}}`` of the files a build wrote (all but build_info.json)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel in (INFO_FILE, MARKER_FILE):
                continue
            files[rel] = {"size": os.path.getsize(path), "crc32": _checksum(path)}
    return files


def damaged_files(directory: str, info: dict, checksums: bool) -> list[str]:
    """What differs from the manifest in build_info.json: missing files, other sizes, and (with
    ``checksums``) other contents. A build written before manifests existed has nothing to compare."""
    problems = []
    for rel, expected in sorted((info.get("files") or {}).items()):
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif os.path.getsize(path) != expected["size"]:
            problems.append(
                f"{path} has {os.path.getsize(path):,} bytes, not {expected['size']:,} (truncated or "
                f"overwritten)"
            )
        elif checksums and _checksum(path) != expected.get("crc32"):
            problems.append(f"{path} has changed contents (checksum differs)")
    return problems


def verify_build(params: dict) -> tuple[str, list[str]]:
    """``ctrbench data verify-build``: the built directory and what in it is damaged (every checksum)."""
    target = data_dir(params)
    info = read_info(target)
    if info is None:
        raise CTRBenchError(
            f"{target} holds no ctrbench build (no {INFO_FILE}); build it with "
            f"'ctrbench data build {params['dataset_id']}'"
        )
    if not info.get("files"):
        raise CTRBenchError(
            f"{target} was built before builds recorded their files; rebuild it with "
            f"'ctrbench data build {params['dataset_id']} --force' to verify it later"
        )
    return target, damaged_files(target, info, checksums=True)


def remove_stale_builds(build_root: str, dataset_id: str) -> list[str]:
    """Temporary folders of builds whose process is gone (killed): ``.<id>.building-PID`` and
    ``<id>.old-PID``. Returns what was removed."""
    removed = []
    if not os.path.isdir(build_root):
        return removed
    for name in os.listdir(build_root):
        for prefix in (f".{dataset_id}.building-", f"{dataset_id}.old-"):
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                if not process_alive(int(name[len(prefix) :])):
                    shutil.rmtree(os.path.join(build_root, name), ignore_errors=True)
                    removed.append(name)
    return removed


def write_info(
    directory: str, key: str, dataset_id: str, rows: dict, block_size: int, seconds: float
) -> None:
    """The marker and ``build_info.json`` (with the manifest of everything written before them)."""
    with open(os.path.join(directory, MARKER_FILE), "w") as fd:
        fd.write(f"{dataset_id}\n")
    with open(os.path.join(directory, INFO_FILE), "w") as fd:
        json.dump(
            {
                "key": key,
                "dataset_id": dataset_id,
                "rows": rows,
                "data_block_size": block_size,
                "seconds": round(seconds, 3),
                "format": BUILD_FORMAT,
                "files": manifest(directory),
            },
            fd,
            indent=2,
        )


def _readers_dir(directory: str) -> str:
    parent, name = os.path.split(os.path.abspath(directory))
    return os.path.join(parent, f".{name}.readers")


@contextlib.contextmanager
def swap_lock(directory: str):
    """Registering a reader and swapping a build in take turns (a lock file beside the build folder);
    where that folder cannot be written there is nothing to take turns with."""
    try:
        fd = open(_readers_dir(directory) + ".lock", "a")
    except OSError:
        yield
        return
    with fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def active_readers(directory: str) -> list[int]:
    """Process ids of other live processes that read the build in ``directory``."""
    folder = _readers_dir(directory)
    pids = set()
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        pid = name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if process_alive(int(pid)):
            pids.add(int(pid))
        else:  # left by a killed job: its number may be reused by an unrelated process later
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass
    return sorted(pids)


def readers_error(directory: str, dataset_id: str, pids: list[int]) -> CTRBenchError:
    return CTRBenchError(
        f"{directory} is being read by running job(s) (pid {', '.join(map(str, pids))}), so this build of "
        f"'{dataset_id}' is not swapped in under them (they would read blocks of another build); rerun it "
        f"when they have finished, or build this config into its own folder with --build-root"
    )


_serial = itertools.count()


class BuildReader:
    """This process reads the build in ``directory``: registered for as long as the reader is open, and
    ``check(path)`` after each block is opened says whether the folder still holds the same build."""

    def __init__(self, directory: str, expected_key: str | None = None):
        self.directory, self.path = directory, None
        with swap_lock(directory):
            info = read_info(directory)
            self.key = info.get("key") if info else None
            if expected_key and self.key and self.key != expected_key:
                raise CTRBenchError(
                    f"{directory} holds another build of '{info.get('dataset_id')}' than this job's config "
                    f"asks for (a parallel rebuild of another config replaced it); rerun the job, or give "
                    f"each config its own folder with --build-root"
                )
            try:
                os.makedirs(_readers_dir(directory), exist_ok=True)
                path = os.path.join(_readers_dir(directory), f"{os.getpid()}-{next(_serial)}")
                open(path, "w").close()
                self.path = path
            except OSError:  # a read-only build_root: nobody rebuilds it from here either
                self.path = None

    def check(self, block: str) -> None:
        if self.key is None:
            return
        info = read_info(self.directory)
        if (info or {}).get("key") != self.key:
            raise CTRBenchError(
                f"{self.directory} was replaced by another build while this job read it ({block}); its "
                f"results would mix two builds: rerun the job, or give each config its own --build-root"
            )

    def close(self) -> None:
        path, self.path = getattr(self, "path", None), None
        if path:
            try:
                os.remove(path)
            except OSError:
                pass

    def __del__(self):
        self.close()
