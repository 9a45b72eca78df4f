/**
 * Child process of `lieq bench` (forked by run.ts): receives one target, measures it, sends the
 * result back over IPC and exits, so its peak RSS (getrusage) is that target's alone.
 */
import { native } from '../native.js';
import { LieqError } from '../util/errors.js';
import { benchTarget, type WorkerJob, type WorkerMessage } from './run.js';

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, () => resolve()));
}

process.once('message', async (job: WorkerJob) => {
  try {
    native().setThreads(job.settings.threads);
    const result = await benchTarget(job.target, job.settings, (stage) => void send({ type: 'stage', stage }));
    result.peakRssBytes = Math.max(result.peakRssBytes, process.resourceUsage().maxRSS * 1024);
    await send({ type: 'result', result });
  } catch (err) {
    const e = err instanceof LieqError ? err : null;
    await send({ type: 'error', error: { message: err instanceof Error ? err.message : String(err), code: e?.code ?? 'E_INTERNAL', exitCode: e?.exitCode ?? 1 } });
  }
  process.disconnect();
});
