/**
 * What `lieq bench` needs from a device: prefill and decode steps over a model that is already
 * loaded, for `batch` independent sequences at once. The CPU backend (lib/bench/) and the CUDA
 * backend (lib/cuda/) both implement it, so the timing, statistics and reporting code is shared.
 *
 * Every call returns only when the device has finished the work (a CUDA backend synchronises),
 * so the caller's wall clock measures the step.
 */
export type BenchDevice = 'cpu' | 'cuda';

export interface BenchMemory {
  /** Resident set size of this process, bytes. */
  hostRssBytes: number;
  /** Device memory held by the backend (weights + KV cache + scratch), bytes; CUDA only. */
  deviceBytes?: number;
}

export interface BenchBackend {
  readonly device: BenchDevice;
  /** Human-readable device name (CPU model / GPU name). */
  readonly deviceName: string;
  /** Bytes of weights one decode step reads (every linear's packed or dense bytes, norms,
   *  the lm_head; not the embedding table, of which one row per token is read). */
  readonly weightBytesPerStep: number;
  /** Largest batch and context the backend was created for. */
  readonly maxBatch: number;
  readonly maxContext: number;
  /** Forget every sequence (KV caches emptied, positions back to 0). */
  reset(): void;
  /** Process `promptLength` tokens of each of `batch` sequences: ids is [batch, promptLength]. */
  prefill(ids: Int32Array, batch: number, promptLength: number): Promise<void>;
  /** One new token for each of `batch` sequences (ids is [batch]); appends to the KV caches. */
  decode(ids: Int32Array, batch: number): Promise<void>;
  memory(): BenchMemory;
  /** Release native/device memory. The backend is unusable afterwards. */
  dispose(): void;
}
