// A visit's signaling room: the JoinRoom event stream (resumed from the last sequence
// number after a drop) and the uplink calls, each idempotent on its request_id.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  create,
  describeError,
  isTransient,
  newRequestId,
  signaling,
  visitHeaders,
  type Telemesh,
} from "@telemesh/client";
import { sleep } from "./ui";

type Joined = signaling.Joined;
type IceCandidate = signaling.IceCandidate;

export interface RoomHandlers {
  joined(joined: Joined): Promise<void> | void;
  peerJoined(): Promise<void> | void;
  peerLeft(): Promise<void> | void;
  description(description: RTCSessionDescriptionInit): Promise<void> | void;
  candidates(candidates: RTCIceCandidateInit[]): Promise<void> | void;
  admitted(): Promise<void> | void;
  closed(reason: signaling.RoomCloseReason): Promise<void> | void;
  /** The stream's own state, for the page: live, reconnecting (with why), or ended. */
  stream(state: "live" | "reconnecting" | "ended", detail?: string): void;
  /** The stream stopped for good with this error (no retry helps). */
  failed(error: unknown): void;
  /** Handling one event failed; the stream goes on. */
  problem(error: unknown): void;
}

export interface VisitRef {
  visitId: string;
  traceparent: string;
}

const SDP_TYPES: Record<RTCSdpType, signaling.SdpType> = {
  offer: signaling.SdpType.OFFER,
  answer: signaling.SdpType.ANSWER,
  pranswer: signaling.SdpType.PRANSWER,
  rollback: signaling.SdpType.ROLLBACK,
};
const SDP_NAMES = new Map<signaling.SdpType, RTCSdpType>(
  (Object.entries(SDP_TYPES) as [RTCSdpType, signaling.SdpType][]).map(([name, type]) => [type, name]),
);
const CONNECTION_STATES: Partial<Record<RTCPeerConnectionState, signaling.ConnectionState>> = {
  connecting: signaling.ConnectionState.CONNECTING,
  connected: signaling.ConnectionState.CONNECTED,
  disconnected: signaling.ConnectionState.DISCONNECTED,
  failed: signaling.ConnectionState.FAILED,
  closed: signaling.ConnectionState.CLOSED,
};
// Statuses after which rejoining cannot help: the page says why and stops.
const FINAL_CODES = new Set([
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.NotFound,
  Code.InvalidArgument,
  Code.Unauthenticated,
]);
const MAX_BACKOFF_MS = 5000;
const UPLINK_ATTEMPTS = 4;

