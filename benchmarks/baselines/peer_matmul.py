"""PyTorch peers for benchmarks/src/suites/matmul.ts: square matmuls (f32 without TF32, and
bf16 standing in for our f16) and the decoder's x @ W.T with W [N, K] in bf16."""
import torch
from timing import time_ms

def run():
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for n in (4096, 8192):
        for dtype, tdt, name in (("f32", torch.float32, "torch.matmul f32 (no TF32)"), ("f16", torch.bfloat16, "torch.matmul bf16")):
            a = torch.randn(n, n, device="cuda", dtype=tdt)
            b = torch.randn(n, n, device="cuda", dtype=tdt)
            rows.append({"kernel": "matmul", "shape": f"{n}x{n}x{n}", "dtype": dtype, "name": name, "medianMs": time_ms(lambda: a @ b)})
            del a, b
    d = 4096
    w = torch.randn(d, d, device="cuda", dtype=torch.bfloat16)
    for s in (1, 4, 8, 16, 64):
        x = torch.randn(s, d, device="cuda", dtype=torch.bfloat16)
        rows.append({"kernel": "matmul-decode", "shape": f"{s}x{d}x{d}", "dtype": "f16", "name": "torch bf16 x @ W.T (W [N,K])",
                     "medianMs": time_ms(lambda: x @ w.t())})
    return rows
