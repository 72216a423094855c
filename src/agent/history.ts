import type { BaseMessage } from "@langchain/core/messages";

/** The text of the last human message in a history ("" when there is none). */
export function lastUserText(messages: readonly BaseMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.getType() === "human") return message.text;
  }
  return "";
}
