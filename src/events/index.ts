export {
  type AppendEventInput,
  type AppendedEvent,
  appendEvent,
  readEvent,
  readEvents,
  type SessionEvent,
} from "./events.js";
