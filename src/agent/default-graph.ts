/**
 * The default agent: one model node that answers the whole message history.
 * The builder is returned uncompiled so the session runtime can compile it
 * with its own (transactional) checkpointer.
 *
 * `MessagesAnnotation`'s reducer replaces a message whose id is already in the
 * history. Some OpenAI-compatible servers reuse completion ids (a constant, or
 * a counter that restarts with the server), which would silently overwrite an
 * earlier reply; the node gives such a reply a fresh id.
 */
import { randomUUID } from "node:crypto";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import type { BaseMessage } from "@langchain/core/messages";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";

/** The name of the default graph's only node (it shows in stream metadata as `langgraph_node`). */
export const MODEL_NODE = "model";

function withUniqueId(reply: BaseMessage, history: readonly BaseMessage[]): BaseMessage {
  if (reply.id === undefined || !history.some((m) => m.id === reply.id)) return reply;
  const id = `${reply.id}-${randomUUID()}`;
  reply.id = id;
  reply.lc_kwargs.id = id;
  return reply;
}

/** The default graph over `MessagesAnnotation`, uncompiled. */
export function createDefaultGraph(model: BaseChatModel) {
  return new StateGraph(MessagesAnnotation)
    .addNode(MODEL_NODE, async (state, config) => {
      const reply = await model.invoke(state.messages, config);
      return { messages: [withUniqueId(reply, state.messages)] };
    })
    .addEdge(START, MODEL_NODE)
    .addEdge(MODEL_NODE, END);
}

/** The default graph, compiled (with a checkpointer for memory across turns). */
export function compileDefaultGraph(model: BaseChatModel, checkpointer?: BaseCheckpointSaver) {
  return createDefaultGraph(model).compile(checkpointer ? { checkpointer } : {});
}
