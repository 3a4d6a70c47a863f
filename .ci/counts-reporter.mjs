// A jest reporter for .ci/run: after every test file it rewrites the run's counts so far to the file
// named by SKY_CI_COUNTS, so a run that is cut short (a stall, CI's time limit) still leaves counts.
import { writeFileSync } from 'node:fs';
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

  onTestResult(_test, _result, aggregated) {
    this.write(aggregated, false);
  }

  onRunComplete(_contexts, aggregated) {
    this.write(aggregated, true);
  }
}
