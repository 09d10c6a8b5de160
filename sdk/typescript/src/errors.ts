/**
 * Typed errors for control-plane failures. The control plane answers errors as
 * `{"error": {"message", "type", "param", "code"}}`; the error thrown carries those fields
 * and the HTTP status. Data-plane calls throw the official `openai` errors.
 */

export interface ErrorFields {
  status?: number | undefined;
  type?: string | null | undefined;
  param?: string | null | undefined;
  code?: string | null | undefined;
  body?: unknown;
  cause?: unknown;
}

/** Base class of every error thrown by the Prism control-plane client. */
export class PrismError extends Error {
  /** HTTP status; `undefined` when no answer was received. */
  readonly status: number | undefined;
  readonly type: string | null;
  readonly param: string | null;
  readonly code: string | null;
  /** The decoded error body, as the server sent it. */
  readonly body: unknown;

  constructor(message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.status = fields.status;
    this.type = fields.type ?? null;
    this.param = fields.param ?? null;
    this.code = fields.code ?? null;
    this.body = fields.body;
  }
}

/** The control plane could not be reached (refused, DNS, timeout). */
export class APIConnectionError extends PrismError {}

/** An error status not covered by a narrower class. */
export class APIStatusError extends PrismError {
  declare readonly status: number;
}

/** 400, 413 or 422: the request was refused as invalid; nothing changed. */
export class BadRequestError extends APIStatusError {}
/** 401: missing or wrong admin key. */
export class AuthenticationError extends APIStatusError {}
/** 403. */
export class PermissionDeniedError extends APIStatusError {}
/** 404: no record with that id (or an unknown path). */
export class NotFoundError extends APIStatusError {}
/** 409: a name already taken, or a change that conflicts with the running config. */
export class ConflictError extends APIStatusError {}
/** 429. */
export class RateLimitError extends APIStatusError {}
/** 5xx. */
export class InternalServerError extends APIStatusError {}

const BY_STATUS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: BadRequestError,
  422: BadRequestError,
  429: RateLimitError,
};

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/** The error for an error answer, from its decoded JSON body (or its raw text). */
export function errorForStatus(status: number, body: unknown, text = ""): APIStatusError {
  const envelope = body !== null && typeof body === "object" ? (body as Record<string, unknown>)["error"] : undefined;
  const fields =
    envelope !== null && typeof envelope === "object" ? (envelope as Record<string, unknown>) : ({} as Record<string, unknown>);
  const message =
    str(fields["message"]) || (typeof envelope === "string" && envelope) || text.trim() || `HTTP ${status}`;
  const Cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
  return new Cls(message, {
    status,
    type: str(fields["type"]),
    param: str(fields["param"]),
    code: str(fields["code"]),
    body,
  });
}
