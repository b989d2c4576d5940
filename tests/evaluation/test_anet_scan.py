"""The compiled scanner of ActivityNet results (``scalekit::_anet_scan``, issue 27):
the numpy reader's arrays bit for bit, the numbers of Python's float(), and on
any bytes either a decline or the whole-file parse; never a crash."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekit import _ext
from scalekit.evaluation import _anet_results
from scalekit.evaluation.readers import _predictions

pytestmark = pytest.mark.skipif(not _ext.has_ops(), reason="the compiled ops are not built")

PLAIN = ('{"version": "VERSION 1.3", "results": {"v_a": [{"segment": [0.5, 12], "label": "Long jump", '
         '"score": 0.9}, {"segment": [3, 4.25e1], "label": "b", "score": -0}], "v_b": [], "v_c": '
         '[{"segment": [1e-400, 2], "label": "Long jump", "score": 1}]}, "external_data": {"used": true}}')


def compiled(data: bytes):
    return _anet_results._read_compiled(data)


def numpy_passes(data: bytes):
    return _anet_results._read_numpy(data)


def assert_identical(a, b):
    """Bit for bit: the same lists, the same arrays (dtype, shape, bytes)."""
    assert (a is None) == (b is None), (a, b)
    if a is None:
        return
    assert a[0] == b[0] and a[2] == b[2]
    for x, y in zip(a[1:], b[1:]):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), (x, y)


def whole_file(data: bytes):
    """The predictions of a JSON parser's reading of the whole file, or None where it is not
    a results file a reader could take."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        return None
    try:
        return _predictions(doc["results"])
    except (ValueError, TypeError):
        return None


def assert_read_or_declined(data: bytes):
    """The scanner never crashes; it declines or reads what a JSON parser reads, and it
    agrees with the numpy passes bit for bit."""
    exact = torch.empty(len(data), dtype=torch.uint8)  # a buffer of exactly the file's bytes (Python's
    exact.numpy()[:] = np.frombuffer(data, dtype=np.uint8)  # bytes end in a NUL): the sanitizer sees a read past it
    torch.ops.scalekit._anet_scan(exact)
    got = compiled(data)
    assert_identical(got, numpy_passes(data))
    if got is None:
        return
    ref = whole_file(data)
    assert ref is not None, data
    videos, counts, names, codes, segments, scores = got
    assert videos == ref[0] and counts.tolist() == ref[1].tolist()
    assert [names[c] for c in codes] == [ref[2][c] for c in ref[3]]
    assert segments.tobytes() == np.ascontiguousarray(ref[4], dtype=np.float64).tobytes()
    assert scores.tobytes() == np.ascontiguousarray(ref[5], dtype=np.float64).tobytes()


def test_reads_the_plain_file_as_json_and_the_numpy_passes_do():
    data = PLAIN.encode()
    got = compiled(data)
    assert got is not None
    videos, counts, names, codes, segments, scores = got
    assert videos == ["v_a", "v_b", "v_c"] and counts.tolist() == [2, 0, 1]
    assert [names[c] for c in codes] == ["Long jump", "b", "Long jump"]
    assert segments.tolist() == [[0.5, 12.0], [3.0, 42.5], [0.0, 2.0]]
    assert math.copysign(1, scores[1]) == 1.0  # the integer -0 is Python's int 0: +0.0
    assert_read_or_declined(data)


def test_equals_the_numpy_passes_bit_for_bit_on_a_generated_file():
    # as benchmarks/eval.py's activitynet_files writes them (not imported: the sanitizer's tree has no benchmarks/)
    rng = np.random.default_rng(0)
    labels = [f"class {k:03d}" for k in range(7)]
    results = {}
    for v in range(12):
        starts = rng.uniform(0, 100, 30)
        results[f"v_{v:05d}"] = [{"label": labels[int(rng.integers(7))], "score": float(rng.random()),
                                  "segment": [float(s), float(s + rng.uniform(1, 20))]} for s in starts]
    data = json.dumps({"version": "VERSION 1.3", "results": results,
                       "external_data": {"used": False, "details": "x"}}).encode()
    got = compiled(data)
    assert got is not None and int(got[1].sum()) == 360
    assert_read_or_declined(data)


@pytest.mark.parametrize("number, expected", [
    ("-0", 0.0), ("-0.0", -0.0), ("-0e5", -0.0), ("1e-400", 0.0), ("-1e-400", -0.0), ("10e-330", 0.0),
    ("2.4e-324", 0.0), ("2.5e-324", 5e-324), ("0.1", 0.1), ("18446744073709551617", 1.8446744073709552e19),
    ("1.7976931348623157e308", 1.7976931348623157e308), ("123456789012345678901234567890", 1.2345678901234568e29),
])
def test_numbers_are_pythons_floats(number, expected):
    data = ('{"results": {"v": [{"segment": [%s, 1], "label": "a", "score": %s}]}}' % (number, number)).encode()
    got = compiled(data)
    assert got is not None
    assert got[4][0, 0].tobytes() == np.float64(expected).tobytes() == got[5][0].tobytes()
    assert_read_or_declined(data)


@pytest.mark.parametrize("number", ["1e400", "1.7976931348623159e308", "0.5e310", "-1" + "0" * 400, "1e99999999999"])
def test_an_infinite_number_declines(number):
    data = ('{"results": {"v": [{"segment": [0, 1], "label": "a", "score": %s}]}}' % number).encode()
    assert compiled(data) is None and numpy_passes(data) is None


