#!/usr/bin/env python3
"""The reference side of the quantized-matmul benchmark: torch fp16 matmul (cuBLAS) and a
standard Triton W4A16 kernel, timed on the GPU for the shapes given.

    python3 scripts/qmatmul_reference_bench.py 1x8192x8192 16x8192x8192 ...

`qmatmul_bench` (cargo run --release -p tl-examples --example qmatmul_bench) runs this once
with all its shapes and puts the numbers beside its own. For each shape MxNxK it prints

    RESULT M N K TORCH_FP16_MS TRITON_W4A16_MS

(`nan` where a measurement failed, with the reason on stderr). The products are
y[M, N] = x[M, K] @ W[K, N]: torch multiplies f16 x by an f16 W; the Triton kernel takes W
as u4 codes packed eight to an int32 along k, with f16 scales and f16 zero points per group
of 128 rows, dequantizes each tile as (q - z) * s in f16 and multiplies on the tensor cores
(tiles BM/BN/BK/stages = 16/128/64/3 for M <= 16, 64/128/64/3 above, 4 warps). Before
timing, the Triton kernel is checked against torch on the dequantized weights (relative
Frobenius error below 1e-2, no NaN). Times are medians of `triton.testing.do_bench`, which
clears the L2 cache before every run.

`--check-only` runs the correctness check alone at small shapes, on the CPU when there is no
GPU (set TRITON_INTERPRET=1 to run the Triton kernel in Triton's interpreter there).
"""

import math
import sys

import torch
import triton
import triton.language as tl

GROUP = 128


@triton.jit
def w4a16_kernel(a_ptr, b_ptr, s_ptr, z_ptr, c_ptr, M, N, K,
                 GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # One block computes a BLOCK_M x BLOCK_N tile of c; N and K are multiples of the tiles
    # (the layer shapes of Llama-3), M is masked.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * K + offs_k[None, :]
    # Row k of the codes is nibble k % 8 of packed row k // 8.
    b_ptrs = b_ptr + (offs_k[:, None] // 8) * N + offs_n[None, :]
    shifts = (offs_k % 8) * 4
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs, mask=offs_m[:, None] < M, other=0.0)
        packed = tl.load(b_ptrs)
        group = k0 // GROUP
        s = tl.load(s_ptr + group * N + offs_n)
        z = tl.load(z_ptr + group * N + offs_n)
        q = (packed >> shifts[:, None]) & 0xF
        w = (q.to(tl.float16) - z[None, :]) * s[None, :]
        acc += tl.dot(a, w)
        a_ptrs += BLOCK_K
        b_ptrs += (BLOCK_K // 8) * N
    c_ptrs = c_ptr + offs_m[:, None] * N + offs_n[None, :]
    tl.store(c_ptrs, acc.to(tl.float16), mask=offs_m[:, None] < M)


def tiles(m):
    """(BLOCK_M, BLOCK_N, BLOCK_K, stages) for m rows."""
    return (16, 128, 64, 3) if m <= 16 else (64, 128, 64, 3)


def w4a16(a, packed, scales, zeros, n, k):
    m = a.shape[0]
    c = torch.empty((m, n), dtype=torch.float16, device=a.device)
    bm, bn, bk, stages = tiles(m)
    grid = (triton.cdiv(m, bm), n // bn)
    w4a16_kernel[grid](a, packed, scales, zeros, c, m, n, k, GROUP=GROUP, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                       num_warps=4, num_stages=stages)
    return c


def random_problem(m, n, k, device, generator):
    """f16 activations (not zero-mean), u4 codes packed along k, f16 scales and zero points."""
    a = (torch.rand((m, k), generator=generator, device=device) * 2 - 0.75).to(torch.float16)
    codes = torch.randint(0, 16, (k, n), generator=generator, device=device, dtype=torch.int32)
    nibbles = codes.reshape(k // 8, 8, n)
    packed = torch.zeros((k // 8, n), dtype=torch.int32, device=device)
    for i in range(8):
        packed |= nibbles[:, i, :] << (4 * i)
    groups = k // GROUP
    scales = ((1 + torch.rand((groups, n), generator=generator, device=device)) / 15).to(torch.float16)
    zeros = torch.randint(0, 16, (groups, n), generator=generator, device=device).to(torch.float16)
    return a, codes, packed, scales, zeros


def dequantized(codes, scales, zeros):
    """The weights as the kernel computes them: (q - z) * s, each step rounded to f16."""
    z = zeros.repeat_interleave(GROUP, dim=0)
    s = scales.repeat_interleave(GROUP, dim=0)
    return (codes.to(torch.float16) - z) * s


def check(m, n, k, device, generator):
    a, codes, packed, scales, zeros = random_problem(m, n, k, device, generator)
    got = w4a16(a, packed, scales, zeros, n, k).double()
    want = a.double() @ dequantized(codes, scales, zeros).double()
    error = (torch.linalg.norm(got - want) / torch.linalg.norm(want)).item()
    if not math.isfinite(error) or error > 1e-2 or torch.isnan(got).any():
        raise SystemExit(f"Triton W4A16 at {m}x{n}x{k}: relative error {error:.3e} against torch")
    print(f"check {m}x{n}x{k}: Triton W4A16 relative error {error:.2e}", file=sys.stderr)


def timed(fn):
    try:
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    except Exception as e:  # a failed measurement is reported, the others still run
        print(f"measurement failed: {e}", file=sys.stderr)
        return float("nan")


def main(argv):
    generator_device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=generator_device)
    generator.manual_seed(20261204)
    if "--check-only" in argv:
        for m in (1, 16, 128):
            check(m, 256, 512, generator_device, generator)
        return
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: nothing to time (--check-only runs the check on the CPU)")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}", file=sys.stderr)
    for m in (1, 16, 128):
        check(m, 1024, 2048, "cuda", generator)
    for shape in argv:
        m, n, k = (int(x) for x in shape.split("x"))
        a, codes, packed, scales, zeros = random_problem(m, n, k, "cuda", generator)
        w = dequantized(codes, scales, zeros)
        del codes
        torch_ms = timed(lambda: a @ w)
        triton_ms = timed(lambda: w4a16(a, packed, scales, zeros, n, k))
        print(f"RESULT {m} {n} {k} {torch_ms} {triton_ms}", flush=True)
        del a, packed, scales, zeros, w
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])
