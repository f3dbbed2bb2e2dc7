// @telemesh/client: typed access to the Telemesh API from browsers, Node and mobile apps.
//
// The messages and services are generated from protos/ (src/gen, never edited by hand);
// this file adds the transport to the edge, the bearer token and readable errors.
export {
  bearer,
  createTelemesh,
  edgeTransport,
  newRequestId,
  visitHeaders,
  type Telemesh,
  type TelemeshOptions,
  type TokenSource,
} from "./clients.js";
export {
  codeName,
  describeError,
  formatError,
  isTransient,
  type FieldViolation,
  type TelemeshError,
} from "./errors.js";
export * as billing from "./gen/telemesh/billing/v1/billing_pb.js";
export * as consent from "./gen/telemesh/consent/v1/consent_pb.js";
export * as session from "./gen/telemesh/session/v1/session_pb.js";
export * as signaling from "./gen/telemesh/signaling/v1/signaling_pb.js";
export { create, toJson, fromJson, type MessageShape } from "@bufbuild/protobuf";
export { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
