/**
 * Exit when the process that started us dies. A farm worker runs each stage as a child `lieq`
 * process; if the worker is killed (kill -9, OOM killer), an orphaned child would go on writing
 * the same output as the retry another worker starts. Node has no PR_SET_PDEATHSIG, so the
 * child polls: when LIEQ_PARENT_PID is set and that process is gone (or we were re-parented),
 * it exits at once. Temporary outputs are left as stale temps, which the next run removes.
 */
export function exitWithParent(env: NodeJS.ProcessEnv = process.env, intervalMs = 250): void {
  const raw = env.LIEQ_PARENT_PID;
  if (!raw) return;
  const parent = Number(raw);
  if (!Number.isInteger(parent) || parent <= 1) return;
  const timer = setInterval(() => {
    let alive = process.ppid === parent;
    if (alive) {
      try {
        process.kill(parent, 0);
      } catch {
        alive = false;
      }
    }
    if (!alive) {
      process.stderr.write(`lieq: parent process ${parent} is gone; exiting\n`);
      process.exit(129);
    }
  }, intervalMs);
  timer.unref();
}
