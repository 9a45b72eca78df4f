/**
 * Float64 reference of GPTQ (Frantar et al. 2022, Algorithm 1), written from the paper and the
 * authors' PyTorch code, not from native/core/gptq.cpp, to check the native codes:
 *   dead columns (diag H = 0): H_jj = 1, W[:, j] = 0; act-order: columns by descending diag H;
 *   H += λ·mean(diag H)·I; U = chol(chol_inverse(chol(H)), upper) (the PyTorch route);
 *   columns one by one: quantize, err = (w − ŵ)/U_ii, every later column −= err·U_ij (no lazy
 *   blocks: mathematically the same updates, summed in another order).
 * Group grids: min/max over the group (range forced to contain 0), scale rounded to f32 then
 * to fp16 (round to nearest even), asymmetric zero = round(−min/scale); optional MSE shrink
 * search. Fitted on the current weights at each group's first column, or up front on the
 * original weights (static groups, always with act-order).
 */
import { f16ToNumber } from './quant-reference.js';

export interface GptqRefOptions {
  bits: number;
  groupSize: number;
  symmetric: boolean;
  damp: number;
  actOrder: boolean;
  method?: 'minmax' | 'mse';
  clipGrid?: number;
  clipMaxShrink?: number;
}

export interface GptqRefResult {
  codes: Uint8Array;
  scales: Uint16Array;
  zeros: Uint8Array | null;
  loss: number;
  /** w / scale at each quantization, natural order: how close each rounding was to a tie. */
  ratio: Float64Array;
}

/** Round half to even. */
export function rne(x: number): number {
  const r = Math.round(x); // half up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** fp16 bits of a positive finite f32 value, round to nearest even (overflow -> inf). */
export function f16Bits(v: number): number {
  if (v >= 65520) return 0x7c00;
  if (v < 2 ** -14) return rne(v * 2 ** 24); // subnormal (1024 would be the smallest normal: same bits)
  let e = Math.floor(Math.log2(v));
  if (2 ** e > v) e--;
  if (2 ** (e + 1) <= v) e++;
  let m = rne((v / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e++;
  }
  return ((e + 15) << 10) | m;
}

interface Grid {
  bits: number;
  scale: number;
  zero: number;
}

function fitRange(lo: number, hi: number, bits: number, symmetric: boolean): Grid {
  const maxq = 2 ** bits - 1;
  let s = symmetric ? (2 * hi) / maxq : (hi - lo) / maxq;
  if (!(s > 0)) s = 1;
  let h = f16Bits(Math.fround(s));
  if (h === 0) h = 1;
  if (h >= 0x7c00) h = 0x7bff;
  const scale = f16ToNumber(h);
  const zero = symmetric ? 2 ** (bits - 1) : Math.min(Math.max(rne(-lo / scale), 0), maxq);
  return { bits: h, scale, zero };
}

function codeOf(w: number, g: Grid, maxq: number): number {
  const a = Math.min(Math.max(w / g.scale, -g.zero - 1), maxq - g.zero + 1);
  return Math.min(Math.max(rne(a) + g.zero, 0), maxq);
}

function fitGroup(w: number[], o: GptqRefOptions): Grid {
  const maxq = 2 ** o.bits - 1;
  let mn = 0;
  let mx = 0;
  for (const x of w) {
    mn = Math.min(mn, x);
    mx = Math.max(mx, x);
  }
  const amax = Math.max(-mn, mx);
  const cand = (shrink: number) => (o.symmetric ? fitRange(0, amax * shrink, o.bits, true) : fitRange(mn * shrink, mx * shrink, o.bits, false));
  let best = cand(1);
  if ((o.method ?? 'minmax') !== 'mse') return best;
  const sse = (g: Grid) => w.reduce((e, x) => {
    const d = g.scale * (codeOf(x, g, maxq) - g.zero) - x;
    return e + d * d;
  }, 0);
  let bestErr = sse(best);
  const grid = o.clipGrid ?? 100;
  const steps = Math.floor(grid * Math.fround(o.clipMaxShrink ?? 0.8));
  for (let i = 1; i < steps; i++) {
    const g = cand(1 - i / grid);
    const e = sse(g);
    if (e < bestErr) {
      bestErr = e;
      best = g;
    }
  }
  return best;
}

/** Lower Cholesky factor of a symmetric positive definite n×n matrix (row-major). */
export function choleskyLower(a: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] ** 2;
    if (!(d > 0)) throw new Error(`not positive definite at ${j}`);
    L[j * n + j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / L[j * n + j];
    }
  }
  return L;
}

