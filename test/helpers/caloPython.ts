// Runs reference scripts with Debian's /usr/bin/python3, which has numpy and h5py (the python3 on
// PATH may not).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const debianPython = "/usr/bin/python3";

/**
 * Runs `script` with the given arguments and `input` on standard input, and returns its standard
 * output. Throws with the script's stderr on failure.
 */
export function runPython(script: string, args: string[] = [], timeoutMs = 120_000, input = ""): string {
  try {
    return execFileSync(debianPython, ["-c", script, ...args], {
      input,
      encoding: "utf8",
      timeout: timeoutMs,
      maxBuffer: 256 * 1024 * 1024,
    });
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    throw new Error(`${debianPython} failed: ${failure.stderr ?? failure.message}`);
  }
}

/** Creates a temporary folder that is removed when the process exits. */
export function temporaryFolder(prefix = "caloscore-test-"): string {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on("exit", () => fs.rmSync(folder, { recursive: true, force: true }));
  return folder;
}
