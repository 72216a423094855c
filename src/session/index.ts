export { SessiondCheckpointer, type SessiondCheckpointerOptions } from "./checkpointer.js";
