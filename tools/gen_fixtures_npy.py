#!/usr/bin/python3
"""Writes the numpy fixtures of tests/data/test_npy.cpp and test_tensors.cpp into tests/fixtures/npy/:
.npy files in every supported descriptor, byte order, version and layout, .npz archives (stored, deflated,
zip64 end records), refused inputs (object/ragged, unicode, structured, complex), and a manifest.json
giving each readable array's shape and values (float64 or int) so the C++ tests compare against numpy.

Deterministic (fixed values, fixed zip timestamps). Run with Debian's numpy: /usr/bin/python3 tools/gen_fixtures_npy.py
"""
import io
import json
import os
import struct
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy")
manifest = {}


def npy_bytes(arr, version=None):
    f = io.BytesIO()
    np.lib.format.write_array(f, arr, version=version, allow_pickle=True)
    return f.getvalue()


def put(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def record(key, arr):
    a = np.asarray(arr)
    vals = a.astype(np.float64).ravel(order="C").tolist() if a.dtype.kind == "f" else a.astype(np.int64).ravel(order="C").tolist()
    manifest[key] = {"shape": list(a.shape), "descr": a.dtype.str, "values": vals}


def npy(name, arr, version=None):
    put(name, npy_bytes(arr, version))
    record(name, arr)


def npz(name, arrays, compressed, record_values=True):
    """Like np.savez / np.savez_compressed (zip64 extra fields in the local headers), fixed timestamps."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method, allowZip64=True) as z:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            with z.open(info, "w", force_zip64=True) as f:
                f.write(npy_bytes(np.asanyarray(arr)))
    data = buf.getvalue()
    put(name, data)
    for key, arr in arrays.items():
        if record_values and np.asarray(arr).dtype.kind in "biuf":
            record(name + ":" + key, arr)
    return data


def to_zip64_end(data):
    """Rewrites the end of central directory as zip64 (zip64 EOCD record + locator + EOCD of 0xFF.. fields)."""
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, n_disk, n, cd_size, cd_off, _ = struct.unpack("<IHHHHIIH", data[eocd:eocd + 22])
    body = data[:eocd]
    z64_off = len(body)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n_disk, n, cd_size, cd_off)
    loc = struct.pack("<IIQI", 0x07064B50, 0, z64_off, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + z64 + loc + end


def main():
    os.makedirs(OUT, exist_ok=True)
    # ---- .npy: descriptors, byte orders, versions, layouts --------------------------------------
    npy("f4_2x3.npy", np.arange(6, dtype="<f4").reshape(2, 3) / 4 - 0.5)
    npy("f8_be.npy", np.array([1.5, -2.25, 1e300], dtype=">f8"))
    npy("f2.npy", np.array([0.5, -1.0, 65504.0, 6.1035156e-05, 5.96e-08], dtype="<f2"))
    npy("i8.npy", np.array([-5, 0, 7, 2147483647, -2147483648], dtype="<i8"))
    npy("i8_be.npy", np.array([[-3, 4]], dtype=">i8"))
    npy("i4_be.npy", np.array([-70000, 1, 2], dtype=">i4"))
    npy("i2.npy", np.array([-300, 300], dtype="<i2"))
    npy("u2_be.npy", np.array([65535, 1], dtype=">u2"))
    npy("u4.npy", np.array([4000000000 // 2, 3], dtype="<u4"))
    npy("u8.npy", np.array([9, 10], dtype="<u8"))
    npy("u1.npy", np.array([[0, 128, 255]], dtype="|u1"))
    npy("i1.npy", np.array([-128, 127], dtype="|i1"))
    npy("b1.npy", np.array([True, False, True], dtype="|b1"))
    npy("scalar_0d.npy", np.array(3.25, dtype="<f4"))
    npy("empty_0x3.npy", np.zeros((0, 3), dtype="<f4"))
    npy("fortran_2x3x2.npy", np.asfortranarray(np.arange(12, dtype="<i4").reshape(2, 3, 2)))
    npy("v2.npy", np.array([1.0, 2.0], dtype="<f4"), version=(2, 0))
    npy("v3.npy", np.array([[7, 8]], dtype="<i4"), version=(3, 0))
    # ---- refused .npy -----------------------------------------------------------------------------
    put("bad_unicode.npy", npy_bytes(np.array(["ab", "c"])))
    put("bad_structured.npy", npy_bytes(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])))
    put("bad_complex.npy", npy_bytes(np.array([1 + 2j], dtype="<c8")))
    put("bad_i8_range.npy", npy_bytes(np.array([2**40], dtype="<i8")))
    # ---- .npz -------------------------------------------------------------------------------------
    rng = np.random.default_rng(13)
    inp = rng.standard_normal((6, 4)).astype("<f4")
    lab = np.array([0, 2, 1, 2, 0, 1], dtype="<i8")
    npz("stored.npz", {"input": inp, "label": lab}, compressed=False)
    deflated = npz("deflated.npz", {"input": inp, "label": lab, "big_be": np.arange(300, dtype=">f8").reshape(100, 3)},
                   compressed=True)
    put("zip64_end.npz", to_zip64_end(deflated))
    npz("images_u8.npz", {"input": rng.integers(0, 256, (5, 1, 3, 3)).astype("|u1"),
                          "label": np.array([1, 0, 3, 2, 1], dtype="|u1"),
                          "test_input": rng.integers(0, 256, (2, 1, 3, 3)).astype("|u1"),
                          "test_label": np.array([3, 0], dtype="<i4")}, compressed=True)
    npz("unlabelled.npz", {"input": rng.standard_normal((4, 20)).astype("<f8")}, compressed=False)
    # CLI inputs (tests/scripts/test_run.sh): MNIST-shaped float32 digits for the zoo models, and 20-feature
    # vectors of 3 classes (class c: feature c shifted by +3) for a Linear-only spec trained on tensors:FILE
    npz("digits.npz", {"input": rng.standard_normal((4, 1, 28, 28)).astype("<f4"),
                       "label": np.array([3, 1, 4, 1], dtype="<i8")}, compressed=True, record_values=False)
    def vectors(n):
        y = rng.integers(0, 3, n)
        x = rng.standard_normal((n, 20)).astype("<f4")
        x[np.arange(n), y] += 3.0
        return x, y.astype("<i8")
    xtr, ytr = vectors(96)
    xte, yte = vectors(32)
    npz("vectors.npz", {"input": xtr, "label": ytr, "test_input": xte, "test_label": yte}, compressed=False,
        record_values=False)
    npy_plain = npy_bytes(xte[:5])
    put("vectors_x.npy", npy_plain)  # one input array for `qforge run --inputs X.npy` (first 5 test vectors)
    # a two-input model's inputs (a, b) and, for the single-input twin, their sum
    a, b = xte[5:8], xte[8:11]
    npz("pair.npz", {"a": a, "b": b}, compressed=False, record_values=False)
    put("pair_sum.npy", npy_bytes(a + b))
    # refused .npz: ragged (object) arrays, a wrong label dtype, mismatched lengths, a typo'd name
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1.0, 2.0], [3.0]
    npz("bad_ragged.npz", {"input": ragged}, compressed=False)
    npz("bad_label_dtype.npz", {"input": inp, "label": lab.astype("<f4")}, compressed=False)
    npz("bad_label_length.npz", {"input": inp, "label": lab[:5]}, compressed=True)
    npz("bad_test_shape.npz", {"input": inp, "test_input": np.zeros((2, 5), dtype="<f4")}, compressed=False)
    npz("bad_name.npz", {"input": inp, "labels": lab}, compressed=False)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
