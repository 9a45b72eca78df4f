/**
 * Progress bars for long work: drawn on stderr only when it is a terminal and the command is
 * not in --json mode, so scripts and logs stay clean.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, stage?: string): void;
  stop(): void;
}

export function progressBar(label: string, unit: string, enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} |{bar}| {value}/{total} ${unit} | {stage} | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 8 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, stage = '') {
      if (!started) {
        bar.start(total, done, { stage });
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(done, { stage });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
