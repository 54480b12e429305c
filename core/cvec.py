"""
`Bar` objects from arrays through NautilusTrader's own `capsule_to_list`.

`Bar.from_raw_arrays_to_list` allocates five `Price`/`Quantity` objects per bar and costs
more than NautilusTrader's whole catalog read. The catalog instead hands Cython a Rust
vector of `Data_t` and `capsule_to_list` copies each element into a `Bar`. This module packs
validated arrays into that same vector with numpy and calls `capsule_to_list`.

Nothing about the layout is assumed. For each bar type and precision pair, a probe writes
a few bars to a parquet file, has NautilusTrader's Rust reader load them, and measures the
element stride and field offsets from the vector it returns; the first element, bar type
included, becomes the template every packed element starts from. The packer then packs the
probe bars itself and compares the `Bar`s with `Bar.from_raw`'s, field by field. If any step
disagrees, `pack_bars` returns None and the caller uses `Bar.from_raw_arrays_to_list`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_backfill.catalogfmt import encode_fixed, nautilus_bar_schema
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.data import Bar, BarType, capsule_to_list

_CAPSULE_NAME = b"nautilus.DataFFI.CVec"
_PROBE_ROWS = 16
_PROBE_STEP = 60_000_000_000
_PROBE_T0 = 1_700_000_000_000_000_000
# Smallest element any Data_t build can have (64-bit Bar_t alone is larger): reading
# `_PROBE_ROWS` times this from the vector never leaves its allocation.
_MIN_STRIDE = 128
CHUNK = 8_192  # elements per capsule: a 2 MB buffer, reused while still in the CPU cache

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


@dataclass(frozen=True)
class _Layout:
    template: np.ndarray  # one element, uint8, bar type and precisions filled in
    width: int  # fixed-point bytes: 16 (128-bit build) or 8
    fields: tuple[int, int, int, int, int]  # word offsets of open, high, low, close, volume
    ts_event: int  # word offsets
    ts_init: int
    # Bytes from an element's offset to the same byte of a `Bar` object's own copy of the bar
    # (None when not measured): the bar type words before ``open`` are taken from there.
    delta: int | None = None


def _probe_values(
    price_precision: int, size_precision: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    i = np.arange(_PROBE_ROWS, dtype=np.float64)
    # Small whole numbers of the last decimal: exact at any precision, and no field's raw
    # value equals another's (no ratio between the bases is a power of ten).
    units = [1000 + i, 2000 + i, 500 + i, 1500 + i, 7000 + i]
    precisions = [price_precision] * 4 + [size_precision]
    values = [u / 10.0**p for u, p in zip(units, precisions, strict=True)]
    # A gap after each bar, so no close time is also an open time.
    ts_event = _PROBE_T0 + 2 * _PROBE_STEP * np.arange(_PROBE_ROWS, dtype=np.uint64)
    return values, ts_event, ts_event + np.uint64(_PROBE_STEP)


def _rust_elements(bar_type: str, price_precision: int, size_precision: int) -> bytes | None:
    # The probe bars, as NautilusTrader's Rust parquet reader hands them to Cython.
    width = 16 if nautilus_pyo3.HIGH_PRECISION else 8
    values, ts_event, ts_init = _probe_values(price_precision, size_precision)
    precisions = [price_precision] * 4 + [size_precision]
    columns = [encode_fixed(v, p, width) for v, p in zip(values, precisions, strict=True)]
    schema = nautilus_bar_schema(bar_type, price_precision, size_precision)
    table = pa.Table.from_arrays([*columns, pa.array(ts_event), pa.array(ts_init)], schema=schema)
    fd, path = tempfile.mkstemp(suffix=".parquet", prefix="nautilus-backfill-probe-")
    os.close(fd)
    try:
        pq.write_table(table, path)
        session = nautilus_pyo3.DataBackendSession()
        session.add_file(nautilus_pyo3.NautilusDataType.Bar, "probe", path, None)
        raw = None
        for chunk in session.to_query_result():
            if raw is None and not isinstance(chunk, list):
                pointer = _capsule_pointer(chunk, _CAPSULE_NAME)
                ptr, length, _ = (ctypes.c_size_t * 3).from_address(pointer)
                if length == _PROBE_ROWS:
                    raw = ctypes.string_at(ptr, _PROBE_ROWS * _MIN_STRIDE)
            if not isinstance(chunk, list):
                nautilus_pyo3.drop_cvec_pycapsule(chunk)
        return raw
    finally:
        os.unlink(path)


def _only(haystack: bytes, needle: bytes) -> int | None:
    first = haystack.find(needle)
    if first < 0 or haystack.find(needle, first + 1) >= 0:
        return None
    return first


def _measure(raw: bytes, price_precision: int, size_precision: int) -> _Layout | None:
    width = 16 if nautilus_pyo3.HIGH_PRECISION else 8
    values, ts_event, ts_init = _probe_values(price_precision, size_precision)
    first_init = _only(raw, ts_init[0].tobytes())
    second_init = _only(raw, ts_init[1].tobytes())
    if first_init is None or second_init is None or second_init <= first_init:
        return None
    stride = second_init - first_init
    if stride < 64 or stride % 8 or stride > len(raw) // 2:
        return None
    element = raw[:stride]
    offsets = []
    precisions = [price_precision] * 4 + [size_precision]
    for v, p in zip(values, precisions, strict=True):
        encoded = encode_fixed(v[:1], p, width).buffers()[1].to_pybytes()
        at = _only(element, encoded)
        if at is None or at % 8:
            return None
        offsets.append(at // 8)
    at_event = _only(element, ts_event[0].tobytes())
    if at_event is None or at_event % 8 or first_init % 8:
        return None
    template = np.frombuffer(element, dtype=np.uint8).copy()
    return _Layout(template, width, tuple(offsets), at_event // 8, first_init // 8)  # type: ignore[arg-type]


def _pack(
    layout: _Layout,
    values: list[np.ndarray],
    precisions: list[int],
    ts_event: np.ndarray,
    ts_init: np.ndarray,
    template: np.ndarray | None = None,
) -> list[Bar] | None:
    n = len(ts_event)
    stride = len(layout.template)
    rows = min(CHUNK, n)
    buffer = np.empty((rows, stride), dtype=np.uint8)
    buffer[:] = layout.template if template is None else template
    vec = (ctypes.c_size_t * 3)()
    out: list[Bar] = []
    scale = 16 if layout.width == 16 else 9
    # Work arrays reused by every chunk and field: no column-sized temporaries.
    units = np.empty(rows, dtype=np.float64)
    spare = np.empty(rows, dtype=np.float64)
    whole = np.empty(rows, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        m = stop - start
        words = buffer[:m].view(np.uint64)
        signed = buffer[:m].view(np.int64)
        u, f, w = units[:m], spare[:m], whole[:m]
        for at, v, p in zip(layout.fields, values, precisions, strict=True):
            np.multiply(v[start:stop], 10.0**p, out=u)
            np.rint(u, out=u)
            top = max(abs(float(u.max())), abs(float(u.min())))
            if top >= 2.0**53:
                return None  # floats stop being exact whole numbers
            factor = 10 ** (scale - p)
            np.copyto(w, u, casting="unsafe")  # whole numbers: exact
            low = words[:, at]
            np.multiply(w.view(np.uint64), np.uint64(factor), out=low)  # wraps mod 2**64
            if layout.width == 8:
                continue
            if top * factor < 2.0**63:
                np.right_shift(signed[:, at], 63, out=signed[:, at + 1])
            else:
                # The float product is within 2**54 of the exact one and `low` is exact, so
                # the high word is the nearest integer to (product - low) / 2**64.
                np.multiply(u, float(factor), out=f)
                np.subtract(f, low, out=f)
                f *= 2.0**-64
                np.rint(f, out=f)
                np.copyto(signed[:, at + 1], f, casting="unsafe")
        words[:, layout.ts_event] = ts_event[start:stop]
        words[:, layout.ts_init] = ts_init[start:stop]
        vec[0], vec[1], vec[2] = buffer.ctypes.data, m, m
        # Our vector, not Rust's: the capsule has no destructor and numpy keeps the memory.
        out.extend(capsule_to_list(_capsule_new(ctypes.addressof(vec), _CAPSULE_NAME, None)))
    return out


def _same(a: Bar, b: Bar) -> bool:
    return (
        a.bar_type == b.bar_type
        and all(
            getattr(a, f).raw == getattr(b, f).raw
            and getattr(a, f).precision == getattr(b, f).precision
            for f in ("open", "high", "low", "close", "volume")
        )
        and a.ts_event == b.ts_event
        and a.ts_init == b.ts_init
    )


def _object_bytes(obj: object) -> bytes:
    # The fixed part of a Cython object (its struct), read in place.
    return ctypes.string_at(id(obj), type(obj).__basicsize__)


def _bar_offset(layout: _Layout, bar: Bar, precision: int) -> int | None:
    # Where the `Bar` object holds its open price, relative to where an element holds it.
    encoded = encode_fixed(np.array([bar.open.as_double()]), precision, layout.width)
    at = _only(_object_bytes(bar), encoded.buffers()[1].to_pybytes())
    if at is None:
        return None
    delta = at - layout.fields[0] * 8
    return delta if delta + 8 >= 0 else None


def _template_of(layout: _Layout, reference: Bar) -> np.ndarray | None:
    # The probe's element with `reference`'s bar type: the words between the element's tag
    # and its open price, copied from the `Bar` NautilusTrader built itself.
    if layout.delta is None:
        return None
    start, stop = 8 + layout.delta, layout.fields[0] * 8 + layout.delta
    raw = _object_bytes(reference)
    if stop > len(raw):
        return None
    template = layout.template.copy()
    template[8 : layout.fields[0] * 8] = np.frombuffer(raw[start:stop], dtype=np.uint8)
    return template


def _probe(bar_type: str, price_precision: int, size_precision: int) -> _Layout | None:
    try:
        raw = _rust_elements(bar_type, price_precision, size_precision)
        layout = _measure(raw, price_precision, size_precision) if raw else None
        if layout is None:
            return None
        values, ts_event, ts_init = _probe_values(price_precision, size_precision)
        precisions = [price_precision] * 4 + [size_precision]
        packed = _pack(layout, values, precisions, ts_event, ts_init)
        reference = Bar.from_raw_arrays_to_list(
            BarType.from_str(bar_type), price_precision, size_precision,
            *values, ts_event, ts_init,
        )  # fmt: skip
        if packed is None or not all(map(_same, packed, reference)):
            return None
        delta = _bar_offset(layout, reference[0], price_precision)
        measured = dataclasses.replace(layout, delta=delta)
        # The bar type copied from NautilusTrader's own `Bar` must give the same bars again.
        template = _template_of(measured, reference[0])
        repacked = _pack(measured, values, precisions, ts_event, ts_init, template)
        if template is None or repacked is None or not all(map(_same, repacked, reference)):
            return layout  # the probe's bar type only
        return measured
    except Exception:  # any surprise means the reference path
        return None


class _Layouts:
    # The probe per (bar type, precisions), as `functools.cache` would keep it, and per
    # precision pair the first layout that can take any bar type (measured `delta`), so a
    # portfolio of bar types probes once per precision pair, not once per bar type.

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_type: dict[tuple[str, int, int], _Layout | None] = {}
        self._by_pair: dict[tuple[int, int], _Layout | None] = {}

    def __call__(self, bar_type: str, price_precision: int, size_precision: int) -> _Layout | None:
        key = (bar_type, price_precision, size_precision)
        with self._lock:
            if key in self._by_type:
                return self._by_type[key]
        layout = _probe(*key)
        with self._lock:
            self._by_type[key] = layout
            pair = (price_precision, size_precision)
            if layout is not None and layout.delta is not None:
                self._by_pair.setdefault(pair, layout)
            elif pair not in self._by_pair:
                self._by_pair[pair] = None
        return layout

    def of(self, bar_type: str, price_precision: int, size_precision: int) -> _Layout | None:
        with self._lock:
            found = self._by_pair.get((price_precision, size_precision))
        return found if found is not None else self(bar_type, price_precision, size_precision)

    def probed(self, price_precision: int, size_precision: int) -> bool:
        with self._lock:
            return (price_precision, size_precision) in self._by_pair

    def cache_clear(self) -> None:
        with self._lock:
            self._by_type.clear()
            self._by_pair.clear()


_layout = _Layouts()


def layout_ready(price_precision: int, size_precision: int) -> bool:
    """
    Return whether the layout for these precisions was already probed in this process.

    Parameters
    ----------
    price_precision, size_precision : int
        The precisions.

    Returns
    -------
    bool

    """
    return _layout.probed(price_precision, size_precision)


def pack_bars(
    bar_type: BarType,
    price_precision: int,
    size_precision: int,
    values: list[np.ndarray],
    ts_event: np.ndarray,
    ts_init: np.ndarray,
) -> list[Bar] | None:
    """
    Build `Bar` objects through ``capsule_to_list``, or return None when this path cannot.

    Parameters
    ----------
    bar_type : BarType
        The bar type.
    price_precision : int
        Price decimals; values must already be rounded to them.
    size_precision : int
        Volume decimals; volumes must already be rounded to them.
    values : list[np.ndarray]
        open, high, low, close, volume as float64, each within NautilusTrader's limits.
    ts_event, ts_init : np.ndarray
        uint64 timestamps.

    Returns
    -------
    list[Bar] | None
        None when the layout probe failed or a value is too large for exact packing.

    """
    precisions = [price_precision] * 4 + [size_precision]
    n = len(ts_event)
    if not n:
        return []
    for v, p in zip(values, precisions, strict=True):
        if float(np.abs(v).max()) * 10.0**p >= 2.0**53:
            return None
    layout = _layout.of(str(bar_type), price_precision, size_precision)
    if layout is None:
        return None
    # NautilusTrader builds the first and last bars itself: their bar type goes into the
    # template, and the packed ones must equal them field for field.
    ends = [0, n - 1] if n > 1 else [0]
    reference = Bar.from_raw_arrays_to_list(
        bar_type, price_precision, size_precision,
        *(np.ascontiguousarray(v[ends]) for v in values),
        np.ascontiguousarray(ts_event[ends]), np.ascontiguousarray(ts_init[ends]),
    )  # fmt: skip
    template = _template_of(layout, reference[0])
    if template is None:
        return None
    packed = _pack(layout, values, precisions, ts_event, ts_init, template)
    if packed is None or not all(_same(packed[i], r) for i, r in zip(ends, reference, strict=True)):
        return None
    return packed
