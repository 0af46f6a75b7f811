#!/usr/bin/env node
// Command-line entry; the implementation is compiled from src/cli/main.ts.
require("../dist/src/cli/main.js").main(process.argv.slice(2)).then(
  (code) => process.exit(code ?? 0),
  (error) => {
    console.error(`caloscore: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
