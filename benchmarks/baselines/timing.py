"""CUDA-event timing shared by the peers: median over repetitions, each repetition
averaging several launches, mirroring benchmarks/src/harness.ts."""
import statistics
import torch


def _elapsed_ms(fn, inner):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def time_ms(fn, reps=9, target_ms=20.0):
    fn()
    torch.cuda.synchronize()
    # Grow the launches per repetition until one repetition takes ~target_ms.
    inner = 1
    while True:
        dt = _elapsed_ms(fn, inner)
        if dt >= target_ms or inner >= 256:
            break
        inner = min(256, max(inner * 2, int(inner * target_ms / max(dt, 1e-3)) + 1))
    return statistics.median(_elapsed_ms(fn, inner) / inner for _ in range(reps))
