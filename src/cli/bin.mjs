#!/usr/bin/env node
// The `sessiond` command: runs the TypeScript sources through tsx's loader, so
// a fresh clone works with `npm install` alone (no build step).
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
