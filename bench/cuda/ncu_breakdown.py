"""Per-kernel breakdown of one decode step from an ncu CSV (scripts/device-run.sh profile).

Usage: python3 ncu_breakdown.py ncu.csv [host_ms]
Groups the kernels of one step by role (the linear a qgemv launch computes is told by its
position in the layer: qkv, o, gate/up, down) and prints a markdown table of microseconds and
shares of the kernel sum. Durations are ncu's serialized gpu__time_duration (no overlap between
kernels, no launch gaps): host_ms (the host-timed step) minus their sum is the rest.
"""
import csv
import sys
from collections import OrderedDict

rows = list(csv.DictReader(open(sys.argv[1])))
rows = [r for r in rows if r.get('Kernel Name') and r.get('gpu__time_duration.sum') not in (None, '', 'nsecond')]
def us(r):
    v = float(r['gpu__time_duration.sum'].replace(',', ''))
    return v / 1000.0  # ncu reports nanoseconds
def rd(r):
    v = r.get('dram__bytes_read.sum', '0').replace(',', '')
    try:
        return float(v)
    except ValueError:
        return 0.0

groups = OrderedDict()
linear_names = ['qkv', 'o_proj', 'gate_up', 'down']
gemvs = [i for i, r in enumerate(rows) if 'qgemv' in r['Kernel Name'] or 'dense_gemv' in r['Kernel Name']]
li = 0
for i, r in enumerate(rows):
    name = r['Kernel Name']
    if 'qgemv' in name or 'dense_gemv' in name:
        if i == gemvs[-1]:  # the step's last linear is the LM head (any layer count)
            key = 'lm_head GEMV'
        else:
            key = 'linear ' + linear_names[li % 4]
        li += 1
    elif 'attention' in name:
        key = 'attention'
    elif 'qkv_post' in name:
        key = 'qkv_post (RoPE, KV store)'
    elif 'rmsnorm' in name:
        key = 'add_rmsnorm'
    elif 'silu' in name:
        key = 'silu_mul'
    elif 'embed' in name:
        key = 'embed'
    else:
        key = name.split('(')[0][:40]
    g = groups.setdefault(key, [0, 0.0, 0.0])
    g[0] += 1
    g[1] += us(r)
    g[2] += rd(r)
total = sum(g[1] for g in groups.values())
print(f'kernels: {len(rows)}, kernel sum {total:.1f} us')
print('| kernels | count | us/step | share | DRAM read GB/s |')
print('|---|---:|---:|---:|---:|')
for k, (n, t, b) in groups.items():
    print(f'| {k} | {n} | {t:.1f} | {100 * t / total:.1f}% | {b / (t * 1e3):.0f} |')
if len(sys.argv) > 2:
    host = float(sys.argv[2]) * 1000
    print(f'| outside kernels (host-timed step {host:.0f} us - kernel sum) | | {host - total:.1f} | | |')
