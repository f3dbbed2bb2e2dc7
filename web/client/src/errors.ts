// Telemesh errors as data: the status code, the stable ErrorInfo reason and the bad fields
// from `grpc-status-details-bin` (README, "Errors").
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export interface FieldViolation {
  field: string;
  description: string;
}

export interface TelemeshError {
  /** The gRPC status code name, for example `FAILED_PRECONDITION`. */
  code: string;
  /** The ErrorInfo reason, for example `SLOT_TAKEN`; empty when the status had none. */
  reason: string;
  /** The ErrorInfo domain (`telemesh.dev` for Telemesh's own reasons). */
  domain: string;
  /** The ErrorInfo metadata (identifiers only). */
  metadata: Record<string, string>;
  /** The status message. */
  message: string;
  /** The bad fields of an INVALID_ARGUMENT. */
  fieldViolations: FieldViolation[];
}

/** gRPC's name of a Connect code: `Code.FailedPrecondition` is `FAILED_PRECONDITION`. */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Whatever was thrown, as a TelemeshError (network failures are UNAVAILABLE, etc.). */
export function describeError(error: unknown): TelemeshError {
  const connectError = ConnectError.from(error);
  const [info] = connectError.findDetails(ErrorInfoSchema);
  const violations = connectError
    .findDetails(BadRequestSchema)
    .flatMap((detail) => detail.fieldViolations)
    .map(({ field, description }) => ({ field, description }));
  return {
    code: codeName(connectError.code),
    reason: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    message: connectError.rawMessage,
    fieldViolations: violations,
  };
}

/** One line for people: `FAILED_PRECONDITION NOT_ADMITTED: the clinician has not ...`. */
export function formatError(error: unknown): string {
  const described = describeError(error);
  const head = described.reason ? `${described.code} ${described.reason}` : described.code;
  const fields = described.fieldViolations.map((v) => `${v.field} ${v.description}`);
  return [`${head}: ${described.message}`, ...fields].join("; ");
}

/** Whether a call may be retried as it was (same request_id): the service was not reached
 * or is restarting. */
export function isTransient(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded;
}
