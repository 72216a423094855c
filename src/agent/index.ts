export {
  APPROVAL_NODE,
  type ApprovalAnswer,
  type ApprovalQuestion,
  compileApprovalGraph,
  createApprovalGraph,
} from "./approval-graph.js";
export { compileDefaultGraph, createDefaultGraph, MODEL_NODE } from "./default-graph.js";
export { lastUserText } from "./history.js";
export {
  isAbortError,
  LocalChatModel,
  type LocalChatModelOptions,
  type LocalModelBehaviour,
  LocalModelFailure,
  type LocalModelTurn,
  type LocalReply,
  localReply,
  splitTokens,
} from "./local-model.js";
export {
  createModel,
  type ModelConfig,
  ModelConfigError,
  type ModelConfigIssue,
  ModelConfigSchema,
  modelConfigFromEnv,
  parseModelConfig,
} from "./models.js";
export { createOpenAiModel, DEFAULT_OPENAI_MODEL, type OpenAiModelConfig } from "./openai.js";
