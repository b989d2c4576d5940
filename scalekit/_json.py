"""One JSON loader for the library: orjson when installed (the ``fast-json``
extra: a C parser, about 2-3x the standard library's on large result files),
the standard library otherwise, with the same results and errors."""

from __future__ import annotations

import contextlib
import gc
import json
import os

try:  # optional: pip install "torch-scalekit[fast-json]"
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


@contextlib.contextmanager
def _collection_paused():
    """Python's cyclic garbage collector off while a parser builds a tree of containers.

    A parser allocates a container per JSON object and array; every 2,000 of
    them the collector walks all young containers, and the walks of a tree of
    a million containers cost 5-7x the parse itself (orjson: 0.95 s instead of
    0.15 s on a 36 MB results file). A parsed tree holds no cycles, so that the
    walks find nothing to free. The previous state is restored afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_json(data: bytes | str, name: str = "JSON"):
    """The object in ``data``; a ``ValueError`` naming ``name``, line and column if it is not JSON.

    orjson parses first; what it refuses and the standard library accepts
    (``NaN``, ``Infinity``, integers beyond 64 bits, non-UTF-8 encodings) is
    parsed by the standard library, so that both give the same object.
    """
    with _collection_paused():
        if _orjson is not None:
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass
        try:
            return json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not valid JSON: {e}") from None


def parse_number_array(data) -> list:
    """The list of numbers in ``data`` (bytes or a buffer holding a JSON array of numbers).

    orjson when installed, else the standard library: the same float for the
    same text (both round correctly, as Python's ``float``). Raises
    ``ValueError`` when ``data`` is not JSON (orjson also refuses integers
    beyond 64 bits, which the standard library reads).
    """
    if _orjson is not None:
        return _orjson.loads(data)  # its JSONDecodeError is a ValueError
    return json.loads(bytes(data))


def load_json(source, argument: str, kind: str = "annotation"):
    """``source`` itself unless it is a path; a path is read and parsed.

    ``argument`` names the argument in errors: a missing file raises
    ``FileNotFoundError``, a file that is not JSON a ``ValueError`` with its
    path, line and column.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{argument}: no such {kind} file: {source}")
    with open(source, "rb") as f:
        data = f.read()
    return parse_json(data, os.fspath(source))
