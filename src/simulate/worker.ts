// Worker-thread entry of the simulation pool: receives a request and shower ranges, returns the
// simulated batches with their buffers transferred.
import { parentPort } from "node:worker_threads";
import { PreparedRun, SimulationRequest, prepareRun, simulateBatch } from "./batch";

/** Message from the pool: simulate `count` showers from index `start` of `request`. */
export interface WorkerTask {
  id: number;
  request: SimulationRequest;
  start: number;
  count: number;
}

let prepared: { key: string; run: PreparedRun } | null = null;

if (parentPort !== null) {
  const port = parentPort;
  port.on("message", (task: WorkerTask) => {
    try {
      const key = JSON.stringify(task.request);
      if (prepared === null || prepared.key !== key) prepared = { key, run: prepareRun(task.request) };
      const batch = simulateBatch(prepared.run, task.start, task.count);
      port.postMessage({ id: task.id, batch }, [batch.energies.buffer as ArrayBuffer, batch.showers.buffer as ArrayBuffer]);
    } catch (error) {
      port.postMessage({ id: task.id, error: error instanceof Error ? error.message : String(error) });
    }
  });
}
