"""HF transformers generate as the peer of the `decoder` suite: batch 1, greedy, eager
attention, float16, the same prompt length and new tokens, measured as ours is: ms per new
token in the decode phase = (time(N tokens) - time(1 token)) / (N - 1), median of 3.
Models: the embedded reference checkpoint (from its folder) and a randomly initialised
Llama with the suite's ~1.1B config (LLAMA_1B in benchmarks/src/suites/decoder.ts)."""
import os
import statistics
import time

import torch

P, N, REPS = 128, 128, 3
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
REF = os.environ.get("ATTNKIT_REFERENCE_MODEL", os.path.join(ROOT, "packages", "models", "assets", "reference-llama"))


def prompt_ids(n, vocab):
    # Same generator as benchPrompt() in decoder.ts.
    s, out = 12345, []
    for _ in range(n):
        s = (s * 1103515245 + 12345) % 2**31
        out.append(3 + (s % (vocab - 3)))
    return out


def timed_generate(model, ids, n):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def per_token_ms(model, vocab):
    ids = torch.tensor([prompt_ids(P, vocab)], device="cuda")
    timed_generate(model, ids, 8)  # warm-up
    per = []
    for _ in range(REPS):
        t1 = timed_generate(model, ids, 1)
        tn = timed_generate(model, ids, N)
        per.append((tn - t1) / (N - 1))
    return statistics.median(per)


def run():
    from transformers import LlamaConfig, LlamaForCausalLM

    rows = []
    name = "transformers generate (eager, f16)"
    if os.path.exists(os.path.join(REF, "config.json")):
        ref = LlamaForCausalLM.from_pretrained(REF, torch_dtype=torch.float16, attn_implementation="eager").cuda().eval()
        ms = per_token_ms(ref, ref.config.vocab_size)
        rows.append({"kernel": "decode-token", "shape": f"reference-llama P{P} N{N} B1", "dtype": "f16", "name": name, "medianMs": ms})
        del ref
    cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                      rope_theta=500000.0, max_position_embeddings=4096, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=None)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    with torch.device("cuda"):
        big = LlamaForCausalLM(cfg).half().eval()
    ms = per_token_ms(big, cfg.vocab_size)
    rows.append({"kernel": "decode-token", "shape": f"llama-1.1b-random P{P} N{N} B1", "dtype": "f16", "name": name, "medianMs": ms})
    return rows
