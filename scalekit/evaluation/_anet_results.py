"""ActivityNet results JSON straight into arrays, without a Python object per prediction.

A results file is ``{"results": {video: [{"segment": [s, e], "label": l,
"score": p}, ...]}, ...}``: hundreds of thousands of predictions of one shape.
A JSON parser (even orjson) spends most of its time building a dict, a list
and four values per prediction. Here the bytes are tokenised with numpy (quotes,
structural characters, numbers), every prediction is checked to have the same
17 tokens with the same three keys as the first, and the numbers of all
predictions are converted in one C call.

This is a fast path only: it returns ``None`` (and the caller parses the file
with a JSON parser) for anything but that plain shape: backslash escapes,
other keys or value types, key orders that change between predictions, a
duplicate video or ``"results"`` key, or bytes that are not JSON. What lies
outside ``"results"`` is checked by the standard library's parser.
"""

from __future__ import annotations

import json

import numpy as np

_KEYS = (b"segment", b"label", b"score")
_NUM_CHARS = b"0123456789-+.eE"
_WHITESPACE = b" \t\n\r"


_INSIDE, _WHITE, _STRUCT, _NUMBER, _LETTER, _OTHER = range(6)
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
_CLASS[list(_WHITESPACE)] = _WHITE
_CLASS[list(b"{}[]:,")] = _STRUCT
_CLASS[list(_NUM_CHARS)] = _NUMBER
_CLASS[[c for c in range(ord("a"), ord("z") + 1) if c not in _NUM_CHARS]] = _LETTER
_CLASS[ord('"')] = _INSIDE  # every quote opens or closes a string


