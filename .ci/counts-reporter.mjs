// A jest reporter for .ci/run: after every test file it rewrites the run's counts so far to the file
// named by SKY_CI_COUNTS, so a run that is cut short (a stall, CI's time limit) still leaves counts. While
// a file runs, SKY_CI_RUNNING holds "<start, epoch seconds> <file>" for .ci/run's per-file watchdog.
import { writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import process from 'node:process';

export default class CountsReporter {
  write(results, finished) {
    const file = process.env.SKY_CI_COUNTS;
    if (!file) return;
    const counts = {
      passed: results.numPassedTests,
      failed: results.numFailedTests + results.numRuntimeErrorTestSuites,
      skipped: results.numPendingTests + results.numTodoTests,
      finished,
    };
    writeFileSync(file, JSON.stringify(counts));
  }

  // Files that started and have no result yet: with a worker, the next file may start before the last
  // one's result is reported.
  started = new Map();

  running() {
    const file = process.env.SKY_CI_RUNNING;
    if (!file) return;
    const [oldest] = [...this.started].sort((a, b) => a[1] - b[1]);
    writeFileSync(file, oldest ? `${oldest[1]} ${relative(process.cwd(), oldest[0])}\n` : '');
  }

  onTestFileStart(test) {
    this.started.set(test.path, Math.floor(Date.now() / 1000));
    this.running();
  }

  onTestResult(test, _result, aggregated) {
    this.started.delete(test.path);
    this.running();
    this.write(aggregated, false);
  }

  onRunComplete(_contexts, aggregated) {
    this.write(aggregated, true);
  }
}