/** A⁻¹ from its lower Cholesky factor (torch.cholesky_inverse): L⁻ᵀ L⁻¹. */
function choleskyInverse(L: Float64Array, n: number): Float64Array {
  const Li = new Float64Array(n * n); // L⁻¹ by forward substitution, column by column
  for (let c = 0; c < n; c++)
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= L[i * n + k] * Li[k * n + c];
      Li[i * n + c] = s / L[i * n + i];
    }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = Math.max(i, j); k < n; k++) s += Li[k * n + i] * Li[k * n + j];
      inv[i * n + j] = s;
    }
  return inv;
}

/** Upper Cholesky factor U (A = UᵀU) of H⁻¹, as the reference computes it. */
export function inverseHessianFactor(H: Float64Array, n: number): Float64Array {
  const L2 = choleskyLower(choleskyInverse(choleskyLower(H, n), n), n);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = L2[j * n + i];
  return U;
}

/** GPTQ of W f32 [rows, cols] under Hessian H [cols, cols] (not modified). */
export function gptqReference(W: Float32Array, rows: number, cols: number, Hin: Float64Array, o: GptqRefOptions): GptqRefResult {
  const g = o.groupSize;
  const ng = cols / g;
  const maxq = 2 ** o.bits - 1;
  const H = Float64Array.from(Hin);
  const dead = new Array<boolean>(cols).fill(false);
  for (let j = 0; j < cols; j++)
    if (H[j * cols + j] === 0) {
      dead[j] = true;
      H[j * cols + j] = 1;
    }
  const w0 = (r: number, c: number) => (dead[c] ? 0 : W[r * cols + c]);
  const scales = new Uint16Array(rows * ng);
  const zeros = o.symmetric ? null : new Uint8Array(rows * ng);
  const staticGrids: Grid[] = [];
  if (o.actOrder)
    for (let r = 0; r < rows; r++)
      for (let gi = 0; gi < ng; gi++) {
        const grid = fitGroup(Array.from({ length: g }, (_, k) => w0(r, gi * g + k)), o);
        staticGrids.push(grid);
        scales[r * ng + gi] = grid.bits;
        if (zeros) zeros[r * ng + gi] = grid.zero;
      }
  const perm = Array.from({ length: cols }, (_, i) => i);
  if (o.actOrder) perm.sort((a, b) => H[b * cols + b] - H[a * cols + a] || a - b);
  const Hp = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) Hp[i * cols + j] = H[perm[i] * cols + perm[j]];
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += Hp[j * cols + j];
  const damp = (o.damp * mean) / cols;
  for (let j = 0; j < cols; j++) Hp[j * cols + j] += damp;
  const U = inverseHessianFactor(Hp, cols);

  const codes = new Uint8Array(rows * cols);
  const ratio = new Float64Array(rows * cols);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const w = perm.map((c) => w0(r, c));
    let grid: Grid | undefined;
    for (let i = 0; i < cols; i++) {
      const c = perm[i];
      if (o.actOrder) grid = staticGrids[r * ng + Math.floor(c / g)];
      else if (i % g === 0) {
        grid = fitGroup(w.slice(i, i + g), o);
        scales[r * ng + i / g] = grid.bits;
        if (zeros) zeros[r * ng + i / g] = grid.zero;
      }
      const q = codeOf(w[i], grid!, maxq);
      codes[r * cols + c] = q;
      ratio[r * cols + c] = w[i] / grid!.scale;
      const d = U[i * cols + i];
      const diff = w[i] - grid!.scale * (q - grid!.zero);
      loss += (diff * diff) / (d * d);
      const e = diff / d;
      for (let j = i + 1; j < cols; j++) w[j] -= e * U[i * cols + j];
    }
  }
  return { codes, scales, zeros, loss, ratio };
}
