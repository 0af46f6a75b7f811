// Progress display: a bar redrawn in place on a terminal, nothing between log lines otherwise
// (the caller logs one line per epoch or chunk).

export interface ProgressReporter {
  /** Redraws the bar: a label, the completed fraction in [0, 1] and a short status. */
  update(label: string, fraction: number, status: string): void;
  /** Prints a log line (clearing the bar first on a terminal). */
  log(line: string): void;
  /** Clears the bar. */
  done(): void;
}

export function progressReporter(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  const interactive = stream.isTTY === true && process.env.CI === undefined;
  let drawn = false;
  let lastDraw = 0;
  const clear = () => {
    if (drawn) stream.write("\r\x1b[2K");
    drawn = false;
  };
  return {
    update(label, fraction, status) {
      if (!interactive) return;
      const now = Date.now();
      if (now - lastDraw < 100 && fraction < 1) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
      const bar = "=".repeat(filled) + (filled < width ? ">" : "") + " ".repeat(Math.max(0, width - filled - 1));
      stream.write(`\r\x1b[2K${label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${status}`);
      drawn = true;
    },
    log(line) {
      clear();
      console.log(line);
    },
    done() {
      clear();
    },
  };
}
