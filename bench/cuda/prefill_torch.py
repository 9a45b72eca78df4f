"""cuBLAS fp16 GEMM baseline for the prefill benchmark (bench/cuda/bench-prefill.ts), same device
run: torch.matmul(X [M, in] fp16, W [out, in] fp16 transposed) on the fused linears of
LLaMA-3.2-1B and Qwen3-4B at M = 64/256/512/2048. Median over 5 batches of the mean of 20
back-to-back launches (CUDA events around each batch, 3 warm-ups). The shapes must match bench-prefill.ts's SHAPES.

Usage: python3 bench/cuda/prefill_torch.py OUT.json
"""
import json
import sys

import torch

SHAPES = {  # name: (out, in)
    "llama-3.2-1b qkv": (3072, 2048),
    "llama-3.2-1b o": (2048, 2048),
    "llama-3.2-1b gate_up": (16384, 2048),
    "llama-3.2-1b down": (2048, 8192),
    "qwen3-4b qkv": (6144, 2560),
    "qwen3-4b o": (2560, 4096),
    "qwen3-4b gate_up": (19456, 2560),
    "qwen3-4b down": (2560, 9728),
}
ROWS = [64, 256, 512, 2048]


def median_ms(fn, reps=20, warm=3, batches=5):
    """Median over `batches` of the mean time of `reps` back-to-back launches (as bench-prefill.ts)."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(batches)]
    for a, b in ev:
        a.record()
        for _ in range(reps):
            fn()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) / reps for a, b in ev)
    return t[len(t) // 2]


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "prefill-torch.json"
    torch.manual_seed(0)
    rows = []
    for name, (o, i) in SHAPES.items():
        w = torch.randn(o, i, device="cuda", dtype=torch.float16) * 0.03
        for m in ROWS:
            x = torch.randn(m, i, device="cuda", dtype=torch.float16)
            ms = median_ms(lambda: torch.matmul(x, w.t()))
            tflops = 2 * m * o * i / (ms * 1e-3) / 1e12
            rows.append({"shape": name, "out": o, "in": i, "rows": m, "ms": ms, "tflops": tflops})
            print(f"torch fp16 {name:22s} M={m:5d} {ms:8.4f} ms {tflops:7.1f} TFLOP/s", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, open(out_path, "w"), indent=1)


main()
