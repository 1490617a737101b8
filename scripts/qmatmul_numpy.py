"""The numpy side of `cpu_bench`'s qmatmul comparison: the same u4 weight-only quantized matmul
as an f32 dequantize-then-matmul in numpy, timed side by side with the Cranelift backend.

Usage: python3 scripts/qmatmul_numpy.py DIR GROUP
DIR holds a.npy (f16 [m, k]), b.npy (the u4 codes as uint8 [k, n]), scales.npy and
zero_points.npy (f16 [k / GROUP, n]) and c_cpu.npy (the cpu backend's f16 result). Prints one
line `numpy_ms=BEST dequant_ms=BEST max_rel_diff=D` (best of five runs; the difference from
the cpu backend's result relative to the largest magnitude of the numpy result).
"""

import sys
import time

import numpy as np


def main() -> None:
    folder, group = sys.argv[1], int(sys.argv[2])
    a = np.load(f"{folder}/a.npy").astype(np.float32)
    b = np.load(f"{folder}/b.npy")
    scales = np.load(f"{folder}/scales.npy").astype(np.float32)
    zero_points = np.load(f"{folder}/zero_points.npy").astype(np.float32)
    c_cpu = np.load(f"{folder}/c_cpu.npy").astype(np.float32)

    def dequantize() -> np.ndarray:
        # (code - zero point) * scale in f32, each group of rows sharing its row of scales.
        w = b.astype(np.float32) - np.repeat(zero_points, group, axis=0)[: b.shape[0]]
        w *= np.repeat(scales, group, axis=0)[: b.shape[0]]
        return w

    best_total = best_dequant = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        w = dequantize()
        middle = time.perf_counter()
        c = a @ w
        end = time.perf_counter()
        best_total = min(best_total, end - start)
        best_dequant = min(best_dequant, middle - start)
    scale = max(float(np.abs(c).max()), 1e-30)
    diff = float(np.abs(c - c_cpu).max()) / scale
    print(f"numpy_ms={best_total * 1e3:.1f} dequant_ms={best_dequant * 1e3:.1f} max_rel_diff={diff:.2e}")


if __name__ == "__main__":
    main()
