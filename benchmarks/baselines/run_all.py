"""PyTorch peers for the attnkit benchmarks, run on the GPU machine in the same session
as our kernels. Each suite module exposes run() -> list of rows
{kernel, shape, dtype, name, medianMs}; keys match benchmarks/src suites."""
import argparse
import importlib
import json
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SUITES = ["matmul", "softmax", "decoder", "neighborhood", "paro", "attention"]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", action="append")
    a = ap.parse_args()
    rows = []
    for name in a.suite or SUITES:
        try:
            mod = importlib.import_module(f"peer_{name}")
        except ModuleNotFoundError:
            print(f"no PyTorch peer for suite {name}", flush=True)
            continue
        for r in mod.run():
            print(json.dumps(r), flush=True)
            rows.append(r)
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)

if __name__ == "__main__":
    main()
