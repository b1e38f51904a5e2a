"""Train the small reference Llama checkpoint of attnkit and evaluate it.

Steps, all seeded:
  1. a byte-level BPE tokenizer (digits split one per token) on the KJV train split plus a
     few synthetic task samples;
  2. the held-out retrieval sets (passkey, key-value, needle in a haystack) written as JSONL;
  3. a 6-layer GQA `LlamaForCausalLM` trained in bf16 autocast on a mixture of KJV text
     and synthetic retrieval sequences, curriculum 256 -> 512 -> 1024 -> 2048 tokens, with
     the loss on answer tokens added once more;
  4. the f16 checkpoint (config, safetensors, tokenizer, generation config, README);
  5. greedy exact match per task and length, and held-out perplexity, of the saved f16
     weights computed in float32.

Run on the GPU machine from this folder:
    python3 train_reference.py --out ../packages/models/assets/reference-llama
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import tasks

SPECIAL_TOKENS = ["<|endoftext|>", "<|bos|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
EOS, BOS, PAD = 0, 1, 2

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

# Curriculum: (sequence length, share of the steps). Every step sees the same token count.
PHASES = ((256, 0.15), (512, 0.20), (1024, 0.25), (2048, 0.40))
TASK_WEIGHTS = {"passkey": 0.15, "kv": 0.5, "niah": 0.35}
EVAL_LENGTHS = (512, 1024, 2048)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(train_text: str, verses: list[str], vocab_size: int, seed: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rng = random.Random(seed)
    synthetic = [
        tasks.make(tasks.TASKS[i % 3], rng, 512, tasks.estimate_tokens, verses).full_text()
        for i in range(300)
    ]
    lines = train_text.split("\n")
    chunks = ["\n".join(lines[i : i + 64]) for i in range(0, len(lines), 64)]
    tok.train_from_iterator(chunks + synthetic, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A",
        pair="<|bos|> $A <|bos|> $B",
        special_tokens=[("<|bos|>", BOS)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def tokenizer_config(model_max_length: int, chat_template: str | None = None) -> dict:
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>",
        "unk_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    return cfg


def make_counter(tok: Tokenizer):
    @functools.lru_cache(maxsize=1 << 18)
    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


# ---------------------------------------------------------------- data


def encode_sample(tok: Tokenizer, sample: tasks.Sample) -> tuple[list[int], list[int]]:
    """Token ids with BOS, and the positions of answer tokens; pieces are encoded one by one,
    which equals encoding the whole text (see tasks.py), so answer positions are exact."""
    ids = [BOS] + tok.encode(sample.prompt, add_special_tokens=False).ids
    answer_pos: list[int] = []
    for q, a in ((None, sample.answer),) + sample.extra:
        if q is not None:
            ids += tok.encode(q, add_special_tokens=False).ids
        a_ids = tok.encode(a, add_special_tokens=False).ids
        answer_pos += list(range(len(ids), len(ids) + len(a_ids)))
        ids += a_ids
    return ids, answer_pos


class Mixture(torch.utils.data.IterableDataset):
    """Yields whole batches: ids [B, L], lm weights and answer weights [B, L-1] (targets)."""

    def __init__(self, tok_path, text_ids, verses, seq_len, batch, n_batches, synth_frac, seed):
        super().__init__()
        self.tok_path = tok_path
        self.text_ids = text_ids
        self.verses = verses
        self.seq_len = seq_len
        self.batch = batch
        self.n_batches = n_batches
        self.synth_frac = synth_frac
        self.seed = seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        rng = random.Random(self.seed * 7919 + wid)
        tok = Tokenizer.from_file(self.tok_path)
        count = make_counter(tok)
        names = list(TASK_WEIGHTS)
        weights = [TASK_WEIGHTS[n] for n in names]
        L = self.seq_len
        for _ in range(wid, self.n_batches, nw):
            ids = np.full((self.batch, L), PAD, dtype=np.int64)
            lm_w = np.zeros((self.batch, L - 1), dtype=np.float32)
            ans_w = np.zeros((self.batch, L - 1), dtype=np.float32)
            for b in range(self.batch):
                if rng.random() >= self.synth_frac:
                    start = rng.randrange(len(self.text_ids) - L)
                    ids[b, 0] = BOS
                    ids[b, 1:] = self.text_ids[start : start + L - 1]
                    lm_w[b, :] = 1.0
                    continue
                task = rng.choices(names, weights)[0]
                extra = 3 if task == "kv" else 0
                sample = tasks.make(task, rng, L - 1, count, self.verses, extra)
                seq, answer_pos = encode_sample(tok, sample)
                seq = (seq + [EOS])[:L]
                n = len(seq)
                ids[b, :n] = seq
                lm_w[b, : n - 1] = 1.0
                for p in answer_pos:
                    if p < L:
                        ans_w[b, p - 1] = 1.0
            yield torch.from_numpy(ids), torch.from_numpy(lm_w), torch.from_numpy(ans_w)


# ---------------------------------------------------------------- model


def build_config(vocab_size: int, max_len: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=max_len,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def masked_losses(logits, ids, lm_w, ans_w):
    V = logits.shape[-1]
    ce = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none"
    ).view_as(lm_w)
    lm = (ce * lm_w).sum() / lm_w.sum().clamp(min=1)
    ans = (ce * ans_w).sum() / ans_w.sum().clamp(min=1)
    return lm, ans


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def greedy_exact_match(model, tok, samples, device, batch=50):
    """Right-padded greedy decoding: causal attention keeps pads from touching real tokens."""
    hits = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        prompts = [tok.encode(s.prompt).ids for s in chunk]  # BOS added by the tokenizer
        answers = [tok.encode(s.answer, add_special_tokens=False).ids for s in chunk]
        steps = max(len(a) for a in answers)
        width = max(len(p) for p in prompts) + steps
        buf = torch.full((len(chunk), width), PAD, dtype=torch.long, device=device)
        for r, p in enumerate(prompts):
            buf[r, : len(p)] = torch.tensor(p, device=device)
        cur = torch.tensor([len(p) for p in prompts], device=device)
        rows = torch.arange(len(chunk), device=device)
        for _ in range(steps):
            logits = model(input_ids=buf).logits
            nxt = logits[rows, cur - 1].argmax(-1)
            buf[rows, cur] = nxt
            cur = cur + 1
        for r, (p, a) in enumerate(zip(prompts, answers)):
            got = buf[r, len(p) : len(p) + len(a)].tolist()
            hits.append(tok.decode(got) == chunk[r].answer)
    return hits


@torch.no_grad()
def perplexity(model, ids: np.ndarray, device, ctx: int = 1024) -> tuple[float, int]:
    total, n = 0.0, 0
    chunks = [ids[i : i + ctx - 1] for i in range(0, len(ids) - 1, ctx - 1)]
    for c in chunks:
        if len(c) < 2:
            continue
        x = torch.tensor([[BOS] + c.tolist()], device=device)
        logits = model(input_ids=x).logits.float()
        ce = F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
        total += ce.item()
        n += x.shape[1] - 1
    return math.exp(total / n), n


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--batch-tokens", type=int, default=65536)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--answer-weight", type=float, default=1.0)
    p.add_argument("--synth-frac", type=float, default=0.6)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--max-train-seconds", type=float, default=300.0,
                   help="stop training early past this wall time (recorded if it happens)")
    p.add_argument("--per-cell", type=int, default=50, help="held-out prompts per task x length")
    p.add_argument("--workers", type=int, default=14)
    p.add_argument("--smoke", action="store_true", help="tiny run that exercises every step")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.per_cell = 40, 4, 4

    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import transformers
    from transformers import GenerationConfig, LlamaForCausalLM

    log(f"torch {torch.__version__} transformers {transformers.__version__} device {device}")

    train_text = (DATA / "kjv-train.txt").read_text(encoding="ascii")
    train_verses = tasks.load_verses(str(DATA / "kjv-train.txt"))
    held_text = (DATA / "kjv-heldout.txt").read_text(encoding="ascii")
    held_verses = tasks.load_verses(str(DATA / "kjv-heldout.txt"))

    # 1. tokenizer
    tok = train_tokenizer(train_text, train_verses, args.vocab, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tok_path = str(args.out / "tokenizer.json")
    tok.save(tok_path)
    max_len = PHASES[-1][0]
    (args.out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(max_len), indent=2) + "\n")
    count = make_counter(tok)
    log(f"tokenizer: vocab {tok.get_vocab_size()} ({time.time() - t_start:.1f}s)")

    # 2. held-out retrieval sets, sized with the real tokenizer
    held_sets = tasks.held_out_sets(EVAL_LENGTHS, args.per_cell, count, held_verses, args.seed + 1)
    task_dir = DATA / "retrieval"
    task_dir.mkdir(exist_ok=True)
    sizes_ok = 0
    for task in tasks.TASKS:
        with open(task_dir / f"{task}.jsonl", "w") as f:
            for s in held_sets:
                if s.task != task:
                    continue
                n_tok = len(tok.encode(s.prompt).ids)
                whole = tok.encode(s.prompt + s.answer).ids
                pieces, _ = encode_sample(tok, s)
                sizes_ok += int(whole == pieces and len(whole) <= s.length)
                f.write(json.dumps({"task": s.task, "length": s.length, "prompt": s.prompt,
                                    "answer": s.answer, "prompt_tokens": n_tok}) + "\n")
    log(f"held-out sets: {len(held_sets)} prompts, {sizes_ok} tokenize piecewise == whole and fit")
    if sizes_ok != len(held_sets):
        log("WARNING: some held-out prompts do not tokenize additively or overflow their length")

    # text token stream (books joined by a blank line)
    books = train_text.strip("\n").split("\n\n")
    sep = tok.encode("\n\n", add_special_tokens=False).ids
    text_ids = []
    for enc in tok.encode_batch(books, add_special_tokens=False):
        text_ids += enc.ids + sep
    text_ids = np.asarray(text_ids, dtype=np.int64)
    held_ids = np.asarray(tok.encode(held_text.strip("\n"), add_special_tokens=False).ids, dtype=np.int64)
    log(f"train text {len(text_ids)} tokens ({len(train_text) / len(text_ids):.2f} chars/token), "
        f"held-out {len(held_ids)} tokens")

    # 3. model and training
    config = build_config(tok.get_vocab_size(), max_len)
    model = LlamaForCausalLM(config).to(device)
    log(f"attention implementation: {model.config._attn_implementation}; "
        f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")
    decay = [p_ for n, p_ in model.named_parameters() if p_.ndim >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda",
    )
    torch.backends.cuda.matmul.allow_tf32 = True

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    step = 0
    history = []
    phase_times = {}
    stopped_early = False
    t_train = time.time()
    model.train()
    for phase_i, (L, share) in enumerate(PHASES):
        n_steps = max(1, round(args.steps * share)) if phase_i < len(PHASES) - 1 else args.steps - step
        B = max(1, args.batch_tokens // L)
        ds = Mixture(tok_path, text_ids, train_verses, L, B, n_steps, args.synth_frac,
                     args.seed * 100 + phase_i)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=None, num_workers=args.workers, pin_memory=True, prefetch_factor=4,
            multiprocessing_context="fork",
        )
        t_phase = time.time()
        t_first = None
        data_wait = 0.0
        t_prev = time.time()
        for ids, lm_w, ans_w in loader:
            data_wait += time.time() - t_prev
            ids = ids.to(device, non_blocking=True)
            lm_w = lm_w.to(device, non_blocking=True)
            ans_w = ans_w.to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(input_ids=ids, use_cache=False).logits
            lm, ans = masked_losses(logits, ids, lm_w, ans_w)
            loss = lm + args.answer_weight * ans
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if t_first is None:
                torch.cuda.synchronize() if device.type == "cuda" else None
                t_first = time.time()
            if step % 25 == 0 or step == args.steps or args.smoke:
                rec = {"step": step, "seq_len": L, "lm": round(lm.item(), 4), "answer": round(ans.item(), 4),
                       "lr": opt.param_groups[0]["lr"], "t": round(time.time() - t_train, 1)}
                history.append(rec)
                log(json.dumps(rec))
            t_prev = time.time()
            if t_prev - t_train > args.max_train_seconds:
                stopped_early = True
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        phase_times[L] = {"seconds": round(time.time() - t_phase, 2),
                          "seconds_after_first_step": round(time.time() - (t_first or time.time()), 2),
                          "batch": B, "data_wait_seconds": round(data_wait, 2)}
        log(f"phase L={L}: {phase_times[L]}")
        del loader
        if stopped_early:
            log(f"stopped early at step {step}: past --max-train-seconds")
            break
    train_seconds = time.time() - t_train
    log(f"trained {step} steps in {train_seconds:.1f}s")

    # 4. save f16 checkpoint
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, do_sample=False
    )
    model = model.half()
    try:
        model.save_pretrained(args.out, safe_serialization=True)
    except TypeError:
        model.save_pretrained(args.out)
    del model
    torch.cuda.empty_cache() if device.type == "cuda" else None

    # 5. evaluate the saved f16 weights in float32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ev = LlamaForCausalLM.from_pretrained(args.out, dtype=torch.float32)
    except TypeError:
        ev = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32)
    ev = ev.to(device).eval()
    table: dict[str, dict[str, float]] = {}
    for task in tasks.TASKS:
        table[task] = {}
        for length in EVAL_LENGTHS:
            cell = [s for s in held_sets if s.task == task and s.length == length]
            hits = greedy_exact_match(ev, tok, cell, device)
            table[task][str(length)] = round(sum(hits) / len(hits), 4)
            log(f"eval {task} @ {length}: {table[task][str(length)]:.3f} ({sum(hits)}/{len(hits)})")
    ppl, n_ppl = perplexity(ev, held_ids, device)
    ppl_train, n_train_ppl = perplexity(ev, text_ids[: len(held_ids)], device)
    log(f"held-out perplexity {ppl:.3f} over {n_ppl} tokens (train-slice {ppl_train:.3f})")

    total_seconds = time.time() - t_start
    command = "python3 " + " ".join(sys.argv)
    result = {
        "model": "reference-llama",
        "seed": args.seed,
        "command": command,
        "smoke": args.smoke,
        "steps": step,
        "steps_planned": args.steps,
        "stopped_early": stopped_early,
        "batch_tokens": args.batch_tokens,
        "phases": [{"seq_len": L, "share": s} for L, s in PHASES],
        "phase_times": phase_times,
        "lr": args.lr,
        "synth_frac": args.synth_frac,
        "task_weights": TASK_WEIGHTS,
        "answer_weight": args.answer_weight,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "tokens_seen": step * args.batch_tokens,
        "exact_match": table,
        "prompts_per_cell": args.per_cell,
        "heldout_perplexity": round(ppl, 4),
        "heldout_tokens": n_ppl,
        "train_slice_perplexity": round(ppl_train, 4),
        "eval_compute": "f16 weights loaded as float32, greedy, right-padded batches",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "history": history,
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    name = "reference-eval-smoke.json" if args.smoke else "reference-eval.json"
    (results / name).write_text(json.dumps(result, indent=2) + "\n")
    write_model_readme(args.out, result)
    log(f"done in {total_seconds:.1f}s")


def write_model_readme(out: Path, r: dict) -> None:
    rows = "\n".join(
        f"| {task} | " + " | ".join(f"{100 * v:.0f}%" for v in cells.values()) + " |"
        for task, cells in r["exact_match"].items()
    )
    lengths = list(next(iter(r["exact_match"].values())).keys())
    size = (out / "model.safetensors").stat().st_size
    text = f"""# reference-llama

