/**
 * The chaos suites start many real `sessiond serve` processes (a dozen per
 * `npm test`, hundreds in the long form). Through src/cli/bin.mjs each pays
 * for tsx's module hooks on every import — ~3.5 s of CPU to start, against
 * ~1.2 s for plain Node — and on this 2-core machine those starts were a fifth
 * of the suite's CPU. So global setup transpiles src/ once per run with
 * esbuild (what tsx itself uses: the same output, file for file, minus the
 * hooks) into node_modules/.cache, mirroring the tree so that every relative
 * path the sources resolve through import.meta.url (migrations, page assets)
 * still resolves. The chaos harness spawns `node <build>/src/cli/main.js
 * serve`; test/cli/serve.e2e.test.ts keeps running the real src/cli/bin.mjs.
 */
import { cp, mkdir, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

/** Builds the server into a fresh folder under node_modules/.cache; returns the CLI entry (main.js). */
export async function buildServerForTests(name: string): Promise<{ entry: string; remove: () => Promise<void> }> {
  // Inside node_modules, so the build resolves packages from the project's node_modules.
  const out = join(ROOT, "node_modules/.cache/sessiond-test", name);
  await rm(out, { recursive: true, force: true });
  const sources = await filesUnder(join(ROOT, "src"));
  const typescript = sources.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"));
  await build({
    entryPoints: typescript,
    outbase: ROOT,
    outdir: out,
    format: "esm",
    platform: "node",
    target: "node20",
    bundle: false,
    logLevel: "error",
  });
  for (const file of sources.filter((file) => !file.endsWith(".ts"))) {
    await mkdir(dirname(join(out, relative(ROOT, file))), { recursive: true });
    await cp(file, join(out, relative(ROOT, file)));
  }
  await writeFile(join(out, "package.json"), JSON.stringify({ type: "module" }));
  await symlink(join(ROOT, "migrations"), join(out, "migrations"), "dir");
  return { entry: join(out, "src/cli/main.js"), remove: () => rm(out, { recursive: true, force: true }) };
}
