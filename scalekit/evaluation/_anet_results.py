"""ActivityNet results JSON straight into arrays, without a Python object per prediction.

A results file is ``{"results": {video: [{"segment": [s, e], "label": l,
"score": p}, ...]}, ...}``: hundreds of thousands of predictions of one shape.
A JSON parser (even orjson) spends most of its time building a dict, a list
and four values per prediction. Here the bytes are tokenised with numpy in a
few passes over the file: quotes pair into strings, whose contents are blanked
(one cumulative sum); what is left are the structural tokens (``{}[]:,`` and
the closing quote of every string) and the number characters between them.
Every prediction must have the same 14 structural tokens as the first, with the
same three keys, and every number must lie where the first prediction has one.
The numbers then go through a JSON parser as one flat array (orjson when
installed, else the standard library: the same float for the same text as a
full parse), so that their syntax is JSON's, checked by the parser; the labels
are read as fixed-width byte rows and numbered by one ``np.unique`` of a hash,
verified byte for byte.

This is a fast path only: it returns ``None`` (and the caller parses the file
with a JSON parser) for anything but that plain shape: backslash escapes,
other keys or value types, key orders that change between predictions, a
duplicate video or ``"results"`` key, or bytes that are not JSON. What lies
outside ``"results"`` is checked by the standard library's parser.

Where the compiled ops are loaded, one pass in C++ reads the file instead
(``scalekit::_anet_scan``, csrc/evaluation/cpu/anet_scan.cpp: 55 ms against
the numpy passes' 300 ms on a 36 MB file of 342k predictions): the same plain shape, the same numbers, the same
label order and the same ``None``; the numpy passes remain for a build without
the ops.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from scalekit import _ext
from scalekit._json import parse_number_array

_KEYS = (b"segment", b"label", b"score")
_NUM_CHARS = b"0123456789-+.eE"
_WHITESPACE = b" \t\n\r"
_STRUCT = b'{}[]:,"'
_HIGH = 0x80  # structural classes carry the high bit; number characters keep their byte

# Class of every byte, by bytes.translate: whitespace 0, number characters
# themselves (1..127: positive as int8), structural characters themselves | 0x80,
# anything else (letters, control characters, non-ASCII: not JSON outside a
# string) 0xFF. String contents become 0.
_CLASS = bytearray([0xFF]) * 256
for _c in _WHITESPACE:
    _CLASS[_c] = 0
for _c in _NUM_CHARS:
    _CLASS[_c] = _c
for _c in _STRUCT:
    _CLASS[_c] = _c | _HIGH
_CLASS = bytes(_CLASS)
# Nesting depth change of a structural class, as int8 bytes (a translate is the fastest lookup).
_STEP = bytes(1 if c in (ord("{") | _HIGH, ord("[") | _HIGH) else 255 if c in (ord("}") | _HIGH, ord("]") | _HIGH)
              else 0 for c in range(256))
_Q, _COLON, _COMMA = ord('"') | _HIGH, ord(":") | _HIGH, ord(",") | _HIGH
_OPEN, _CLOSE, _LBR, _RBR = ord("{") | _HIGH, ord("}") | _HIGH, ord("[") | _HIGH, ord("]") | _HIGH
# One prediction's tokens after '{' by key: segment '" : [ , ]', label '" : "', score '" :'.
_PART = {b"segment": (_Q, _COLON, _LBR, _COMMA, _RBR), b"label": (_Q, _COLON, _Q), b"score": (_Q, _COLON)}
_ROW = 14  # '{' + the three parts (10) + two ',' + '}'


def read_results(data: bytes):
    """``(videos, counts, label names, label codes, segments [N, 2], scores [N])`` or ``None``.

    ``label codes`` index ``label names``; predictions are in file order,
    ``counts[i]`` of them for ``videos[i]``. The compiled scanner reads the
    file where the ops are loaded, the numpy passes otherwise; both give the
    same arrays (bit for bit) and decline the same files.
    """
    if _use_op():
        return _read_compiled(data)
    return _read_numpy(data)


def _use_op() -> bool:
    """Whether :func:`read_results` takes the compiled scanner (tests patch it to take either path)."""
    return _ext.has_ops()


def _read_compiled(data: bytes):
    """:func:`read_results` by ``scalekit::_anet_scan``: one pass in C++, then the
    checks it leaves to Python: the rest of the file through the standard
    library's parser, as :func:`_read_numpy`, and the keys and labels as UTF-8."""
    if len(data) == 0:
        return None
    with warnings.catch_warnings():  # the op only reads the (read-only) bytes
        warnings.simplefilter("ignore", UserWarning)
        buf = torch.frombuffer(data, dtype=torch.uint8)
    info, counts, vspans, lspans, codes, segments, scores = torch.ops.scalekit._anet_scan(buf)
    ok, first, last = info.tolist()
    if not ok:
        return None
    try:
        json.loads(data[:first] + b"{}" + data[last + 1:])  # all but the results must be JSON as well
        videos = [data[s:e].decode("utf-8") for s, e in vspans.tolist()]
        raw = [data[s:e] for s, e in lspans.tolist()]
        names = [r.decode("utf-8") for r in raw]
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError), as _read_numpy
        return None
    counts = counts.numpy()
    if codes.numel() == 0:
        z = np.zeros(0)
        return videos, counts, [], np.zeros(0, np.int64), z.reshape(0, 2), z
    # the numpy passes' label order (by a hash of the bytes) and limits, on the few distinct labels
    w = max(map(len, raw))
    if w > 256:
        return None
    codes = codes.numpy()
    if w > 0:
        words = -(-w // 8)
        key = np.frombuffer(b"".join(r.ljust(8 * words, b"\0") for r in raw), dtype=np.uint64).reshape(-1, words)
        h = key[:, 0].copy()
        for k in range(1, words):
            h = h * np.uint64(0x9E3779B97F4A7C15) + key[:, k]
        if np.unique(h).size != h.size:  # a collision: the numpy passes decline it
            return None
        order = np.argsort(h)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        names = [names[i] for i in order.tolist()]
        codes = rank[codes].astype(np.int64)
    return videos, counts, names, codes, segments.numpy(), scores.numpy()


def _read_numpy(data: bytes):
    """:func:`read_results` by numpy passes over the file (see the module's docstring)."""
    if len(data) == 0 or b"\\" in data:
        return None
    a = np.frombuffer(data, dtype=np.uint8)
    q, cls, tok = _classes(data, a)
    if q.size % 2 or (q.size and q[0] == 0):
        return None
    s_open, s_close = q[0::2], q[1::2]
    kind = cls[tok]
    depth = np.cumsum(np.frombuffer(kind.tobytes().translate(_STEP), dtype=np.int8), dtype=np.int32)  # after each token
    if depth.size == 0 or depth[-1] != 0 or depth.min() < 0 or kind[0] != _OPEN or (cls[:tok[0]] != 0).any():
        return None

    def text(i: int) -> bytes:  # the string whose closing quote is token i
        end = tok[i]
        return data[s_open[np.searchsorted(s_close, end)] + 1:end]

    keys = [i for i in np.flatnonzero((depth == 1) & (kind == _Q)).tolist()
            if i + 1 < kind.size and kind[i + 1] == _COLON]
    found = [i for i in keys if text(i) == b"results"]
    if len(found) != 1 or found[0] + 2 >= kind.size or kind[found[0] + 2] != _OPEN:
        return None
    first = found[0] + 2  # the '{' of results' value
    last = first + 1 + int(np.flatnonzero(depth[first + 1:] == 1)[0])  # its '}'
    if kind[last] != _CLOSE:  # a ']' closing it: not JSON, though the rest is
        return None
    rest = data[:tok[first]] + b"{}" + data[tok[last] + 1:]
    try:
        json.loads(rest)  # all but the results must be JSON as well
    except (ValueError, RecursionError):  # (nesting deeper than the interpreter's stack: the caller's parser says so)
        return None

    # videos: key ':' '[' predictions ']' [',']
    at2 = first + 1 + np.flatnonzero(depth[first + 1:last] == 2)
    vkeys = at2[kind[at2] == _Q]
    if vkeys.size:
        if (vkeys + 2 >= last).any() or (kind[vkeys + 1] != _COLON).any() or (kind[vkeys + 2] != _LBR).any():
            return None
    closes = at2[kind[at2] == _RBR]
    if closes.size != vkeys.size or not (closes > vkeys).all():
        return None
    commas = at2[kind[at2] == _COMMA]
    if commas.size != max(vkeys.size - 1, 0) or at2.size != 3 * vkeys.size + commas.size:
        return None
    length = closes - (vkeys + 3)  # tokens of the predictions of each video
    counts = (length + 1) // (_ROW + 1)
    if ((length != 0) & (length != (_ROW + 1) * counts - 1)).any():
        return None
    counts = np.where(length == 0, 0, counts)
    videos = []
    for i in vkeys.tolist():
        raw = text(i)
        if raw and min(raw) < 32:  # a raw control character: not JSON
            return None
        try:
            videos.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    if len(set(videos)) != len(videos):
        return None
    n = int(counts.sum())
    region = slice(tok[first], tok[last] + 1)
    if n == 0:
        if (cls[region].view(np.int8) > 0).any():  # a number where there is no prediction
            return None
        z = np.zeros(0)
        return videos, counts, [], np.zeros(0, np.int64), z.reshape(0, 2), z
    # the tokens of the predictions, a row each: a video's lists '{' ... '}' ',' ... '{' ... '}' ']'
    mark = np.zeros(kind.size + 1, dtype=np.int8)
    full = counts > 0
    mark[vkeys[full] + 3] = 1
    mark[closes[full] + 1] = -1
    inrow = np.cumsum(mark[:-1], out=mark[:-1]).view(bool)
    row_kind = kind[inrow].reshape(n, _ROW + 1)
    row_tok = tok[inrow].reshape(n, _ROW + 1)
    pattern = row_kind[0, :_ROW]
    if (row_kind[:, :_ROW] != pattern).any():
        return None
    ends = np.full(n, _COMMA, dtype=np.uint8)
    ends[np.cumsum(counts)[full] - 1] = _RBR  # no comma after a video's last prediction
    if (row_kind[:, _ROW] != ends).any():
        return None

    # the first prediction's shape: '{' then three "key": value separated by ',', then '}'
    cols, j = {}, 1
    for _ in range(3):
        name = text(int(np.searchsorted(tok, row_tok[0, j])))
        if name not in _KEYS or name in cols:
            return None
        part = _PART[name]
        if tuple(pattern[j:j + len(part)].tolist()) != part:
            return None
        cols[name] = j
        j += len(part)
        if pattern[j] != (_COMMA if len(cols) < 3 else _CLOSE):
            return None
        j += 1
    for name, col in cols.items():  # every prediction has the same keys in the same places
        need = np.frombuffer((b'"' + name).rjust(8, b" "), dtype=np.uint64)
        have = _windows(a, row_tok[:, col] - 8, 8).view(np.uint64)
        if len(name) < 7:  # the bytes before '"label' and '"score' are no part of it
            have = have & np.frombuffer(bytes(8 - 1 - len(name)) + b"\xff" * (1 + len(name)), dtype=np.uint64)
            need = need & np.frombuffer(bytes(8 - 1 - len(name)) + b"\xff" * (1 + len(name)), dtype=np.uint64)
        if (have != need).any():
            return None

    # numbers: after the segment's '[' and ',' and the score's ':'. Their characters, with
    # a comma for each of those tokens, are one flat JSON array: the parser checks the
    # numbers' syntax and that there is one in each place; the number runs are counted,
    # so that there is none elsewhere (it would join a neighbour).
    seg, sco = cols[b"segment"], cols[b"score"]
    gaps = np.array([seg + 2, seg + 3, sco + 1])
    order = np.argsort(gaps, kind="stable")  # the numbers' order within a prediction
    lead = row_tok[:, gaps[order]].reshape(-1)
    changes, text_ = _numbers(cls[region], lead - tok[first])
    if changes != 2 * lead.size:  # (the region starts with '{' and ends with '}')
        return None
    try:
        values = parse_number_array(memoryview(text_))
        if len(values) != 3 * n:
            return None
        values = np.fromiter(values, dtype=np.float64, count=3 * n)
    except (ValueError, TypeError, OverflowError):  # not JSON, not 3n numbers, an integer beyond float64
        return None
    if not np.isfinite(values).all():
        return None
    values = values.reshape(n, 3)[:, np.argsort(order)]

    # labels: fixed-width byte rows, numbered by one np.unique of a hash, checked byte for byte
    lab_col = cols[b"label"] + 2
    lab_end = row_tok[:, lab_col]
    # its opening quote by counting: the quotes before the results, two per video key
    # before and eight per prediction before, and the label's place among its row's strings
    strings = sorted([cols[b"segment"], cols[b"label"], lab_col, cols[b"score"]])
    nth = (int(np.searchsorted(q, tok[first])) // 2 + np.repeat(np.arange(1, counts.size + 1), counts)
           + 4 * np.arange(n) + strings.index(lab_col))
    if (s_close[nth] != lab_end).any():  # pragma: no cover - the rows' tokens were checked above
        return None
    lab = s_open[nth] + 1
    lab_len = lab_end - lab
    names, codes = _label_codes(a, lab, lab_len)
    if names is None:
        return None
    return videos, counts, names, codes, values[:, :2].copy(), values[:, 2].copy()


_CHUNK = 1 << 18  # bytes per block of the passes over the file: their temporaries stay in the cache


def _classes(data: bytes, a: np.ndarray):
    """``(quote positions, class of every byte, structural token positions)``.

    The class is ``_CLASS``'s, with string contents (the opening quote
    included, the closing quote not) blanked to 0. Block by block, so that the
    temporaries of a block stay in the processor's cache (the file's bytes are
    read twice and the classes written once, instead of a dozen passes through
    memory); a block starts inside a string when an odd number of quotes
    precede it.
    """
    cls = np.empty(a.size, dtype=np.uint8)
    index = np.int32 if a.size < 2**31 else np.int64  # positions: half the memory traffic where they fit
    qs, toks, inside = [], [], False
    for lo in range(0, a.size, _CHUNK):
        hi = min(lo + _CHUNK, a.size)
        q = np.flatnonzero(a[lo:hi] == 34)
        # -1 (0xFF) outside strings, 0 inside: +1 at an opening quote, -1 after a closing one
        keep = np.zeros(hi - lo, dtype=np.int8)
        opening = q[1::2] if inside else q[0::2]
        closing = q[0::2] if inside else q[1::2]
        keep[opening] = 1
        keep[closing] = -1
        keep[0] += 0 if inside else -1
        np.cumsum(keep, out=keep)
        np.bitwise_and(np.frombuffer(data[lo:hi].translate(_CLASS), dtype=np.uint8), keep.view(np.uint8),
                       out=cls[lo:hi])
        qs.append((q + lo).astype(index))
        toks.append((np.flatnonzero(cls[lo:hi] >= _HIGH) + lo).astype(index))
        inside ^= bool(q.size % 2)
    if not qs:
        return np.zeros(0, np.int64), cls, np.zeros(0, np.int64)
    return np.concatenate(qs), cls, np.concatenate(toks)


def _numbers(region: np.ndarray, lead: np.ndarray):
    """``(changes, text)``: how often the classes of the results (``region``) change
    between number character and not (twice the number runs), and the JSON array
    of the number characters with a comma for each token at ``lead`` (sorted
    positions in ``region``, where the commas are written); block by block, as
    :func:`_classes`."""
    bounds = np.searchsorted(lead, np.arange(0, region.size + _CHUNK, _CHUNK))
    pieces, changes, before = [], 0, False
    for k, lo in enumerate(range(0, region.size, _CHUNK)):
        block = region[lo:lo + _CHUNK]
        digit = block.view(np.int8) > 0  # number characters (structural classes are negative)
        changes += int(np.count_nonzero(digit[1:] != digit[:-1])) + int(bool(digit[0]) != before)
        before = bool(digit[-1])
        at = lead[bounds[k]:bounds[k + 1]] - lo
        block[at] = ord(",")
        digit[at] = True
        pieces.append(block[digit])
    text = np.concatenate(pieces + [np.array([ord("]")], dtype=np.uint8)])
    text[0] = ord("[")
    return changes, text


def _label_codes(a: np.ndarray, start: np.ndarray, length: np.ndarray):
    """``(names, codes)`` of the strings ``a[start:start + length]``, or ``(None, None)``
    (a control character or a string that is not UTF-8, or one longer than 256 bytes)."""
    n = start.size
    w = int(length.max())
    if w > 256:
        return None, None
    if w == 0:
        return [""], np.zeros(n, np.int64)
    words = -(-w // 8)
    mat = _windows(a, start, 8 * words)
    inside = np.arange(8 * words) < length[:, None]
    mat[~inside] = 0
    if ((mat < 32) & inside).any():  # raw control characters: not JSON
        return None, None
    key = mat.view(np.uint64)  # [n, words]
    h = key[:, 0].copy()
    for k in range(1, words):  # a hash of the words (exact when one word holds the string)
        h = h * np.uint64(0x9E3779B97F4A7C15) + key[:, k]
    uniq = np.unique(h)
    codes = np.searchsorted(uniq, h)
    first = np.empty(uniq.size, dtype=np.int64)
    first[codes] = np.arange(n)  # one string of each code
    if words > 1 and (key != key[first[codes]]).any():  # a collision: not worth a second path
        return None, None
    try:
        names = [bytes(mat[i, :length[i]]).decode("utf-8") for i in first.tolist()]
    except UnicodeDecodeError:
        return None, None
    return names, codes.astype(np.int64)


def _windows(a: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """``[N, width]`` uint8: ``a[start[i]:start[i] + width]``, zeros past the end of ``a``."""
    start = np.asarray(start, dtype=np.int64)
    if a.size < width:
        a = np.concatenate([a, np.zeros(width - a.size, np.uint8)])
    rows = np.lib.stride_tricks.as_strided(a, (a.size - width + 1, width), (a.strides[0], a.strides[0]))
    out = rows[np.clip(start, 0, a.size - width)]  # a copy, row by row
    for i in np.flatnonzero((start > a.size - width) | (start < 0)).tolist():  # at most width near the end
        piece = a[max(int(start[i]), 0):int(start[i]) + width]
        out[i] = 0
        out[i, max(-int(start[i]), 0):max(-int(start[i]), 0) + piece.size] = piece
    return out
