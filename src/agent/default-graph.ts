/**
 * The default agent: one model node that answers the whole message history.
 * The builder is returned uncompiled so the session runtime can compile it
 * with its own (transactional) checkpointer.
 */
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";

/** The name of the default graph's only node (it shows in stream metadata as `langgraph_node`). */
export const MODEL_NODE = "model";

/** The default graph over `MessagesAnnotation`, uncompiled. */
export function createDefaultGraph(model: BaseChatModel) {
  return new StateGraph(MessagesAnnotation)
    .addNode(MODEL_NODE, async (state, config) => ({ messages: [await model.invoke(state.messages, config)] }))
    .addEdge(START, MODEL_NODE)
    .addEdge(MODEL_NODE, END);
}

/** The default graph, compiled (with a checkpointer for memory across turns). */
export function compileDefaultGraph(model: BaseChatModel, checkpointer?: BaseCheckpointSaver) {
  return createDefaultGraph(model).compile(checkpointer ? { checkpointer } : {});
}
