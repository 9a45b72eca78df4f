/**
 * No leaks across 1,000 create/destroy cycles of every native entry (LIEQ_LEAK_CYCLES to
 * change): each entry runs on inputs of 100 KB-1 MB, so a call that leaked a copy or a scratch
 * buffer of its input would grow the resident set by 100 MB+ over the cycles. The growth
 * after a warm-up (allocator pools, thread-pool stacks) must stay under LEAK_LIMIT_BYTES,
 * i.e. below 32 KB per call. Every CPU export is cycled (the first test checks the list): the
 * thread pool is resized (workers created and joined) by setThreads; the other "objects" are
 * the native workspaces (GPTQ, SVD, quantizers) and the results each call creates. CUDA model
 * handles exist only with a GPU; here their creation is cycled down its error path.
 * Runs under scripts/sanitize.sh too (ASan's quarantine is bounded, so the limit holds).
 * The native core alone is also checked by LeakSanitizer (native/test/lsan_cycles.cpp).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll, describe, expect, it } from 'vitest';

import { native } from '../../lib/native.js';

const CYCLES = Number(process.env.LIEQ_LEAK_CYCLES ?? 1000);
const WARMUP = Math.max(20, Math.floor(CYCLES / 10));
// Under AddressSanitizer freed memory waits in a quarantine before reuse: allow for it.
const asanQuarantineBytes = 2 * Number(/quarantine_size_mb=(\d+)/.exec(process.env.ASAN_OPTIONS ?? '')?.[1] ?? 0) * 2 ** 20;
const LEAK_LIMIT_BYTES = 32 * 1024 * CYCLES + asanQuarantineBytes;

const n = native();
// A full collection before each measurement, so garbage results do not count as growth.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const rng = (len: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(i * 0.37));

const OUT = 256, IN = 512, G = 128;
function layer() {
  return {
    outFeatures: OUT, inFeatures: IN, bits: 4, groupSize: G, symmetric: false,
    qweight: new Uint8Array(OUT * (IN / 32) * 16).map((_, i) => i * 13),
    scales: new Uint16Array(OUT * (IN / G)).fill(0x2c00),
    zeros: new Uint8Array(OUT * (IN / G)).fill(8),
  };
}
const opts = { bits: 4, groupSize: G, symmetric: false, method: 1, clipGrid: 10, clipMaxShrink: 0.2 };

/** One call per entry, each creating and dropping results (sync calls) or awaiting a job (async). */
const ENTRIES: Record<string, () => unknown> = (() => {
  // Inputs and outputs are allocated once: only what the native side allocates per call can grow.
  const w = rng(OUT * IN), x1 = rng(IN), x8 = rng(8 * IN), x40 = rng(40 * IN), l = layer(), bytes = new Uint8Array(OUT * IN * 2).map((_, i) => i);
  const a = rng(96 * 64), sq = rng(64 * 128);
  const wf = new Float32Array(OUT * IN), wb = new Uint8Array(OUT * IN * 2), codes = new Uint8Array(OUT * IN), y = new Float32Array(40 * OUT), c = new Float32Array(64 * 64);
  const qw = new Uint8Array(OUT * IN / 2), sc = new Uint16Array(OUT * IN / G), z = new Uint8Array(OUT * IN / G);
  const sym = Float64Array.from({ length: 64 * 64 }, (_, i) => ((i % 64) === Math.floor(i / 64) ? 2 : 0.01));
  const q = rng(4 * 64), k = rng(2 * 256 * 64), v = rng(2 * 256 * 64), att = new Float32Array(4 * 64);
  const logits = rng(8 * 4096), targets = Int32Array.from({ length: 8 }, (_, i) => i * 100), nll = new Float64Array(8);
  const wh = new Uint16Array(OUT * IN).fill(0x3c00), rope = rng(64 * 8 * 64), cos = Float32Array.from({ length: 64 * 32 }, (_, i) => Math.cos(i * 0.1)), sin = Float32Array.from({ length: 64 * 32 }, (_, i) => Math.sin(i * 0.1)), cache = new Float32Array(4 * 256 * 64);
  const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 37) % OUT), gg = new Uint8Array(OUT * (IN / 32) * 34);
  const hess = new Float64Array(128 * 128), perm = new Int32Array(128), dead = new Uint8Array(128);
  const gqw = new Uint8Array(256 * 128 / 2), gsc = new Uint16Array(256 * 128 / 32), gz = new Uint8Array(256 * 128 / 32);
  return {
    toF32: () => n.toF32(bytes, 1, wf),
    fromF32: () => n.fromF32(w, 2, wb),
    countNonFinite: () => n.countNonFinite(w),
    quantizePacked: () => n.quantizePacked(w, OUT, IN, opts as never, qw, sc, z),
    quantizePackedAsync: () => n.quantizePackedAsync(w, OUT, IN, opts as never, qw, sc, z),
    packUnpack: () => n.unpackCodes(l.qweight, OUT, IN, 4, codes),
    dequantizePacked: () => n.dequantizePacked(l, wf),
    dequantizePackedAsync: () => n.dequantizePackedAsync(l, wf),
    qmatmulGemv: () => n.qmatmul(l, x1, 1, null, y.subarray(0, OUT)),
    qmatmulSmallBatch: () => n.qmatmul(l, x8, 8, null, y.subarray(0, 8 * OUT)),
    qmatmulPrefill: () => n.qmatmul(l, x40, 40, null, y),
    qmatmulAsync: () => n.qmatmulAsync(l, x1, 1, null, y.subarray(0, OUT)),
    gemvF32: () => n.gemvF32(w, OUT, IN, x1, 1, null, y.subarray(0, OUT)),
    sgemmSync: () => n.sgemmSync(false, true, 64, 64, 128, 1, sq, 128, sq, 128, 0, c, 64),
    sgemm: () => n.sgemm(false, true, 64, 64, 128, 1, sq, 128, sq, 128, 0, c, 64),
    svdSync: () => n.svdSync(a, 96, 64, 8),
    svd: () => n.svd(a, 96, 64, 8),
    gramEigenvaluesSync: () => n.gramEigenvaluesSync(a, 96, 64),
    gramEigenvalues: () => n.gramEigenvalues(a, 96, 64),
    singularValues: () => n.singularValues(a, 96, 64),
    symEigenSync: () => n.symEigenSync(sym, 64, true),
    gaussianMatrix: () => n.gaussianMatrix(64, 64, 7),
    linear: () => n.linear(x8, 8, IN, w, OUT, null, y.subarray(0, 8 * OUT)),
    attention: () => n.attention(q, k, v, att, 1, 4, 2, 64, 256, 200, 0),
    logSoftmaxNll: () => n.logSoftmaxNll(logits, 8, 4096, targets, nll),
    packedFormatInfo: () => n.packedFormatInfo(4, 128, false, 4096),
    quantizeCodes: () => n.quantizeCodes(w, OUT, IN, opts as never, codes, sc, z),
    quantizeCodesAsync: () => n.quantizeCodesAsync(w, OUT, IN, opts as never, codes, sc, z),
    packCodes: () => n.packCodes(codes, OUT, IN, 4, qw),
    gemvF16: () => n.gemvF16(wh, OUT, IN, x8, 8, null, y.subarray(0, 8 * OUT)),
    rmsNorm: () => n.rmsNorm(w, x1, wf, OUT, IN, 1e-5),
    ropeRotateHalf: () => n.ropeRotateHalf(rope, 64, 8, 64, 0, cos, sin),
    kvStore: () => n.kvStore(rope.subarray(0, 64 * 4 * 64), cache, 64, 4, 64, 256, 0, true),
    attentionRef: () => n.attentionRef(q, k, v, att, 1, 4, 2, 64, 256, 200, 0),
    addBiasRows: () => n.addBiasRows(wf, x1.subarray(0, OUT), IN, OUT),
    siluMul: () => n.siluMul(w, w, wf, OUT * IN),
    siluMulRef: () => n.siluMulRef(w, w, wf, OUT * IN),
    addInPlace: () => n.addInPlace(wf, w, OUT * IN),
    embedGather: () => n.embedGather(w, IN, ids, y.subarray(0, 16 * IN)),
    logSoftmaxNllRef: () => n.logSoftmaxNllRef(logits, 8, 4096, targets, nll),
    ssyrkSync: () => n.ssyrkSync(true, 64, 128, 1, sq, 64, 0, c, 64),
    ssyrk: () => n.ssyrk(true, 64, 128, 1, sq, 64, 0, c, 64),
    singularValuesSync: () => n.singularValuesSync(a, 96, 64),
    // Q8_0 (type 8): the K-quant searches take ~40 ms a call; the binding path is the same.
    ggmlQuantize: () => n.ggmlQuantize(8, w, OUT, IN, gg),
    ggmlQuantizeAsync: () => n.ggmlQuantizeAsync(8, w, OUT, IN, gg),
    ggmlTypeInfo: () => n.ggmlTypeInfo(12),
    // One GPTQ state per cycle: Hessian, factor (in place), column loop into packed outputs.
    gptq: async () => {
      hess.fill(0);
      await n.gptqAccumulate(hess, 128, x40.subarray(0, 40 * 128), 40);
      for (let i = 0; i < 128; i++) hess[i * 129] += 1;
      await n.gptqPrepare(hess, 128, 0.01, false, perm, dead);
      return n.gptqQuantize(w.subarray(0, 256 * 128), 256, 128, hess, perm, dead, { ...opts, groupSize: 32, blockSize: 32, staticGroups: false } as never, null, gqw, gsc, gz);
    },
    setThreads: (() => {
      let i = 0;
      return () => n.setThreads(1 + (i++ % 3));
    })(),
    getThreads: () => n.getThreads(),
    readBandwidth: () => n.readBandwidth(2 ** 20, 1),
    buildInfo: () => n.buildInfo(),
    cpuInfo: () => n.cpuInfo(),
    cudaInfo: () => n.cudaInfo(),
    packedKernelsSimd: () => n.packedKernelsSimd(),
    // Without a GPU the handle's creation fails: its error path must not leak what it allocated.
    cudaModelCreateError: () => {
      try {
        n.cudaModelCreate({} as never, x1, x1, w, x1);
      } catch {
        /* expected without CUDA */
      }
    },
  };
})();