export class RoomConnection {
  roomId = "";
  /** The highest sequence number seen: a resumed stream starts after it. */
  lastSequence = 0n;
  private abort = new AbortController();
  private attempt: AbortController | null = null;
  private holdUntil = 0;
  private left = false;
  // Descriptions and candidates go up in the order they were made.
  private relayQueue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly api: Telemesh,
    private readonly visit: VisitRef,
    private readonly handlers: RoomHandlers,
  ) {}

  private get headers(): Record<string, string> {
    return visitHeaders(this.visit);
  }

  /** Joins and keeps the stream open until the room closes, we leave, or a final error. */
  async run(): Promise<void> {
    let backoff = 250;
    while (!this.abort.signal.aborted) {
      this.attempt = new AbortController();
      const signal = AbortSignal.any([this.abort.signal, this.attempt.signal]);
      try {
        // A fresh join token per (re)join: they are short-lived.
        const { joinToken } = await this.api.session.issueJoinToken(
          { visitId: this.visit.visitId },
          { headers: this.headers, signal },
        );
        const stream = this.api.signaling.joinRoom(
          { joinToken, resumeAfterSequence: this.lastSequence },
          { headers: this.headers, signal },
        );
        for await (const event of stream) {
          if (event.sequence > this.lastSequence) this.lastSequence = event.sequence;
          if (event.event.case === "joined") {
            this.roomId = event.event.value.roomId;
            backoff = 250;
            this.handlers.stream("live");
          }
          try {
            if (await this.dispatch(event.event)) return this.end();
          } catch (handlerError) {
            // A message the page could not use (say, a description that did not apply)
            // must not cost the stream: say so and go on with the next event.
            this.handlers.problem(handlerError);
          }
        }
        if (this.left || this.abort.signal.aborted) return this.end();
        this.handlers.stream("reconnecting", "the stream ended");
      } catch (error) {
        if (this.abort.signal.aborted) return this.end();
        const connectError = ConnectError.from(error);
        const { reason } = describeError(error);
        if (FINAL_CODES.has(connectError.code) || reason === "STREAM_SUPERSEDED") {
          this.handlers.failed(error);
          return this.end();
        }
        this.handlers.stream("reconnecting", `${reason || Code[connectError.code]}`);
      }
      await sleep(Math.max(backoff, this.holdUntil - Date.now()));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
    this.end();
  }

  private end(): void {
    this.handlers.stream("ended");
  }

  /** Hands one event to the page; true when the room closed. */
  private async dispatch(event: signaling.JoinRoomResponse["event"]): Promise<boolean> {
    switch (event.case) {
      case "joined":
        await this.handlers.joined(event.value);
        return false;
      case "peerJoined":
        await this.handlers.peerJoined();
        return false;
      case "peerLeft":
        await this.handlers.peerLeft();
        return false;
      case "sessionDescription": {
        const description = event.value.description;
        const type = description && SDP_NAMES.get(description.type);
        if (description && type) await this.handlers.description({ type, sdp: description.sdp });
        return false;
      }
      case "iceCandidates":
        await this.handlers.candidates(event.value.candidates.map(fromProtoCandidate));
        return false;
      case "admitted":
        await this.handlers.admitted();
        return false;
      case "roomClosed":
        await this.handlers.closed(event.value.reason);
        return true;
      default:
        return false; // keepalives and recording changes
    }
  }

  /**
   * Drops the stream as a network failure would, and stays away for `holdMs`: the
   * stream then resumes after the last sequence number seen (for tests and support).
   */
  dropStream(holdMs = 0): void {
    this.holdUntil = Date.now() + holdMs;
    this.attempt?.abort();
  }

  /** Stops the stream (the page is closing the call). */
  stop(): void {
    this.abort.abort();
  }

  // --- uplink -------------------------------------------------------------------

  /** One idempotent call, retried with the same request_id while the service is away. */
  private async call<T>(send: (requestId: string) => Promise<T>): Promise<T> {
    const requestId = newRequestId();
    for (let attempt = 1; ; attempt++) {
      try {
        return await send(requestId);
      } catch (error) {
        const retryable = isTransient(error) || ConnectError.from(error).code === Code.ResourceExhausted;
        if (!retryable || attempt >= UPLINK_ATTEMPTS) throw error;
        await sleep(200 * 2 ** attempt);
      }
    }
  }

  private relay<T>(send: (requestId: string) => Promise<T>): Promise<T> {
    const next = this.relayQueue.then(() => this.call(send));
    this.relayQueue = next.catch(() => undefined);
    return next;
  }

  sendDescription(description: RTCSessionDescriptionInit): Promise<unknown> {
    const type = SDP_TYPES[description.type];
    if (type === undefined) throw new Error(`unknown description type ${description.type}`);
    return this.relay((requestId) =>
      this.api.signaling.sendSessionDescription(
        { requestId, roomId: this.roomId, description: { type, sdp: description.sdp ?? "" } },
        { headers: this.headers },
      ),
    );
  }

  sendCandidates(candidates: RTCIceCandidateInit[]): Promise<unknown> {
    return this.relay((requestId) =>
      this.api.signaling.sendIceCandidates(
        { requestId, roomId: this.roomId, candidates: candidates.map(toProtoCandidate) },
        { headers: this.headers },
      ),
    );
  }

  reportConnectionState(state: RTCPeerConnectionState): Promise<unknown> {
    const reported = CONNECTION_STATES[state];
    if (reported === undefined || !this.roomId) return Promise.resolve();
    return this.call((requestId) =>
      this.api.signaling.reportConnectionState(
        { requestId, roomId: this.roomId, state: reported },
        { headers: this.headers },
      ),
    );
  }

  reportCallQuality(quality: signaling.CallQuality): Promise<unknown> {
    return this.call((requestId) =>
      this.api.signaling.reportCallQuality(
        { requestId, roomId: this.roomId, quality },
        { headers: this.headers },
      ),
    );
  }

  admit(): Promise<unknown> {
    return this.call((requestId) =>
      this.api.signaling.admitPatient({ requestId, roomId: this.roomId }, { headers: this.headers }),
    );
  }

  /** Leaves the room (the other participant is told) and ends the stream. */
  async leave(): Promise<void> {
    this.left = true;
    try {
      if (this.roomId) {
        await this.call((requestId) =>
          this.api.signaling.leaveRoom({ requestId, roomId: this.roomId }, { headers: this.headers }),
        );
      }
    } finally {
      this.stop();
    }
  }
}

function toProtoCandidate(candidate: RTCIceCandidateInit): IceCandidate {
  return create(signaling.IceCandidateSchema, {
    candidate: candidate.candidate ?? "",
    sdpMid: candidate.sdpMid ?? "",
    sdpMlineIndex: candidate.sdpMLineIndex ?? 0,
    usernameFragment: candidate.usernameFragment ?? "",
  });
}

function fromProtoCandidate(candidate: IceCandidate): RTCIceCandidateInit {
  return {
    candidate: candidate.candidate,
    sdpMid: candidate.sdpMid || null,
    sdpMLineIndex: candidate.sdpMlineIndex,
    usernameFragment: candidate.usernameFragment || null,
  };
}
