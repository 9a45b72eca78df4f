"""Independent baselines for the GPU decode benchmark, on the same device run (torch only).

Per model shape (the decoder linears of every layer + the LM head, each weight its own tensor,
far over the 50 MB L2; matmuls only: no norms, attention, RoPE), batch 1/4/16, each step
captured in a CUDA graph and replayed:
  * fp16: torch.nn.functional.linear on fp16 weights (cuBLAS);
  * int4: torch._weight_int4pack_mm (tinygemm, bf16 activations, int4 g128 weights) for the
    decoder linears, the LM head bf16 ("int4") or int4 too ("int4, int4 head").
Also the device-to-device copy bandwidth (1 GiB, bytes read + written).

Usage: python3 bench/cuda/torch_baseline.py OUT.json [--shapes llama-3.2-1b,qwen3-4b] [--layers N]
"""
import json
import sys
import time

import torch

# (hidden, intermediate, q heads * head_dim, kv heads * head_dim, vocab, layers): lib/io/random-model.ts MODEL_SHAPES
SHAPES = {
    "llama-3.2-1b": (2048, 8192, 32 * 64, 8 * 64, 128256, 16),
    "llama-3.2-3b": (3072, 8192, 24 * 128, 8 * 128, 128256, 28),
    "qwen3-4b": (2560, 9728, 32 * 128, 8 * 128, 151936, 36),
    "qwen3-8b": (4096, 12288, 32 * 128, 8 * 128, 151936, 36),
}
BATCHES = (1, 4, 16)
G = 128


def arg(name, default):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return default


def linears(shape):
    h, i, qd, kvd, _, _ = shape
    return [(qd, h), (kvd, h), (kvd, h), (h, qd), (i, h), (i, h), (h, i)]  # (out, in): q k v o gate up down


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


def run_batches(step, nbytes, dims, dtype):
    out = {}
    for b in BATCHES:
        xs = {d: torch.randn(b, d, dtype=dtype, device="cuda") for d in dims}
        ms = timed_graph(lambda: step(xs))
        out[b] = {"ms": ms, "tokens_per_s": b * 1000 / ms, "weight_GBps": nbytes / (ms * 1e6)}
    return out


def fp16_chain(shape, layers):
    h, _, _, _, v, _ = shape
    torch.manual_seed(0)
    ws = [torch.randn(o, i, dtype=torch.float16, device="cuda") * 0.02 for _ in range(layers) for (o, i) in linears(shape)]
    head = torch.randn(v, h, dtype=torch.float16, device="cuda") * 0.02
    nbytes = sum(w.numel() * 2 for w in ws) + head.numel() * 2

    def step(xs):
        for w in ws:
            torch.nn.functional.linear(xs[w.shape[1]], w)
        torch.nn.functional.linear(xs[h], head)

    res = run_batches(step, nbytes, {i for (_, i) in linears(shape)}, torch.float16)
    del ws, head
    torch.cuda.empty_cache()
    return nbytes, res


def int4_weight(o, i):
    q = torch.randint(0, 16, (o, i), dtype=torch.int32, device="cuda")
    q_u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
    wp = torch._convert_weight_to_int4pack(q_u8, 8)
    sz = torch.rand(i // G, o, 2, dtype=torch.bfloat16, device="cuda") * 0.01
    return wp, sz, i, o * i // 2 + sz.numel() * 2


def int4_chain(shape, layers, int4_head):
    h, _, _, _, v, _ = shape
    torch.manual_seed(0)
    packed = [int4_weight(o, i) for _ in range(layers) for (o, i) in linears(shape)]
    nbytes = sum(p[3] for p in packed)
    if int4_head:
        hp = int4_weight(v, h)
        nbytes += hp[3]
    else:
        head = torch.randn(v, h, dtype=torch.bfloat16, device="cuda") * 0.02
        nbytes += head.numel() * 2

    def step(xs):
        for wp, sz, i, _ in packed:
            torch._weight_int4pack_mm(xs[i], wp, G, sz)
        if int4_head:
            torch._weight_int4pack_mm(xs[h], hp[0], G, hp[1])
        else:
            torch.nn.functional.linear(xs[h], head)

    res = run_batches(step, nbytes, {i for (_, i) in linears(shape)}, torch.bfloat16)
    del packed
    torch.cuda.empty_cache()
    return nbytes, res


def main():
    path = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "torch-baseline.json"
    names = [s for s in arg("--shapes", ",".join(SHAPES)).split(",") if s]
    layers_override = arg("--layers", None)
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "shapes": {}}
    t = time.time()
    res["d2d_copy_TBps"] = d2d_copy()
    print(f"D2D copy: {res['d2d_copy_TBps']:.2f} TB/s (read + write)", flush=True)
    for name in names:
        shape = SHAPES[name]
        layers = int(layers_override) if layers_override else shape[5]
        r = {"layers": layers}
        chains = [("fp16", lambda: fp16_chain(shape, layers)), ("int4", lambda: int4_chain(shape, layers, False)),
                  ("int4, int4 head", lambda: int4_chain(shape, layers, True))]
        for label, fn in chains:
            try:
                nb, out = fn()
                r[label] = {"weight_bytes": nb, "batches": out}
                for b, v in out.items():
                    print(f"{name} torch {label} batch {b}: {v['ms']:.3f} ms, {v['tokens_per_s']:.0f} tok/s, "
                          f"{v['weight_GBps']:.0f} GB/s ({nb / 1e9:.3f} GB)", flush=True)
            except Exception as e:  # the int4 op's signature moved between torch versions
                r[label] = {"error": repr(e)}
                print(f"{name} torch {label} failed: {e!r}", flush=True)
            torch.cuda.empty_cache()
        res["shapes"][name] = r
        with open(path, "w") as f:
            json.dump(res, f, indent=2)
    res["seconds"] = time.time() - t
    with open(path, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
