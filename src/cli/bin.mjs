#!/usr/bin/env node
// The `sessiond` command: runs the TypeScript sources through tsx's loader, so
// a fresh clone works with `npm install` alone (no build step).
import { register } from "tsx/esm/api";

register();
// Called, not left to main.ts to detect: run through npm's link (node_modules/.bin/sessiond, npx) the
// process's argv[1] is the link, and a check of it would run nothing.
const { runProcess } = await import("./main.ts");
await runProcess();
