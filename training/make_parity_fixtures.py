"""Write the HF-transformers parity fixtures that attnkit's model tests compare against.

For the trained reference Llama and for a seeded, randomly initialised tiny Qwen2 (also
saved sharded and in bf16), each parity file holds, for 3 fixed prompts i:
  prompt{i}.ids      int32 [S]      tokens, `<|bos|>` first (the tokenizer adds it)
  prompt{i}.logits   float32 [S, V] logits at every position
  prompt{i}.greedy64 int32 [64]     argmax continuation, 64 tokens, not stopped at EOS
Logits come from the checkpoint's stored weights (f16 or bf16) widened to float32 and run
in float32 on the CPU, so the fixture is exactly what a float32 implementation should get.
The safetensors `__metadata__` holds the prompt texts (JSON) and how the numbers were made.

Run on the GPU machine (any machine with torch and transformers) from this folder:
    python3 make_parity_fixtures.py --ref ../packages/models/assets/reference-llama \
        --out ../packages/models/test/fixtures
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

SEED = 4321
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

HERE = Path(__file__).resolve().parent


def load(cls, path: Path):
    try:
        model = cls.from_pretrained(path, dtype=torch.float32)
    except TypeError:
        model = cls.from_pretrained(path, torch_dtype=torch.float32)
    return model.eval()


def fixture_prompts(tok) -> list[str]:
    """Two openings of held-out KJV books and one key-value retrieval prompt, 8-32 tokens."""
    held = (HERE / "data" / "kjv-heldout.txt").read_text(encoding="ascii").split("\n")
    jonah = next(v for v in held if v.startswith("Now the word of the LORD came unto Jonah"))
    vanity = next(v for v in held if v.startswith("Vanity of vanities, saith the Preacher"))
    pairs = [("lop", "4821"), ("dus", "9035"), ("rat", "1767")]
    prompts = [jonah, vanity]
    for n in (3, 2, 1):
        kv = "".join(f"\nkey {k}: {v}" for k, v in pairs[:n]).lstrip("\n") + f"\n\nQuery: key {pairs[0][0]}:"
        if len(tok.encode(kv).ids) <= 32:
            prompts.append(kv)
            break
    out = []
    for text in prompts:
        words = text.split(" ")
        while len(tok.encode(" ".join(words)).ids) > 32:
            words.pop()
        text = " ".join(words)
        n = len(tok.encode(text).ids)
        assert 8 <= n <= 32, (text, n)
        out.append(text)
    return out


@torch.no_grad()
def greedy(model, ids: torch.Tensor, n: int) -> tuple[list[int], float]:
    """Full recompute each step; also returns the smallest top-1 minus top-2 logit gap."""
    seq = ids.tolist()
    gap = float("inf")
    for _ in range(n):
        logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
        top = torch.topk(logits, 2).values
        gap = min(gap, (top[0] - top[1]).item())
        seq.append(int(logits.argmax()))
    return seq[len(ids) :], gap


@torch.no_grad()
def write_parity(model, tok, prompts: list[str], path: Path, about: dict) -> dict:
    tensors = {}
    report = {"prompts": [], "generate_agrees": []}
    for i, text in enumerate(prompts):
        ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
        logits = model(input_ids=ids[None]).logits[0].float()
        cont, gap = greedy(model, ids, 64)
        # HF generate (KV cache) as a cross-check; it may stop early at EOS.
        gen = model.generate(ids[None], attention_mask=torch.ones_like(ids[None]), do_sample=False,
                             max_new_tokens=64, pad_token_id=2)[0, len(ids):].tolist()
        agrees = gen == cont[: len(gen)]
        tensors[f"prompt{i}.ids"] = ids.to(torch.int32).contiguous()
        tensors[f"prompt{i}.logits"] = logits.contiguous()
        tensors[f"prompt{i}.greedy64"] = torch.tensor(cont, dtype=torch.int32)
        report["prompts"].append({"text": text, "tokens": len(ids), "min_top2_gap": round(gap, 5),
                                  "greedy_text": tok.decode(cont)})
        report["generate_agrees"].append(agrees)
    meta = {
        "prompts": json.dumps(prompts),
        "about": json.dumps(about),
        "greedy": "argmax of float32 logits, full recompute each step, 64 tokens, no stop at EOS",
        "min_top2_gap": json.dumps([p["min_top2_gap"] for p in report["prompts"]]),
        "bos_prepended": "true",
    }
    save_file(tensors, str(path), metadata=meta)
    return report


def write_tokenizer(ref: Path, dst: Path, chat_template: str | None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(ref / "tokenizer.json", dst / "tokenizer.json")
    cfg = json.loads((ref / "tokenizer_config.json").read_text())
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def randomize(model, seed: int) -> None:
    """Spread the random weights so logits have clear winners, and make every bias and
    norm weight non-trivial so a loader that skips one fails the parity test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def save_sharded(model, dst: Path) -> list[str]:
    for size in ("200KB", "300KB", "150KB", "400KB", "100KB"):
        if dst.exists():
            shutil.rmtree(dst)
        try:
            model.save_pretrained(dst, max_shard_size=size, safe_serialization=True)
        except TypeError:
            model.save_pretrained(dst, max_shard_size=size)
        shards = sorted(f.name for f in dst.glob("model-*.safetensors"))
        if len(shards) == 2 and (dst / "model.safetensors.index.json").exists():
            return shards
    raise RuntimeError(f"could not get exactly 2 shards, last try gave {shards}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(8)
    torch.manual_seed(SEED)
    import transformers
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer.from_file(str(args.ref / "tokenizer.json"))
    prompts = fixture_prompts(tok)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    summary = {}

    ref = load(LlamaForCausalLM, args.ref)
    summary["reference-llama"] = write_parity(
        ref, tok, prompts, args.out / "parity-reference-llama.safetensors",
        {"checkpoint": "packages/models/assets/reference-llama", "weights": "float16",
         "compute": "float32 cpu", **versions},
    )
    vocab = ref.config.vocab_size
    del ref

    config = Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=1, eos_token_id=0, pad_token_id=2,
    )
    torch.manual_seed(SEED)
    tiny = Qwen2ForCausalLM(config)
    randomize(tiny, SEED)
    tiny = tiny.half().eval()
    dst = args.out / "tiny-qwen2"
    try:
        tiny.save_pretrained(dst, safe_serialization=True)
    except TypeError:
        tiny.save_pretrained(dst)
    write_tokenizer(args.ref, dst, CHAT_TEMPLATE)
    shards = save_sharded(tiny, args.out / "tiny-qwen2-sharded")
    write_tokenizer(args.ref, args.out / "tiny-qwen2-sharded", CHAT_TEMPLATE)

    tiny32 = load(Qwen2ForCausalLM, dst)
    summary["tiny-qwen2"] = write_parity(
        tiny32, tok, prompts, args.out / "parity-tiny-qwen2.safetensors",
        {"checkpoint": "packages/models/test/fixtures/tiny-qwen2 (and tiny-qwen2-sharded, same f16 weights)",
         "weights": "float16", "compute": "float32 cpu", "seed": SEED, **versions},
    )
    sharded32 = load(Qwen2ForCausalLM, args.out / "tiny-qwen2-sharded")
    same = all(torch.equal(a, b) for a, b in zip(tiny32.state_dict().values(), sharded32.state_dict().values()))
    summary["tiny-qwen2-sharded"] = {"shards": shards, "same_weights_as_unsharded": same}

    bf16_dir = args.out / "tiny-qwen2-bf16"
    tiny_bf16 = tiny32.to(torch.bfloat16)
    try:
        tiny_bf16.save_pretrained(bf16_dir, safe_serialization=True)
    except TypeError:
        tiny_bf16.save_pretrained(bf16_dir)
    write_tokenizer(args.ref, bf16_dir, CHAT_TEMPLATE)
    summary["tiny-qwen2-bf16"] = write_parity(
        load(Qwen2ForCausalLM, bf16_dir), tok, prompts, args.out / "parity-tiny-qwen2-bf16.safetensors",
        {"checkpoint": "packages/models/test/fixtures/tiny-qwen2-bf16", "weights": "bfloat16",
         "compute": "float32 cpu", "seed": SEED, **versions},
    )

    # The tokenizer files must load in HF as they will in attnkit; the chat template must render.
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(dst)
        chat = hf.apply_chat_template([{"role": "user", "content": "Who was Jonah?"}],
                                      tokenize=False, add_generation_prompt=True)
        summary["hf_tokenizer"] = {
            "matches_tokenizers": all(hf(t)["input_ids"] == tok.encode(t).ids for t in prompts),
            "chat_text": chat,
            "chat_ids": tok.encode(chat).ids,
        }
    except Exception as e:  # reported, not fatal: the fixtures above do not depend on it
        summary["hf_tokenizer"] = {"error": repr(e)}

    (args.out / "fixtures-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
