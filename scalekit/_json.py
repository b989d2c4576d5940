"""One JSON loader for the library: orjson when installed (the ``fast-json``
extra: a C parser, about 5-10x the standard library's on large result files),
the standard library otherwise, with the same results and errors."""

from __future__ import annotations

import json
import os

try:  # optional: pip install "scalekit[fast-json]"
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def parse_json(data: bytes | str, name: str = "JSON"):
    """The object in ``data``; a ``ValueError`` naming ``name``, line and column if it is not JSON.

    orjson parses first; what it refuses and the standard library accepts
    (``NaN``, ``Infinity``, integers beyond 64 bits, non-UTF-8 encodings) is
    parsed by the standard library, so that both give the same object.
    """
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
