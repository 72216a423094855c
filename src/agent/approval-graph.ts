/**
 * A human-in-the-loop graph for tests of interrupts: it asks for approval of
 * the last user message with LangGraph's `interrupt()` and, once resumed with
 * `new Command({ resume: "yes" | "no" })`, answers approved or declined.
 *
 * Any other resume value asks again (a second interrupt in the same node),
 * rather than failing the run: a bad answer from a client must not kill the
 * session. Needs a checkpointer: an interrupt is a checkpoint.
 */
import { AIMessage } from "@langchain/core/messages";
import { END, interrupt, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";
import { lastUserText } from "./history.js";

/** The value the graph interrupts with. */
export interface ApprovalQuestion {
  question: string;
}

/** The resume values the graph accepts. */
export type ApprovalAnswer = "yes" | "no";

/** The name of the approval graph's only node. */
export const APPROVAL_NODE = "approve";

/** The approval graph over `MessagesAnnotation`, uncompiled. */
export function createApprovalGraph() {
  return new StateGraph(MessagesAnnotation)
    .addNode(APPROVAL_NODE, (state) => {
      const request = lastUserText(state.messages);
      let question = `Approve "${request}"?`;
      for (;;) {
        const answer: unknown = interrupt<ApprovalQuestion, unknown>({ question });
        if (answer === "yes") return { messages: [new AIMessage(`Approved: "${request}".`)] };
        if (answer === "no") return { messages: [new AIMessage(`Declined: "${request}".`)] };
        question = `Please answer "yes" or "no". Approve "${request}"?`;
      }
    })
    .addEdge(START, APPROVAL_NODE)
    .addEdge(APPROVAL_NODE, END);
}

/** The approval graph, compiled with the checkpointer its interrupts need. */
export function compileApprovalGraph(checkpointer: BaseCheckpointSaver) {
  return createApprovalGraph().compile({ checkpointer });
}
