"""Independent ceilings and baselines for the GPU decode benchmark, on the same device run.

  * device-to-device copy bandwidth (1 GiB, bytes read + written);
  * torch fp16 "decode-equivalent" matmul chain of a LLaMA-3.2-1B step: the 7 linears of each
    of 16 layers + the 128256x2048 LM head, every weight its own tensor (2.5 GB, far over the
    50 MB L2), batch 1/4/16, captured in a CUDA graph (matmuls only: no norms, attention);
  * the same chain with torch._weight_int4pack_mm (bf16 activations, int4 g128 weights).

Usage: python3 bench/cuda/torch_baseline.py OUT.json [--layers N]
"""
import json
import sys
import time

import torch

LAYERS = 16
for i, a in enumerate(sys.argv):
    if a == "--layers":
        LAYERS = int(sys.argv[i + 1])
H, I, KV, V = 2048, 8192, 512, 128256
SHAPES = [(H, H), (KV, H), (KV, H), (H, H), (I, H), (I, H), (H, I)]  # (out, in): q k v o gate up down


def timed_graph(fn, reps=30, warm=3):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warm):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(warm):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def d2d_copy():
    n = 1 << 30
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = timed_graph(lambda: dst.copy_(src), reps=20)
    return 2 * n / (ms * 1e-3) / 1e12


def fp16_chain():
    torch.manual_seed(0)
    ws = [torch.randn(o, i, dtype=torch.float16, device="cuda") * 0.02 for _ in range(LAYERS) for (o, i) in SHAPES]
    head = torch.randn(V, H, dtype=torch.float16, device="cuda") * 0.02
    nbytes = sum(w.numel() * 2 for w in ws) + head.numel() * 2
    out = {}
    for b in (1, 4, 16):
        xs = {i: torch.randn(b, i, dtype=torch.float16, device="cuda") for i in (H, I)}

        def step():
            for w in ws:
                torch.nn.functional.linear(xs[w.shape[1]], w)
            torch.nn.functional.linear(xs[H], head)

        ms = timed_graph(step)
        out[b] = {"ms": ms, "tokens_per_s": b * 1000 / ms, "weight_GBps": nbytes / (ms * 1e6)}
    del ws, head
    torch.cuda.empty_cache()
    return nbytes, out


def int4_chain():
    torch.manual_seed(0)
    g = 128
    packed = []
    nbytes = 0
    for _ in range(LAYERS):
        for (o, i) in SHAPES:
            q = torch.randint(0, 16, (o, i), dtype=torch.int32, device="cuda")
            q_u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
            wp = torch._convert_weight_to_int4pack(q_u8, 8)
            sz = torch.rand(i // g, o, 2, dtype=torch.bfloat16, device="cuda") * 0.01
            packed.append((wp, sz, i))
            nbytes += o * i // 2 + sz.numel() * 2
    head = torch.randn(V, H, dtype=torch.bfloat16, device="cuda") * 0.02  # head kept bf16, as in lieq (fp16)
    nbytes += head.numel() * 2
    out = {}
    for b in (1, 4, 16):
        xs = {i: torch.randn(b, i, dtype=torch.bfloat16, device="cuda") for i in (H, I)}

        def step():
            for wp, sz, i in packed:
                torch._weight_int4pack_mm(xs[i], wp, g, sz)
            torch.nn.functional.linear(xs[H], head)

        ms = timed_graph(step)
        out[b] = {"ms": ms, "tokens_per_s": b * 1000 / ms, "weight_GBps": nbytes / (ms * 1e6)}
    return nbytes, out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "torch-baseline.json"
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "layers": LAYERS}
    t = time.time()
    res["d2d_copy_TBps"] = d2d_copy()
    print(f"D2D copy: {res['d2d_copy_TBps']:.2f} TB/s (read + write)", flush=True)
    nb, r = fp16_chain()
    res["fp16_chain"] = {"weight_bytes": nb, "batches": r}
    for b, v in r.items():
        print(f"torch fp16 matmul chain batch {b}: {v['ms']:.3f} ms, {v['tokens_per_s']:.0f} tok/s, {v['weight_GBps']:.0f} GB/s", flush=True)
    try:
        nb, r = int4_chain()
        res["int4pack_chain"] = {"weight_bytes": nb, "batches": r}
        for b, v in r.items():
            print(f"torch int4pack chain batch {b}: {v['ms']:.3f} ms, {v['tokens_per_s']:.0f} tok/s, {v['weight_GBps']:.0f} GB/s", flush=True)
    except Exception as e:  # the int4 op's signature moved between torch versions
        res["int4pack_chain"] = {"error": repr(e)}
        print(f"torch int4pack chain failed: {e!r}", flush=True)
    res["seconds"] = time.time() - t
    with open(path, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
