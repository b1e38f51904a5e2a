"""PyTorch peers for benchmarks/src/suites/neighborhood.ts: FlexAttention with NATTEN's
neighborhood mask (clamped window centre, per axis) as a block mask, compiled with
torch.compile when that works here (else eager, said in the row's name), and dense SDPA on
the same tokens. f16 throughout, matching our rows."""
import torch
from timing import time_ms

CASES = [((128, 128), (13, 13)), ((16, 32, 32), (7, 7, 7))]
H, D = 8, 64


def natten_mask_mod(spatial, window):
    dims = len(spatial)

    def coords(idx):
        out = []
        for a in reversed(range(dims)):
            out.append(idx % spatial[a])
            idx = idx // spatial[a]
        return list(reversed(out))

    def mask_mod(b, h, q_idx, kv_idx):
        qc, kc = coords(q_idx), coords(kv_idx)
        ok = None
        for a in range(dims):
            k = window[a]
            centre = torch.clamp(qc[a], k // 2, spatial[a] - 1 - k // 2)
            inside = (kc[a] - centre).abs() <= k // 2
            ok = inside if ok is None else ok & inside
        return ok

    return mask_mod


def run():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    rows = []
    try:
        flex = torch.compile(flex_attention, dynamic=False)
        mode = "compiled"
    except Exception as e:  # pragma: no cover
        flex, mode = flex_attention, f"eager ({type(e).__name__})"
    for spatial, window in CASES:
        n = 1
        for s in spatial:
            n *= s
        q, k, v = (torch.randn(1, H, n, D, device="cuda", dtype=torch.float16) for _ in range(3))
        bm = create_block_mask(natten_mask_mod(spatial, window), None, None, n, n, device="cuda")
        kernel = "na2d" if len(spatial) == 2 else "na3d"
        shape = f"1x{H}x{'x'.join(map(str, spatial))}x{D}_k{'x'.join(map(str, window))}"
        try:
            ms = time_ms(lambda: flex(q, k, v, block_mask=bm))
            name = f"FlexAttention f16 {mode}, NATTEN block mask"
        except Exception as e:
            ms = time_ms(lambda: flex_attention(q, k, v, block_mask=bm))
            name = f"FlexAttention f16 eager (compile failed: {type(e).__name__}), NATTEN block mask"
        rows.append({"kernel": kernel, "shape": shape, "dtype": "f16", "name": name, "medianMs": ms,
                     "sparsity": float(bm.sparsity())})
        rows.append({"kernel": "dense", "shape": f"1x{H}x{n}x{D}", "dtype": "f16", "name": "torch SDPA f16",
                     "medianMs": time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))})
    return rows