def read_results(data: bytes):
    """``(videos, counts, label names, label codes, segments [N, 2], scores [N])`` or ``None``.

    ``label codes`` index ``label names``; predictions are in file order,
    ``counts[i]`` of them for ``videos[i]``.
    """
    if b"\\" in data or len(data) == 0:
        return None
    a = np.frombuffer(data, dtype=np.uint8)
    q = np.flatnonzero(a == 34)
    if q.size % 2:
        return None
    s_open, s_close = q[0::2], q[1::2]
    marks = np.zeros(a.size + 1, dtype=np.int8)
    marks[s_open] = 1
    marks[s_close + 1] -= 1
    inside = np.cumsum(marks[:-1], dtype=np.int8).view(bool)  # quotes included
    # one pass: the class of every byte outside strings (inside: 0)
    cls = _CLASS[a]
    cls[inside] = _INSIDE
    if (cls == _OTHER).any() or ((a < 32) & inside).any():  # not JSON (raw control characters, ...)
        return None
    numch = cls == _NUMBER
    letters = cls == _LETTER
    starts_run = np.empty(a.size, dtype=bool)  # first byte of a number or literal
    starts_run[0] = False
    np.not_equal(cls[1:], cls[:-1], out=starts_run[1:])
    starts_run &= numch | letters
    is_tok = (cls == _STRUCT) | starts_run
    is_tok[s_open] = True
    tok = np.flatnonzero(is_tok)
    kind = a[tok].copy()
    kind[numch[tok]] = ord("0")
    kind[letters[tok]] = ord("t")
    step = (kind == ord("{")).astype(np.int64) + (kind == ord("[")) - (kind == ord("}")) - (kind == ord("]"))
    depth = np.cumsum(step)  # depth after each token
    if depth.size == 0 or depth[-1] != 0 or depth.min() < 0 or kind[0] != ord("{"):
        return None

    def text(i: int) -> bytes:  # a string token's bytes
        start = tok[i]
        return data[start + 1:s_close[np.searchsorted(s_open, start)]]

    keys = [i for i in np.flatnonzero((depth == 1) & (kind == 34)).tolist()
            if i + 1 < kind.size and kind[i + 1] == ord(":")]
    found = [i for i in keys if text(i) == b"results"]
    if len(found) != 1 or found[0] + 2 >= kind.size or kind[found[0] + 2] != ord("{"):
        return None
    first = found[0] + 2  # the '{' of results' value
    last = first + 1 + int(np.flatnonzero(depth[first + 1:] == 1)[0])  # its '}'
    rest = data[:tok[first]] + b"{}" + data[tok[last] + 1:]
    try:
        json.loads(rest)  # all but the results must be JSON as well
    except ValueError:
        return None

    # videos: key ':' '[' predictions ']' [',']
    at2 = first + 1 + np.flatnonzero(depth[first + 1:last] == 2)
    vkeys = at2[kind[at2] == 34]
    if vkeys.size:
        if (vkeys + 2 >= last).any() or (kind[vkeys + 1] != ord(":")).any() or (kind[vkeys + 2] != ord("[")).any():
            return None
    closes = at2[kind[at2] == ord("]")]
    if closes.size != vkeys.size or not (closes > vkeys).all():
        return None
    commas = at2[kind[at2] == ord(",")]
    if commas.size != max(vkeys.size - 1, 0) or at2.size != 3 * vkeys.size + commas.size:
        return None
    length = closes - (vkeys + 3)  # tokens of the predictions of each video
    counts = (length + 1) // 18
    if ((length != 0) & (length != 18 * counts - 1)).any():
        return None
    counts = np.where(length == 0, 0, counts)
    videos = [text(int(i)).decode("utf-8") for i in vkeys]
    if len(set(videos)) != len(videos):
        return None
    n = int(counts.sum())
    if n == 0:
        z = np.zeros(0)
        return videos, counts, [], np.zeros(0, np.int64), z.reshape(0, 2), z
    starts = np.repeat(vkeys + 3, counts) + 18 * (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts))
    rows = starts[:, None] + np.arange(17)
    kinds = kind[rows]
    pattern = kinds[0]
    if (kinds != pattern).any() or (depth[rows] != depth[rows[0]]).any():
        return None
    sep = np.ones(n, dtype=bool)
    sep[np.cumsum(counts)[counts > 0] - 1] = False  # no comma after a video's last prediction
    if (kind[starts[sep] + 17] != ord(",")).any():
        return None

    # the first prediction's shape: '{' then three "key": value separated by ','
    cols, j = {}, 1
    for _ in range(3):
        if pattern[j] != 34 or pattern[j + 1] != ord(":"):
            return None
        name = text(int(rows[0, j]))
        if name not in _KEYS or name in cols:
            return None
        cols[name] = j
        j += 2
        width = 5 if name == b"segment" else 1
        expect = b"[0,0]" if name == b"segment" else (b'"' if name == b"label" else b"0")
        if bytes(pattern[j:j + width]) != expect:
            return None
        j += width
        if pattern[j] != (ord(",") if len(cols) < 3 else ord("}")):
            return None
        j += 1
    for name, col in cols.items():  # every prediction has the same keys in the same places
        need = np.frombuffer(name + b'"', dtype=np.uint8)
        where = tok[rows[:, col]][:, None] + 1 + np.arange(need.size)
        if (a[where] != need).any():
            return None

    # numbers: the characters of each number token, converted in one C call
    num_starts = np.flatnonzero(numch & starts_run)
    seg = cols[b"segment"]
    pos = tok[rows[:, [seg + 3, seg + 5, cols[b"score"] + 2]]].reshape(-1)
    if (a[pos] == ord("+")).any():
        return None
    k = np.searchsorted(num_starts, pos)
    try:  # every number of the file (others are spaces), then those of the predictions
        values = np.fromstring(np.where(numch, a, np.uint8(32)).tobytes(), dtype=np.float64, sep=" ")
    except ValueError:
        return None
    if values.size != num_starts.size:
        return None
    values = values[k]
    if not np.isfinite(values).all():
        return None
    values = values.reshape(n, 3)

    # labels: fixed-width byte strings, one np.unique
    lab = tok[rows[:, cols[b"label"] + 2]] + 1
    lab_end = s_close[np.searchsorted(s_open, lab - 1)]
    lab_len = lab_end - lab
    w = int(lab_len.max()) if n else 0
    if w > 256:
        return None
    if w == 0:
        names, codes = [""], np.zeros(n, np.int64)
    else:
        grid = lab[:, None] + np.arange(w)
        mat = np.where(np.arange(w) < lab_len[:, None], a[np.minimum(grid, a.size - 1)], 0).astype(np.uint8)
        uniq, codes = np.unique(np.ascontiguousarray(mat).view(f"S{w}").reshape(-1), return_inverse=True)
        try:
            names = [u.decode("utf-8") for u in uniq.tolist()]
        except UnicodeDecodeError:
            return None
    return videos, counts, names, codes.astype(np.int64).reshape(-1), values[:, :2].copy(), values[:, 2].copy()
