"""The manifest of a build: ``build_info.json`` (the build key, rows, and every file's size and CRC-32),
the marker that says a folder is a ctrbench build, the checks a reuse and ``data verify-build`` make,
and the removal of temporary folders left by killed builds."""

from __future__ import annotations

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
