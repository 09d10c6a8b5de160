export { Prism, DEFAULT_BASE_URL, DEFAULT_CONTROL_PLANE_URL, DEFAULT_TIMEOUT } from "./client.js";
export type { PrismOptions } from "./client.js";
export { OrgConfigs, Keys, Providers } from "./resources.js";
export {
  PrismError,
  APIConnectionError,
  APIStatusError,
  BadRequestError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  ConflictError,
  RateLimitError,
  InternalServerError,
} from "./errors.js";
export type * from "./types.js";
