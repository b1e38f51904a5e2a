"""PyTorch peers for benchmarks/src/suites/attention.ts: scaled_dot_product_attention at
B1 H32 S4096 D128 (f32, and bf16 standing in for our f16), causal and not, and 1-query
decode over a 32k KV. Keys match the suite's rows; FLOPs/bytes are computed on our side."""
import torch
import torch.nn.functional as F
from timing import time_ms

B, H, S, D = 1, 32, 4096, 128
L_DECODE = 32768


def shape(s, l):
    return f"B{B}xH{H}xS{s}xL{l}xD{D}"


def run():
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for dtype, tdt, tname in (("f32", torch.float32, "f32"), ("f16", torch.bfloat16, "bf16")):
        q = torch.randn(B, H, S, D, device="cuda", dtype=tdt)
        k = torch.randn(B, H, S, D, device="cuda", dtype=tdt)
        v = torch.randn(B, H, S, D, device="cuda", dtype=tdt)
        causal_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        rows.append({"kernel": "prefill-causal", "shape": shape(S, S), "dtype": dtype, "name": f"torch SDPA {tname} causal", "medianMs": causal_ms})
        if dtype == "f16":
            rows.append({"kernel": "prefill-causal-plain", "shape": shape(S, S), "dtype": dtype, "name": f"torch SDPA {tname} causal", "medianMs": causal_ms})
        rows.append({"kernel": "prefill", "shape": shape(S, S), "dtype": dtype, "name": f"torch SDPA {tname}",
                     "medianMs": time_ms(lambda: F.scaled_dot_product_attention(q, k, v))})
        del q, k, v
        q = torch.randn(B, H, 1, D, device="cuda", dtype=tdt)
        k = torch.randn(B, H, L_DECODE, D, device="cuda", dtype=tdt)
        v = torch.randn(B, H, L_DECODE, D, device="cuda", dtype=tdt)
        dec_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v))
        for kernel in ("decode", "decode-selected-all"):
            rows.append({"kernel": kernel, "shape": shape(1, L_DECODE), "dtype": dtype, "name": f"torch SDPA {tname} decode (1 query)", "medianMs": dec_ms})
        del q, k, v
    return rows
