"""Re-derive the parity fixtures with an independent float64 NumPy forward pass.

No torch needed: reads the safetensors checkpoints and parity files directly, runs a
Llama / Qwen2 decoder in float64 (HF semantics: RMSNorm, rotate_half RoPE, GQA, SwiGLU,
causal softmax), and reports, per prompt, the largest logit difference to the HF float32
fixture and whether the float64 greedy continuation equals `greedy64`. It also writes the
top-1 minus top-2 logit gap at every greedy step (`parity-gaps.json` beside the fixtures):
a float32 implementation may legitimately pick the other token where that gap is tiny.

    python3 check_fixtures_numpy.py --fixtures ../packages/models/test/fixtures \
        --ref ../packages/models/assets/reference-llama
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32, "I32": np.int32, "F64": np.float64}


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        buf = raw[base + start : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out, meta


def read_checkpoint(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    config = json.loads((folder / "config.json").read_text())
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    weights: dict[str, np.ndarray] = {}
    for f in files:
        weights.update(read_safetensors(folder / f)[0])
    return {k: v.astype(np.float64) for k, v in weights.items()}, config


def rope_theta(config: dict) -> float:
    params = config.get("rope_parameters") or {}
    return float(params.get("rope_theta", config.get("rope_theta", 10000.0)))


def forward(w: dict[str, np.ndarray], c: dict, ids: np.ndarray) -> np.ndarray:
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    D = c.get("head_dim") or c["hidden_size"] // H
    eps = c["rms_norm_eps"]
    S = len(ids)

    def norm(x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    inv = 1.0 / rope_theta(c) ** (np.arange(0, D, 2, dtype=np.float64) / D)
    ang = np.arange(S, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)

    def rope(x):  # x [heads, S, D]
        half = np.concatenate([-x[..., D // 2 :], x[..., : D // 2]], axis=-1)
        return x * cos + half * sin

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    x = w["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((S, S), -np.inf), k=1)
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = linear(h, p + "self_attn.q_proj").reshape(S, H, D).transpose(1, 0, 2)
        k = linear(h, p + "self_attn.k_proj").reshape(S, KV, D).transpose(1, 0, 2)
        v = linear(h, p + "self_attn.v_proj").reshape(S, KV, D).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, H // KV, axis=0)
        v = np.repeat(v, H // KV, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = x + linear(a.transpose(1, 0, 2).reshape(S, H * D), p + "self_attn.o_proj")
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g = linear(h, p + "mlp.gate_proj")
        x = x + linear(g / (1 + np.exp(-g)) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = norm(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def check(parity: Path, checkpoint: Path) -> dict:
    w, c = read_checkpoint(checkpoint)
    fx, meta = read_safetensors(parity)
    report = {"checkpoint": str(checkpoint.name), "prompts": {}}
    i = 0
    while f"prompt{i}.ids" in fx:
        ids = fx[f"prompt{i}.ids"].astype(np.int64)
        logits = forward(w, c, ids)
        ref = fx[f"prompt{i}.logits"].astype(np.float64)
        seq, gaps = list(ids), []
        for _ in range(64):
            last = forward(w, c, np.array(seq))[-1]
            top2 = np.sort(last)[-2:]
            gaps.append(round(float(top2[1] - top2[0]), 6))
            seq.append(int(last.argmax()))
        greedy = seq[len(ids) :]
        hf = fx[f"prompt{i}.greedy64"].tolist()
        first_diff = next((t for t in range(64) if greedy[t] != hf[t]), None)
        report["prompts"][f"prompt{i}"] = {
            "tokens": len(ids),
            "max_abs_logit_diff_vs_hf": float(np.abs(logits - ref).max()),
            "logit_scale": float(np.abs(ref).max()),
            "greedy_matches_hf": first_diff is None,
            "first_greedy_difference": first_diff,
            "min_gap": min(gaps),
            "min_gap_step": int(np.argmin(gaps)),
            "gaps": gaps,
        }
        i += 1
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", type=Path, required=True)
    p.add_argument("--ref", type=Path, required=True)
    args = p.parse_args()
    pairs = {
        "parity-reference-llama.safetensors": args.ref,
        "parity-tiny-qwen2.safetensors": args.fixtures / "tiny-qwen2",
        "parity-tiny-qwen2-bf16.safetensors": args.fixtures / "tiny-qwen2-bf16",
    }
    out = {name: check(args.fixtures / name, folder) for name, folder in pairs.items()}
    sharded = check(args.fixtures / "parity-tiny-qwen2.safetensors", args.fixtures / "tiny-qwen2-sharded")
    out["parity-tiny-qwen2.safetensors (tiny-qwen2-sharded)"] = sharded
    (args.fixtures / "parity-gaps.json").write_text(json.dumps(out, indent=1) + "\n")
    for name, r in out.items():
        for k, v in r["prompts"].items():
            print(f"{name:52s} {k}: max|dlogit| {v['max_abs_logit_diff_vs_hf']:.2e} "
                  f"(scale {v['logit_scale']:.1f}) greedy==hf {v['greedy_matches_hf']} "
                  f"min gap {v['min_gap']:.2e} at step {v['min_gap_step']}")


if __name__ == "__main__":
    main()
