/** The sessiond server: startServer, tokens, configuration and the wire protocol. */
export { authorize, loadOrCreateSecret, mintToken, parseTtl, secretPath, verifyToken } from "./auth.js";
export {
  ConfigError,
  type ConfigIssue,
  configFromEnv,
  ENV_VARS,
  FLAGS,
  parseServerConfig,
  pgliteDir,
  type ServerConfig,
  type ServerConfigInput,
  ServerConfigSchema,
} from "./config.js";
export { effectFrame } from "./delivery.js";
export { Metrics } from "./metrics.js";
export * from "./protocol.js";
export { createLogger, type SessiondServer, type StartServerOptions, startServer } from "./server.js";
