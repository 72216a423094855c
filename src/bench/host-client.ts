/**
 * The bench's side of the host process: forks src/bench/host-entry.mjs with
 * `--expose-gc`, sends it typed commands and
 * awaits the replies, each with a deadline. The host's stdout and stderr (the
 * servers' warnings) go to a log file.
 */
import { type ChildProcess, fork } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { HostCommand, HostCommands, HostReply } from "./host-protocol.js";

const ENTRY = fileURLToPath(new URL("./host-entry.mjs", import.meta.url));

export interface HostOptions {
  /** Where the host's output goes. */
  logFile: string;
  /** Deadline for the host to say it is ready. */
  startTimeoutMs?: number;
}

export class HostProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #nextId = 1;
  #exited: Promise<number | null>;
  #exitCode: number | null | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code) => {
        this.#exitCode = code;
        for (const { reject } of this.#pending.values()) reject(new Error(`bench host exited (code ${code})`));
        this.#pending.clear();
        resolve(code);
      });
    });
    // Send failures reach the callback of send(); anything else shows in the replies' rejections.
    child.on("error", () => {});
    child.on("message", (message: HostReply) => {
      if (!("id" in message)) return;
      const waiter = this.#pending.get(message.id);
      if (!waiter) return;
      this.#pending.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`bench host: ${message.error}`));
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Forks the host and waits until it is ready. */
  static async start(options: HostOptions): Promise<HostProcess> {
    const log = openSync(options.logFile, "a");
    let child: ChildProcess;
    try {
      child = fork(ENTRY, [], {
        execArgv: ["--expose-gc"],
        stdio: ["ignore", log, log, "ipc"],
        serialization: "json",
      });
    } finally {
      closeSync(log);
    }
    const host = new HostProcess(child);
    const timeoutMs = options.startTimeoutMs ?? 60_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the bench host did not start within ${timeoutMs} ms (see ${options.logFile})`));
      }, timeoutMs);
      const onMessage = (message: HostReply) => {
        if ("ready" in message) {
          clearTimeout(timer);
          child.off("message", onMessage);
          resolve();
        }
      };
      child.on("message", onMessage);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the bench host exited during start (code ${code}; see ${options.logFile})`));
      });
    });
    return host;
  }

  /** Sends a command; rejects on the host's error or after `timeoutMs`. */
  request<C extends HostCommand>(
    command: C,
    params: HostCommands[C]["params"],
    timeoutMs = 120_000,
  ): Promise<HostCommands[C]["result"]> {
    if (this.#exitCode !== undefined || !this.#child.connected) {
      return Promise.reject(new Error("the bench host has exited"));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`bench host: ${command} took longer than ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as HostCommands[C]["result"]);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.#child.send({ id, command, params }, (error) => {
        if (!error) return;
        this.#pending.get(id)?.reject(new Error(`bench host: ${command}: ${error.message}`));
        this.#pending.delete(id);
      });
    });
  }

  /** Kills the host at once (the bench was interrupted); pending requests reject. */
  kill(): void {
    if (this.#exitCode === undefined) this.#child.kill("SIGKILL");
  }

  /** Asks the host to close everything and exit; kills it if it does not within the deadline. */
  async stop(timeoutMs = 20_000): Promise<number | null> {
    if (this.#exitCode !== undefined) return this.#exitCode;
    try {
      await this.request("shutdown", {}, timeoutMs);
    } catch {
      // fall through to the kill below
    }
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#child.kill("SIGKILL");
        resolve();
      }, 5_000);
    });
    await Promise.race([this.#exited, killed]);
    clearTimeout(timer);
    return this.#exited;
  }
}
