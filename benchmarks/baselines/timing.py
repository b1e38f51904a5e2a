"""CUDA-event timing shared by the peers: median over repetitions, each repetition
averaging several launches, mirroring benchmarks/src/harness.ts."""
import statistics
import torch

def time_ms(fn, reps=9, target_ms=20.0):
    fn()
    torch.cuda.synchronize()
    inner = 1
    while True:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(inner):
            fn()
        e.record()
        torch.cuda.synchronize()
        dt = s.elapsed_time(e)
        if dt >= target_ms or inner >= 256:
            break
        inner = min(256, max(inner * 2, int(inner * target_ms / max(dt, 1e-3)) + 1))
    samples = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(inner):
            fn()
        e.record()
        torch.cuda.synchronize()
        samples.append(s.elapsed_time(e) / inner)
    return statistics.median(samples)
