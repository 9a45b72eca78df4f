/**
 * Dequantizers for the ggml block formats lieq writes, in plain TypeScript, written from the
 * format description (ggml docs and the block layouts of ggml-common.h) independently of the
 * C++ quantizers: tests quantize natively and decode here, so a packing mistake on either
 * side shows up as error instead of cancelling out. Also used to read back exported files.
 */
import { ggmlRowBytes, type GgmlTypeName } from './ggml-types.js';

/** IEEE binary16 → number (subnormals, inf and NaN included). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The non-linear IQ4_NL codebook. */
export const IQ4_NL_VALUES = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113] as const;

const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);

type BlockDecoder = (b: Uint8Array, o: number, y: Float32Array, yo: number) => void;

// Q8_0: { f16 d; i8 qs[32] } — w = d·q.
const decodeQ8_0: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o));
  for (let j = 0; j < 32; j++) y[yo + j] = d * ((b[o + 2 + j] << 24) >> 24);
};

// Q5_0: { f16 d; u8 qh[4]; u8 qs[16] } — 5-bit q = low nibble | (bit j of qh) << 4; w = d·(q-16).
const decodeQ5_0: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o));
  const qh = (b[o + 2] | (b[o + 3] << 8) | (b[o + 4] << 16) | (b[o + 5] << 24)) >>> 0;
  for (let j = 0; j < 16; j++) {
    const byte = b[o + 6 + j];
    const q0 = (byte & 0xf) | (((qh >>> j) & 1) << 4);
    const q1 = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
    y[yo + j] = d * (q0 - 16);
    y[yo + j + 16] = d * (q1 - 16);
  }
};

// IQ4_NL: { f16 d; u8 qs[16] } — w = d·K[nibble], element j low nibble, j+16 high nibble.
const decodeIq4Nl: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o));
  for (let j = 0; j < 16; j++) {
    const byte = b[o + 2 + j];
    y[yo + j] = d * IQ4_NL_VALUES[byte & 0xf];
    y[yo + j + 16] = d * IQ4_NL_VALUES[byte >> 4];
  }
};

/** 2-bit code of weight i (0..255) in the 64-byte qs layout shared by Q2_K and Q3_K. */
function twoBitCode(b: Uint8Array, qs: number, i: number): number {
  const half = i >> 7; // which 128-weight half
  const r = i & 127;
  const shift = 2 * (r >> 5); // weights l, l+32, l+64, l+96 share byte l
  return (b[qs + 32 * half + (r & 31)] >> shift) & 3;
}

// Q2_K: { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin } — w = d·(sc&15)·q - dmin·(sc>>4).
const decodeQ2_K: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o + 80));
  const dmin = halfToFloat(u16(b, o + 82));
  for (let i = 0; i < 256; i++) {
    const sc = b[o + (i >> 4)];
    y[yo + i] = d * (sc & 0xf) * twoBitCode(b, o + 16, i) - dmin * (sc >> 4);
  }
};

// Q3_K: { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d } — w = d·(sc-32)·(q2 - 4·!hbit).
const decodeQ3_K: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o + 108));
  const sc = o + 96;
  for (let i = 0; i < 256; i++) {
    const j = i >> 4; // sub-block
    const low = j < 8 ? b[sc + j] & 0xf : b[sc + j - 8] >> 4;
    const high = (b[sc + 8 + (j % 4)] >> (2 * Math.floor(j / 4))) & 3;
    const s = (low | (high << 4)) - 32;
    const hbit = (b[o + (i % 32)] >> Math.floor(i / 32)) & 1;
    y[yo + i] = d * s * (twoBitCode(b, o + 32, i) - (hbit ? 0 : 4));
  }
};

// Q4_K: { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] } — w = d·sc·q - dmin·m (6-bit sc, m).
const decodeQ4_K: BlockDecoder = (b, o, y, yo) => {
  const d = halfToFloat(u16(b, o));
  const dmin = halfToFloat(u16(b, o + 2));
  const s = o + 4;
  for (let j = 0; j < 8; j++) {
    let sc: number;
    let m: number;
    if (j < 4) {
      sc = b[s + j] & 63;
      m = b[s + j + 4] & 63;
    } else {
      sc = (b[s + j + 4] & 0xf) | ((b[s + j - 4] >> 6) << 4);
      m = (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4);
    }
    // sub-block j covers weights 32j..32j+31: chunk j>>1 of 64, low (even j) or high nibbles
    const qs = o + 16 + 32 * (j >> 1);
    const shift = (j & 1) * 4;
    for (let l = 0; l < 32; l++) y[yo + 32 * j + l] = d * sc * ((b[qs + l] >> shift) & 0xf) - dmin * m;
  }
};

const DECODERS: Partial<Record<GgmlTypeName, { size: number; bytes: number; decode: BlockDecoder }>> = {
  Q8_0: { size: 32, bytes: 34, decode: decodeQ8_0 },
  Q5_0: { size: 32, bytes: 22, decode: decodeQ5_0 },
  IQ4_NL: { size: 32, bytes: 18, decode: decodeIq4Nl },
  Q2_K: { size: 256, bytes: 84, decode: decodeQ2_K },
  Q3_K: { size: 256, bytes: 110, decode: decodeQ3_K },
  Q4_K: { size: 256, bytes: 144, decode: decodeQ4_K },
};

/** Decode `rows × cols` weights stored as `type` (row-major, rows of ggmlRowBytes(type, cols)). */
export function dequantize(type: GgmlTypeName, data: Uint8Array, rows: number, cols: number): Float32Array {
  const need = rows * ggmlRowBytes(type, cols);
  if (data.byteLength < need) throw new RangeError(`${type} data of ${rows}×${cols} needs ${need} bytes, got ${data.byteLength}`);
  const y = new Float32Array(rows * cols);
  if (type === 'F32') {
    y.set(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + need)));
    return y;
  }
  if (type === 'F16') {
    for (let i = 0; i < y.length; i++) y[i] = halfToFloat(u16(data, 2 * i));
    return y;
  }
  const dec = DECODERS[type]!;
  const blocks = (rows * cols) / dec.size;
  for (let k = 0; k < blocks; k++) dec.decode(data, k * dec.bytes, y, k * dec.size);
  return y;
}
