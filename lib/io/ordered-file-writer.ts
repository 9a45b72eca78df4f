/**
 * The streaming, atomic file that both tensor containers write (safetensors, GGUF): a header in
 * which every tensor's size is known up front, then each tensor's bytes in the declared order,
 * possibly in several parts (so a model never has to be in memory whole), each tensor padded to
 * the format's alignment. Everything goes to a temp file beside the destination; `commit()`
 * fsyncs and renames it into place, `abort()` removes it, so a reader never sees half a file.
 * Format classes encode their header and size their tensors; this class owns the file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

import { tempPathFor } from '../util/atomic.js';
import { FileError, FormatError } from '../util/errors.js';

export interface OrderedEntry {
  name: string;
  /** Payload bytes (padding excluded). */
  bytes: number;
  /** What fixed the size, for the error when a caller's bytes do not fit (e.g. "shape × dtype"). */
  sizeFrom: string;
}

export interface OrderedFileOptions {
  /** Every tensor's payload is zero-padded to a multiple of this (1: no padding). */
  alignment?: number;
  /** Create the destination's directory when it is missing. */
  mkdir?: boolean;
}

export class OrderedFileWriter {
  readonly dest: string;
  private readonly tmp: string;
  private fd: number | undefined;
  private readonly entries: readonly OrderedEntry[];
  private readonly alignment: number;
  private next = 0;
  /** Bytes of the current entry written so far (parts). */
  private partial = 0;
  /** Bytes written so far, header and padding included. */
  bytesWritten = 0;

  /** Opens the temp file and writes `header`; on failure nothing is left behind. */
  protected constructor(dest: string, header: Uint8Array, entries: readonly OrderedEntry[], opts: OrderedFileOptions = {}) {
    this.dest = dest;
    this.entries = entries;
    this.alignment = opts.alignment ?? 1;
    if (opts.mkdir) mkdirSync(dirname(dest), { recursive: true });
    this.tmp = tempPathFor(dest);
    try {
      this.fd = openSync(this.tmp, 'wx');
    } catch (err) {
      throw new FileError(dest, `cannot create (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
    }
    try {
      this.put(header);
    } catch (err) {
      this.abort();
      throw err;
    }
  }

  /** Index of the entry the writer expects next (= entries.length when all are written). */
  protected get nextIndex(): number {
    return this.next;
  }

  /** Write (part of) the next tensor's bytes; tensors in the declared order. */
  write(name: string, data: Uint8Array): void {
    if (this.fd === undefined) throw new FileError(this.dest, 'writer is closed');
    const entry = this.entries[this.next];
    if (!entry || entry.name !== name)
      throw new FormatError(this.dest, `tensor "${name}" written out of order (expected "${entry?.name ?? '(none)'}")`);
    if (this.partial + data.byteLength > entry.bytes)
      throw new FormatError(this.dest, `tensor "${name}": ${this.partial + data.byteLength} bytes given, ${entry.sizeFrom} needs ${entry.bytes}`);
    this.put(data);
    this.partial += data.byteLength;
    if (this.partial === entry.bytes) {
      const pad = (this.alignment - (entry.bytes % this.alignment)) % this.alignment;
      if (pad) this.put(new Uint8Array(pad));
      this.next++;
      this.partial = 0;
    }
  }

  /** Finish: every declared tensor must have been written completely. */
  commit(): void {
    if (this.fd === undefined) throw new FileError(this.dest, 'writer is closed');
    if (this.next !== this.entries.length)
      throw new FormatError(this.dest, `only ${this.next} of ${this.entries.length} tensors were written completely`);
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = undefined;
    renameSync(this.tmp, this.dest);
  }

  /** Discard the partial file (safe to call more than once). */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
    rmSync(this.tmp, { force: true });
  }

  private put(data: Uint8Array): void {
    const fd = this.fd as number;
    let done = 0;
    while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done);
    this.bytesWritten += data.byteLength;
  }
}
