// The latency files the log and stats workers write and their scenarios read: float64 µs, native byte order,
// one file per process.
import { readFileSync, writeFileSync } from "node:fs";

/** Latencies in µs, in a typed array that grows; written to a latency file at the end of a worker's run. */
export class Latencies {
  values = new Float64Array(1 << 16);
  count = 0;

  record(us: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count++] = us;
  }

  save(path: string): void {
    writeFileSync(path, new Uint8Array(this.values.buffer, 0, this.count * 8));
  }
}

/** Every latency of the `files`, sorted. */
export function readLatencies(files: string[]): Float64Array {
  const parts = files.map((file) => {
    const bytes = readFileSync(file);
    return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
  });
  const all = new Float64Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all.sort();
}

/** Nearest-rank quantile of sorted values. */
export function quantile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}
