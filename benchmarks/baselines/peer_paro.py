"""PyTorch peer for benchmarks/src/suites/paro.ts: dense SDPA f16 on the same video token
count (16x32x32 tokens, 8 heads, D 64)."""
import torch
from timing import time_ms


def run():
    h, d, grid = 8, 64, (16, 32, 32)
    n = grid[0] * grid[1] * grid[2]
    q, k, v = (torch.randn(1, h, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
    shape = f"1x{h}x{'x'.join(map(str, grid))}x{d}"
    return [{"kernel": "dense", "shape": shape, "dtype": "f16", "name": "torch SDPA f16",
             "medianMs": time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))}]