@given(st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?\Z"))
def test_any_json_number_is_pythons_float(number):
    data = ('{"results": {"v": [{"segment": [%s, 1], "label": "a", "score": 1}]}}' % number).encode()
    value = json.loads(number)
    got = compiled(data)
    try:
        expected = float(value)  # an int: float(int), as the JSON parsers' arrays take it
    except OverflowError:
        expected = math.inf
    if not math.isfinite(expected):
        assert got is None
        return
    assert got is not None and got[4][0, 0].tobytes() == np.float64(expected).tobytes()
    assert_identical(got, numpy_passes(data))


@pytest.mark.parametrize("text", [
    '{"results": {"v": []]}',  # a ']' closes the results: the numpy passes took it before
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]]}',
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}, "results": {}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "%s", "score": 1}]}}' % ("x" * 257),
    '{"results": {"v": [{"segment": [0, 1], "label": "\\u00e9", "score": 1}]}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}, "x": NaX}',
    '{"results": {"\xff": []}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "\xc3", "score": 1}]}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "label": "a", "score": 1}]}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}, {"segment": [0, 1], "label": "a"}]}}',
    '{"results": [], "x": 1}',
    '{"results" 5: {}}',
    '{"a": {"results": {}}}',
    '',
    '   ',
    '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}',
])
def test_declines_what_the_numpy_passes_decline(text):
    data = text.encode("latin-1")
    assert compiled(data) is None and numpy_passes(data) is None


@pytest.mark.parametrize("text", [
    '{"results": {}}',
    ' {"x": [1, {"results": 2}], "results": {"v": []}, "y": NaN} ',  # NaN: the standard library's rest
    '{"results": {"v": [{"label": "", "score": 1, "segment": [2, 3]}, {"label": "", "score": 1, "segment": [2, 3]}]}}',
    '{"results": {"v": [{"segment": [0, 1], "label": "%s", "score": 1}]}}' % ("é" * 128),
])
def test_reads_what_the_numpy_passes_read(text):
    data = text.encode()
    assert compiled(data) is not None
    assert_read_or_declined(data)


def test_label_order_and_codes_are_the_numpy_passes():
    labels = ["z", "a", "Long jump", "12345678", "123456789", "ab" * 10, "", "食べる", "a b"]
    preds = [{"segment": [0, 1], "label": labels[(7 * k) % len(labels)], "score": k} for k in range(30)]
    data = json.dumps({"results": {"v": preds}}, ensure_ascii=False).encode()
    assert compiled(data) is not None
    assert_read_or_declined(data)


def test_every_prefix_and_deep_nesting_decline_without_reading_past_the_end():
    data = PLAIN.encode()
    for k in range(len(data)):
        assert_read_or_declined(data[:k])
        assert compiled(data[:k]) is None
    for deep in [b"[" * 200000, b"{" * 200000, b'{"results": {"v": [' + b"[" * 100000,
                 b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b', "results": {}}', b'"' * 7, b"{" + b'"' * 5]:
        assert_read_or_declined(deep)


_ALPHABET = b'{}[]:,"0123456789-+.eE \n\tresultsegmnlabcov\xc3\xa9\xff\x01\\'


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=120), st.lists(st.sampled_from(list(_ALPHABET)), max_size=120).map(bytes)))
def test_arbitrary_bytes_decline_or_read_as_json(data):
    assert_read_or_declined(data)


def _valid_file(draw):
    number = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=False, allow_infinity=False, width=64))
    pred = st.fixed_dictionaries({"segment": st.lists(number, min_size=2, max_size=2),
                                  "label": st.text(max_size=12), "score": number})
    results = draw(st.dictionaries(st.text(max_size=4), st.lists(pred, max_size=3), max_size=3))
    doc = {"version": "1.3", "results": results, "external_data": {"used": True, "n": None}}
    return json.dumps(doc, indent=draw(st.sampled_from([None, 1])), ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([None, (",", ":")]))).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_files_decline_or_read_as_json(data):
    raw = bytearray(_valid_file(data.draw))
    assert_read_or_declined(bytes(raw))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        kind = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = bytes(data.draw(st.lists(st.sampled_from(list(_ALPHABET)), min_size=1, max_size=3)))
        if kind == "insert":
            raw[at:at] = piece
        elif kind == "delete":
            del raw[at:at + len(piece)]
        elif kind == "replace":
            raw[at:at + len(piece)] = piece
        else:
            del raw[at:]
    assert_read_or_declined(bytes(raw))


def test_opcheck():
    for text in [PLAIN, '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}], "v": []}}']:
        data = torch.tensor(list(text.encode()), dtype=torch.uint8)
        torch.library.opcheck(torch.ops.scalekit._anet_scan.default, (data,))


def test_bad_arguments_are_named():
    # ValueError for a wrong dtype too: the stable ABI carries no TypeError.
    with pytest.raises(ValueError, match="data must be uint8"):
        torch.ops.scalekit._anet_scan(torch.zeros(3))
    with pytest.raises(ValueError, match=r"data must have shape \[B\]"):
        torch.ops.scalekit._anet_scan(torch.zeros(2, 3, dtype=torch.uint8))