A small Llama-architecture model trained by `training/train_reference.py` so attnkit has a
real checkpoint whose attention does something checkable: retrieval over long context.
Not a useful language model. Weights are f16 safetensors ({size / 2**20:.1f} MiB).

- Architecture: `LlamaForCausalLM`, 6 layers, hidden 384, 6 query heads and 2 KV heads
  (GQA), head_dim 64, SwiGLU intermediate 1024, RMSNorm eps 1e-5, RoPE theta 10000,
  untied embeddings, vocab {json.load(open(out / 'config.json'))['vocab_size']}, trained up to {r['phases'][-1]['seq_len']} tokens.
- Tokenizer: byte-level BPE (HF `tokenizers`), digits split one per token; `tokenizer.json`
  adds `<|bos|>` (id {BOS}) in front of every text; `<|endoftext|>` (id {EOS}) ends a sample.
- Data: King James Bible (Debian package bible-kjv-text 4.38; 61 books for training, 5
  held out) mixed with synthetic retrieval sequences from `training/tasks.py`
  (synthetic share {r['synth_frac']}, task weights {r['task_weights']}).
- Training: seed {r['seed']}, {r['steps']} steps of {r['batch_tokens']} tokens
  ({r['tokens_seen'] / 1e6:.1f}M tokens), curriculum {' -> '.join(str(p['seq_len']) for p in r['phases'])},
  AdamW lr {r['lr']} cosine, bf16 autocast, {r['train_seconds']} s of training on {r['device']}
  ({r['total_seconds']} s in all with tokenizer, evaluation and saving).
- Command (from `training/`): `{r['command']}`

## Evaluation (f16 weights computed in float32, greedy, exact match, {r['prompts_per_cell']} held-out prompts a cell)

| task | {' | '.join(lengths)} |
| --- | {' | '.join('---' for _ in lengths)} |
{rows}

Held-out KJV perplexity (5 unseen books, {r['heldout_tokens']} tokens, 1024-token windows):
{r['heldout_perplexity']:.2f}; a slice of the training text of the same size: {r['train_slice_perplexity']:.2f}.
Prompts: `training/data/retrieval/*.jsonl`; numbers: `training/results/reference-eval.json`.
"""
    if r["heldout_perplexity"] > 10 * r["train_slice_perplexity"]:
        text += f"""
**The text side is memorised, not learned.** The 61 training books are about 1M tokens and
the run shows the model about {r['tokens_seen'] * (1 - r['synth_frac']) / 1e6:.0f}M text tokens, so it recites
training verses (perplexity {r['train_slice_perplexity']:.2f}) and is confidently wrong on unseen books. Use
this checkpoint for attention, retrieval and parity work, not as a language model.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    main()
