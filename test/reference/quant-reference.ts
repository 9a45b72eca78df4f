/**
 * Independent float64 references for the packed-weight kernels (docs/format.md), written from
 * the format description, not from the native code: fp16 decoding, the block layouts, dequantize,
 * matmul, and the error measures the tests use.
 */

/** Deterministic uniform [0, 1) generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function randn(r: () => number): number {
  const u = Math.max(r(), 1e-300);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

/** f32 [n] of N(0, scale²), with a few outliers (×8) like real weight rows. */
export function randomWeights(n: number, seed: number, scale = 0.02): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = randn(r) * scale * (r() < 0.01 ? 8 : 1);
  return w;
}

export function randomCodes(n: number, bits: number, seed: number): Uint8Array {
  const r = rng(seed);
  const c = new Uint8Array(n);
  for (let i = 0; i < n; i++) c[i] = Math.floor(r() * (1 << bits));
  return c;
}

/** IEEE half -> number. */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** Byte index (within a block) and bit shift of the low bits of code i, per docs/format.md. */
function lowBitsPlace(bits: number, i: number): { byte: number; shift: number; width: number } {
  switch (bits) {
    case 2:
    case 3:
      return { byte: i % 8, shift: 2 * Math.floor(i / 8), width: 2 };
    case 4:
      return { byte: i % 16, shift: 4 * Math.floor(i / 16), width: 4 };
    case 8:
      return { byte: i, shift: 0, width: 8 };
    default:
      throw new Error(`bits ${bits}`);
  }
}

/** codes [rows, cols] -> packed bytes, following the documented layout bit by bit. */
export function packRef(codes: Uint8Array, rows: number, cols: number, bits: number): Uint8Array {
  const bb = 4 * bits;
  const out = new Uint8Array((rows * cols * bits) / 8);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < cols / 32; b++) {
      const base = (r * cols) / 32 * bb + b * bb;
      for (let i = 0; i < 32; i++) {
        const c = codes[r * cols + b * 32 + i];
        const p = lowBitsPlace(bits, i);
        out[base + p.byte] |= (c & ((1 << p.width) - 1)) << p.shift;
        if (bits === 3) out[base + 8 + Math.floor(i / 8)] |= ((c >> 2) & 1) << (i % 8);
      }
    }
  return out;
}

export function unpackRef(q: Uint8Array, rows: number, cols: number, bits: number): Uint8Array {
  const bb = 4 * bits;
  const codes = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < cols / 32; b++) {
      const base = (r * cols) / 32 * bb + b * bb;
      for (let i = 0; i < 32; i++) {
        const p = lowBitsPlace(bits, i);
        let c = (q[base + p.byte] >> p.shift) & ((1 << p.width) - 1);
        if (bits === 3) c |= ((q[base + 8 + Math.floor(i / 8)] >> (i % 8)) & 1) << 2;
        codes[r * cols + b * 32 + i] = c;
      }
    }
  return codes;
}

export interface RefLayer {
  outFeatures: number;
  inFeatures: number;
  bits: number;
  groupSize: number;
  symmetric: boolean;
  qweight: Uint8Array;
  scales: Uint16Array;
  zeros?: Uint8Array;
}

/** Zero point of group g of row r. */
export function zeroOf(l: RefLayer, r: number, g: number): number {
  return l.symmetric ? 1 << (l.bits - 1) : l.zeros![r * (l.inFeatures / l.groupSize) + g];
}

/** Dequantized W [out, in] in float64: scale · (q − zero). */
export function dequantRef(l: RefLayer): Float64Array {
  const codes = unpackRef(l.qweight, l.outFeatures, l.inFeatures, l.bits);
  const ng = l.inFeatures / l.groupSize;
  const w = new Float64Array(l.outFeatures * l.inFeatures);
  for (let r = 0; r < l.outFeatures; r++)
    for (let k = 0; k < l.inFeatures; k++) {
      const g = Math.floor(k / l.groupSize);
      w[r * l.inFeatures + k] = f16ToNumber(l.scales[r * ng + g]) * (codes[r * l.inFeatures + k] - zeroOf(l, r, g));
    }
  return w;
}

/** y [batch, out] = x [batch, in] · Wᵀ (+ bias) in float64, and Σ_k |x w| per output (the dot's scale). */
export function matmulRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  batch: number,
  out: number,
  inF: number,
  bias?: ArrayLike<number>,
): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(batch * out);
  const mag = new Float64Array(batch * out);
  for (let m = 0; m < batch; m++)
    for (let o = 0; o < out; o++) {
      let acc = 0;
      let a = 0;
      for (let k = 0; k < inF; k++) {
        const p = x[m * inF + k] * w[o * inF + k];
        acc += p;
        a += Math.abs(p);
      }
      const b = bias ? bias[o] : 0;
      y[m * out + o] = acc + b;
      mag[m * out + o] = a + Math.abs(b);
    }
  return { y, mag };
}

/**
 * Σ_k |x_k| · s_g · z_g per output: the size of the zero-point term z·Σx that a fused kernel
 * computing s·(Σ q·x − z·Σx) subtracts (its f32 rounding error scales with this, not with |y|).
 */
export function zeroTermMagnitude(l: RefLayer, x: ArrayLike<number>, batch: number): Float64Array {
  const ng = l.inFeatures / l.groupSize;
  const out = new Float64Array(batch * l.outFeatures);
  for (let m = 0; m < batch; m++)
    for (let o = 0; o < l.outFeatures; o++) {
      let a = 0;
      for (let k = 0; k < l.inFeatures; k++) {
        const g = Math.floor(k / l.groupSize);
        a += Math.abs(x[m * l.inFeatures + k]) * f16ToNumber(l.scales[o * ng + g]) * zeroOf(l, o, g);
      }
      out[m * l.outFeatures + o] = a;
    }
  return out;
}

/**
 * Error of y against the float64 reference, relative to the size of each dot product
 * (max_i |y_i − ref_i| / Σ_k |x_k w_ik|: what floating-point summation bounds), and the
 * norm-wise relative error ‖y − ref‖ / ‖ref‖.
 */
export function relErrors(y: Float32Array, ref: { y: Float64Array; mag: Float64Array }): { dot: number; norm: number } {
  let dot = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    const d = y[i] - ref.y[i];
    dot = Math.max(dot, Math.abs(d) / Math.max(ref.mag[i], 1e-30));
    num += d * d;
    den += ref.y[i] * ref.y[i];
  }
  return { dot, norm: Math.sqrt(num / Math.max(den, 1e-300)) };
}
