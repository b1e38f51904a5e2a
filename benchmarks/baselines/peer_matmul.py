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
    return rows
