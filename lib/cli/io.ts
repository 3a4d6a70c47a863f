import { createInterface, type Interface } from 'node:readline';
import { Writable, type Readable } from 'node:stream';

/** What the CLI touches of the outside world; injectable, so tests run the CLI in-process. */
export interface CliIO {
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
}

/**
 * A CLI outcome that is not an error report: printed to stderr as written, then the process exits with
 * `exitCode` (fly's "bailing out", "not authorized. run the following to log in…", Ctrl-C).
 */
export class CliExit extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliExit';
  }
}

/** Swallows what readline echoes, so a pasted token never shows on the terminal. */
const muted = new Writable({ write: (_chunk, _encoding, done) => done() });

/**
 * Line-by-line answers from stdin, for the prompts. One readline interface per run: a second one on
 * the same stream could lose lines the first had already buffered.
 */
export class Prompter {
  private rl: Interface | null = null;
  private readonly queued: string[] = [];
  private readonly waiting: { resolve: (line: string | null) => void; reject: (err: Error) => void }[] = [];
  private ended = false;

  constructor(private readonly io: CliIO) {}

  /** Prints the question and resolves with the next line of stdin, or null once stdin has ended. */
  ask(question: string, options: { hidden?: boolean } = {}): Promise<string | null> {
    this.io.stdout.write(question);
    return this.nextLine(options.hidden ?? false);
  }

  /** Stops reading stdin, so the process can exit and a pending ask() resolves with null. */
  close(): void {
    this.rl?.close();
    this.finish();
  }

  private nextLine(hidden: boolean): Promise<string | null> {
    const line = this.queued.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.ended) return Promise.resolve(null);
    this.open(hidden);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private open(hidden: boolean): void {
    if (this.rl) return;
    // On a terminal, hidden input runs readline in terminal mode with its echo thrown away.
    const terminal = hidden && this.io.stdin.isTTY === true;
    const rl = createInterface({
      input: this.io.stdin,
      ...(terminal ? { output: muted, terminal: true } : { terminal: false }),
      crlfDelay: Infinity,
    });
    rl.on('line', (line) => {
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(line);
      else this.queued.push(line);
    });
    rl.on('close', () => this.finish());
    rl.on('SIGINT', () => {
      this.io.stdout.write('^C\n');
      for (const waiter of this.waiting.splice(0)) waiter.reject(new CliExit('', 130));
      rl.close();
    });
    this.rl = rl;
  }

  private finish(): void {
    this.ended = true;
    for (const waiter of this.waiting.splice(0)) waiter.resolve(null);
  }
}

/**
 * fly's tables: left-aligned columns two spaces apart, rows sorted (or, with `keepOrder`, as given:
 * the audit trail's newest first), headers only when asked or on a TTY.
 */
export function renderTable(
  headers: string[],
  rows: string[][],
  withHeaders: boolean,
  { keepOrder = false }: { keepOrder?: boolean } = {},
): string {
  const sorted = keepOrder ? rows : [...rows].sort((a, b) => (a[0] ?? '').localeCompare(b[0] ?? ''));
  const all = withHeaders ? [headers, ...sorted] : sorted;
  const widths = headers.map((_, i) => Math.max(0, ...all.map((row) => (row[i] ?? '').length)));
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => line + '\n')
    .join('');
}
