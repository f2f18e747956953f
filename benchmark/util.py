"""Small pieces every part of ctrbench uses: atomic file writes, the md5-of-JSON fingerprint, comma lists,
device synchronisation."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Callable, Iterator

from .errors import CTRBenchError


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the block succeeds it is renamed onto ``path``
    (readers see the old file or the new one, never a half-written one); when it fails the temporary
    file is removed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, data: str | bytes | Callable[[str], None]) -> None:
    """Write ``path`` atomically: text, bytes, or a function that writes the file whose path it is given
    (``lambda tmp: torch.save(obj, tmp)``)."""
    with atomic_path(path) as tmp:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb" if isinstance(data, bytes) else "w") as fd:
                fd.write(data)


def atomic_write_json(path: str, payload, **dump_kwargs) -> None:
    atomic_write(path, json.dumps(payload, **{"default": float, **dump_kwargs}))


def json_hash(obj, length: int | None = None) -> str:
    """md5 of ``obj`` as canonical JSON (sorted keys, ``str`` for anything JSON lacks), optionally cut to
    ``length`` hex digits: the fingerprint of configs, dataset variants and builds."""
    digest = hashlib.md5(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:length] if length else digest


def split_list(text: str | None, flag: str | None = None, cast: Callable = str) -> list | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (``cast`` applied to each); None or blank -> None. A value
    ``cast`` rejects is a one-line error naming ``flag``."""
    if text is None or not str(text).strip():
        return None
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        kind = getattr(cast, "__name__", "value")
        raise CTRBenchError(
            f"{flag or 'list'} {text}: give comma-separated {kind} values, "
            f"e.g. {flag or ''} {','.join(['1', '2'] if cast is int else ['a', 'b'])}".strip()
        )


def sync(device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); a no-op on CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
