// Entry of the bench host process: runs the TypeScript host through tsx's
// loader, like src/cli/bin.mjs does for the CLI.
import { register } from "tsx/esm/api";

register();
await import("./host.ts");