async function cycles(call: () => unknown, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = call();
    if (r instanceof Promise) await r;
  }
}

async function growthOver(call: () => unknown): Promise<number> {
  await cycles(call, WARMUP);
  gc();
  const before = process.memoryUsage().rss;
  await cycles(call, CYCLES);
  gc();
  return process.memoryUsage().rss - before;
}

describe(`native entries: no leak over ${CYCLES} cycles`, () => {
  const threads = n.getThreads();
  afterAll(() => n.setThreads(threads));

  it('covers every export of the addon (CUDA entries only where they can run)', () => {
    const covered = new Set([...Object.keys(ENTRIES), 'gptqAccumulate', 'gptqPrepare', 'gptqQuantize', 'cudaModelCreate', 'quantizePacked', 'unpackCodes', 'qmatmul']);
    const missing = Object.keys(n).filter((k) => typeof (n as unknown as Record<string, unknown>)[k] === 'function' && !covered.has(k) && !k.startsWith('cuda'));
    expect(missing).toEqual([]);
  });

  it('the measurement sees a leak of 64 KB per call (control)', async () => {
    const kept: Buffer[] = [];
    const grown = await growthOver(() => kept.push(Buffer.alloc(64 * 1024, 1)));
    expect(grown).toBeGreaterThan(LEAK_LIMIT_BYTES);
    kept.length = 0;
  });

  it.each(Object.keys(ENTRIES))('%s', async (name) => {
    const grown = await growthOver(ENTRIES[name]);
    expect(grown, `${name}: RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB over ${CYCLES} calls`).toBeLessThan(LEAK_LIMIT_BYTES);
  });
});
