/**
 * Loads the native addon (prebuilds/ or build/ through node-gyp-build; LIEQ_ADDON=<file.node>
 * overrides) and declares its typed surface. Other modules call the addon through the small
 * facades in this folder tree, never through untyped property access.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
/** Package root (one level above lib/ or dist/). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface BuildInfo {
  simd: string;
  simdUsable: boolean;
  buildSystem: string;
  cuda: boolean;
  compiler?: string;
  napiVersion: number;
}
export interface CpuInfo {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  neon: boolean;
  hardwareThreads: number;
  threads: number;
}
export interface CudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
  memoryBusBits: number;
  memoryClockKHz: number;
  l2Bytes: number;
}
export interface CudaInfo {
  compiled: boolean;
  runtimeVersion: number;
  driverVersion: number;
  reason: string;
  devices: CudaDevice[];
}

/** dtype codes shared with native/core/common.h */
export const enum NativeDType {
  F32 = 0,
  F16 = 1,
  BF16 = 2,
}

/** The addon's exports. Each kernel family adds its functions here. */
export interface NativeAddon {
  buildInfo(): BuildInfo;
  cpuInfo(): CpuInfo;
  cudaInfo(): CudaInfo;
  setThreads(n: number): number;
  getThreads(): number;
  toF32(src: Uint8Array, dtype: NativeDType, dst: Float32Array): void;
  fromF32(src: Float32Array, dtype: NativeDType, dst: Uint8Array): void;
  countNonFinite(x: Float32Array): number;
}

let cached: { addon: NativeAddon; path: string } | undefined;

function load(): { addon: NativeAddon; path: string } {
  if (cached) return cached;
  const override = process.env.LIEQ_ADDON;
  let path: string;
  if (override) {
    path = resolve(override);
  } else {
    const ngb = require('node-gyp-build') as { resolve?: (dir: string) => string; path?: (dir: string) => string };
    const find = ngb.resolve ?? ngb.path;
    if (!find) throw new Error('node-gyp-build has no resolve()');
    try {
      path = find(packageRoot);
    } catch (err) {
      throw new Error(
        `lieq: the native addon is not built (looked in ${packageRoot}/prebuilds and build/). ` +
          'Run `npm run build:native`.',
        { cause: err },
      );
    }
  }
  const addon = require(path) as NativeAddon;
  cached = { addon, path };
  return cached;
}

/** The loaded addon (loads it on first use). */
export function native(): NativeAddon {
  return load().addon;
}

/** File the addon was loaded from. */
export function nativePath(): string {
  return load().path;
}
