// `caloscore <command> [options]`: dispatches to one module per command in ./commands.
import * as fs from "node:fs";
import * as path from "node:path";

/** Interface of each command module. */
export interface Command {
  /** One line for `caloscore --help`. */
  summary: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

/** Command names in the order `caloscore --help` lists them. */
const commandNames = [
  "simulate",
  "info",
  "features",
  "train",
  "sample",
  "likelihood",
  "evaluate",
  "bench",
  "demo",
] as const;

function loadCommand(name: string): Command | null {
  const file = path.join(__dirname, "commands", `${name}.js`);
  if (!fs.existsSync(file)) return null;
  return require(file) as Command;
}

function usage(): string {
  const lines = ["usage: caloscore <command> [options]", "", "commands:"];
  for (const name of commandNames) {
    const command = loadCommand(name);
    lines.push(`  ${name.padEnd(11)} ${command === null ? "(not available in this build)" : command.summary}`);
  }
  lines.push("", "Run `caloscore <command> --help` for the options of a command.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (!(commandNames as readonly string[]).includes(name)) {
    console.error(`caloscore: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const command = loadCommand(name);
  if (command === null) {
    console.error(`caloscore: command '${name}' is not available in this build`);
    return 2;
  }
  return command.run(rest);
}
