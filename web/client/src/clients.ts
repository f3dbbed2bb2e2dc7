// One typed client per Telemesh service, over gRPC-web to the edge.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BillingService } from "./gen/telemesh/billing/v1/billing_pb.js";
import { ConsentService } from "./gen/telemesh/consent/v1/consent_pb.js";
import { SessionService } from "./gen/telemesh/session/v1/session_pb.js";
import { SignalingService } from "./gen/telemesh/signaling/v1/signaling_pb.js";

/** An end-user JWT, or a function that returns the current one (for refreshing tokens). */
export type TokenSource = string | (() => string | Promise<string>);

export interface TelemeshOptions {
  /** The edge, for example `https://localhost:8443` (`telemesh up` prints it). */
  baseUrl: string;
  /** The caller's end-user JWT, sent as `authorization: Bearer ...` on every call. */
  token: TokenSource;
  /** Override of fetch (for example to set credentials, or a polyfill on mobile). */
  fetch?: typeof globalThis.fetch;
  /** More interceptors, run after the one that adds the token. */
  interceptors?: Interceptor[];
  /**
   * A transport of your own (for example `createGrpcWebTransport` from
   * `@connectrpc/connect-node` to trust a private CA in Node). Add `bearer(token)` to its
   * interceptors yourself: `baseUrl`, `fetch` and `interceptors` above are then unused.
   */
  transport?: Transport;
}

/** The four services of the contract, each a typed client. */
export interface Telemesh {
  session: Client<typeof SessionService>;
  signaling: Client<typeof SignalingService>;
  consent: Client<typeof ConsentService>;
  billing: Client<typeof BillingService>;
  transport: Transport;
}

/** An interceptor that sends the end user's token with every call. */
export function bearer(token: TokenSource): Interceptor {
  return (next) => async (request) => {
    const value = typeof token === "string" ? token : await token();
    request.header.set("authorization", `Bearer ${value}`);
    return next(request);
  };
}

/** The gRPC-web transport to the edge that `createTelemesh` uses. */
export function edgeTransport(options: TelemeshOptions): Transport {
  return createGrpcWebTransport({
    baseUrl: options.baseUrl,
    useBinaryFormat: true,
    fetch: options.fetch,
    interceptors: [bearer(options.token), ...(options.interceptors ?? [])],
  });
}

/** Clients for every service, sharing one transport. */
export function createTelemesh(options: TelemeshOptions): Telemesh {
  const transport = options.transport ?? edgeTransport(options);
  return {
    session: createClient(SessionService, transport),
    signaling: createClient(SignalingService, transport),
    consent: createClient(ConsentService, transport),
    billing: createClient(BillingService, transport),
    transport,
  };
}

/** A fresh `request_id`: every mutating call takes one, and a retry reuses it. */
export function newRequestId(): string {
  return crypto.randomUUID();
}

/**
 * Headers for calls about one visit: its trace (`traceparent`, from `Visit.traceparent`)
 * so that the call joins the visit's trace, and the visit id that the mesh routes
 * signaling calls by (a visit's stream and its unary calls reach one replica).
 */
export function visitHeaders(visit: { visitId: string; traceparent?: string }): Record<string, string> {
  const headers: Record<string, string> = { "x-telemesh-visit-id": visit.visitId };
  if (visit.traceparent) headers.traceparent = visit.traceparent;
  return headers;
}
