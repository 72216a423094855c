/**
 * Waiting without sleeping blind: `eventually` re-checks a condition until it
 * holds or a deadline passes (then it fails with the last observed value), so a
 * test asserts in its own body, never in a callback that may never run.
 */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { ms?: number; every?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.ms ?? 15_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what ?? "a condition"}; last: ${String(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.every ?? 20));
  }
}

/** A promise with its resolve function, to gate a step of a test. */
export function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
