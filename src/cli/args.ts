// Option parsing shared by the commands, on node:util parseArgs, with typed accessors whose
// errors name the option, the expected form and the value found.
import { parseArgs, ParseArgsConfig } from "node:util";

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses `args` against `options`; unknown options are errors. `--help` is always accepted. */
export function parseOptions(command: string, args: string[], options: OptionSpec, allowPositionals = false): ParsedArgs {
  try {
    const parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
    return { values: parsed.values as ParsedArgs["values"], positionals: parsed.positionals };
  } catch (error) {
    throw new Error(`${command}: ${(error as Error).message}`);
  }
}

export function requireString(command: string, parsed: ParsedArgs, name: string): string {
  const value = parsed.values[name];
  if (typeof value !== "string" || value === "") throw new Error(`${command}: missing required option --${name}`);
  return value;
}

export function optionalString(parsed: ParsedArgs, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : undefined;
}

/** Reads a numeric option; `integer` requires a whole number, `min` a lower bound. */
export function optionalNumber(
  command: string,
  parsed: ParsedArgs,
  name: string,
  constraints: { integer?: boolean; min?: number } = {},
): number | undefined {
  const raw = parsed.values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(value)) {
    throw new Error(`${command}: --${name} must be a number, found '${String(raw)}'`);
  }
  if (constraints.integer && !Number.isInteger(value)) {
    throw new Error(`${command}: --${name} must be an integer, found '${raw}'`);
  }
  if (constraints.min !== undefined && value < constraints.min) {
    throw new Error(`${command}: --${name} must be at least ${constraints.min}, found ${value}`);
  }
  return value;
}

export function flag(parsed: ParsedArgs, name: string): boolean {
  return parsed.values[name] === true;
}
