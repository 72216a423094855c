export { type Column, cell, formatMs, formatTable } from "./table.js";
export { VERIFY_CHECKS, type VerifyCheck, type VerifyOptions, type Violation, verify } from "./verify.js";
export {
  type SessionSummary,
  type StuckItem,
  sessionSummary,
  stuck,
  type TimelineEntry,
  timeline,
} from "./views.js";
