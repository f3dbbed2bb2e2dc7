// A participant's side of a visit's call: the room stream, the peer connection, the
// videos and chat on the page, and the reports (connection state, call quality) that
// the signaling service uses for connected time and monitoring.
import { formatError, signaling, type session, type Telemesh } from "@telemesh/client";
import { PeerCall, type CallStats } from "./call";
import { RoomConnection } from "./room";
import { byId, enumLabel, fill, h } from "./ui";

export type Role = "patient" | "clinician";

const QUALITY_EVERY_MS = 3000;

/** The call's part of the page (created once; see callSection()). */
export function callSection(peerLabel: string): HTMLElement {
  return h(
    "section",
    { id: "call", hidden: true },
    h("h2", {}, "Video call"),
    h("p", { id: "call-status", "data-testid": "call-status", "data-state": "idle" }, ""),
    h("p", { id: "call-stream", class: "note", "data-state": "" }, ""),
    h("p", { id: "call-problem", class: "problem" }, ""),
    h(
      "div",
      { class: "videos" },
      h(
        "figure",
        {},
        h("video", { id: "local-video", autoplay: true, muted: true, playsinline: true }),
        h("figcaption", {}, "You"),
      ),
      h(
        "figure",
        {},
        h("video", { id: "remote-video", autoplay: true, playsinline: true }),
        h("figcaption", {}, peerLabel),
      ),
    ),
    h("p", { id: "call-quality", "data-testid": "call-quality" }, ""),
    h(
      "div",
      { class: "chat" },
      h("ol", { id: "chat-log", "data-testid": "chat-log" }),
      h(
        "form",
        { id: "chat-form" },
        h("input", { id: "chat-input", placeholder: "Message", autocomplete: "off" }),
        h("button", { id: "chat-send", type: "submit" }, "Send"),
      ),
    ),
  );
}

function setStatus(text: string, state: string): void {
  const status = byId("call-status");
  status.dataset.state = state;
  fill(status, text);
}

function addChat(who: string, text: string): void {
  byId("chat-log").append(h("li", { "data-from": who }, `${who}: ${text}`));
}

/** The signaling service's ICE servers (STUN, TURN with credentials) for a peer connection. */
export function toIceServers(servers: signaling.IceServer[]): RTCIceServer[] {
  return servers.map((server) => ({
    urls: server.urls,
    ...(server.username ? { username: server.username, credential: server.credential } : {}),
  }));
}

export interface VisitCallHooks {
  /** The room said the patient is admitted (now or when we joined). */
  admitted?(): void;
  /** The room's id is known and whether the patient is admitted. */
  joined?(joined: signaling.Joined): void;
  /** The other participant came or went. */
  peer?(present: boolean): void;
  /** The room closed, or the stream stopped for good. */
  ended?(why: string): void;
}

export class VisitCall {
  readonly room: RoomConnection;
  call: PeerCall | null = null;
  admitted = false;
  peerPresent = false;
  private polite = false;
  private iceServers: RTCIceServer[] = [];
  private qualityTimer: ReturnType<typeof setInterval> | undefined;
  private ended = false;

  constructor(
    api: Telemesh,
    visit: session.Visit,
    private readonly role: Role,
    private readonly localStream: MediaStream,
    private readonly hooks: VisitCallHooks = {},
  ) {
    this.room = new RoomConnection(api, visit, {
      joined: (joined) => this.onJoined(joined),
      peerJoined: () => this.onPeerJoined(),
      peerLeft: () => this.onPeerLeft(),
      description: (description) => this.onDescription(description),
      candidates: (candidates) => this.call?.handleCandidates(candidates),
      admitted: () => this.onAdmitted(),
      closed: (reason) => this.finish(`The room closed (${enumLabel(signaling.RoomCloseReason, reason)}).`),
      stream: (state, detail) => {
        const banner = byId("call-stream");
        banner.dataset.state = state;
        fill(banner, state === "reconnecting" ? `Reconnecting to the room (${detail})...` : "");
      },
      failed: (error) => this.finish(formatError(error)),
      problem: (error) => this.problem(error),
    });
  }

  /** Shows our camera and joins the room; the call starts once both may talk. */
  start(): void {
    byId("call").hidden = false;
    const local = byId<HTMLVideoElement>("local-video");
    local.muted = true; // the attribute alone sets only the default: no echo of ourselves
    local.srcObject = this.localStream;
    setStatus("Joining the room...", "joining");
    byId<HTMLFormElement>("chat-form").onsubmit = (event) => {
      event.preventDefault();
      const input = byId<HTMLInputElement>("chat-input");
      if (input.value && this.call?.send(input.value)) {
        addChat("me", input.value);
        input.value = "";
      }
    };
    void this.room.run();
    this.qualityTimer = setInterval(() => void this.reportQuality(), QUALITY_EVERY_MS);
  }

  private problem(error: unknown): void {
    console.warn("call problem", error);
    fill(byId("call-problem"), formatError(error));
  }

  private onJoined(joined: signaling.Joined): void {
    this.polite = joined.polite;
    this.iceServers = toIceServers(joined.iceServers);
    this.admitted = joined.admitted;
    this.peerPresent = joined.peerPresent;
    this.hooks.joined?.(joined);
    if (joined.admitted) this.hooks.admitted?.();
    if (joined.resumeGap) this.call?.restartIce(); // events were lost while away
    // The room forgets a participant's connection state when its stream drops: say it
    // again, or the call stops counting as connected after a resume.
    if (this.call) this.onConnectionState(this.call.pc.connectionState);
    this.hooks.peer?.(joined.peerPresent);
    this.maybeStartCall();
    this.refreshStatus();
  }

  /** The status line, from what we know now. */
  private refreshStatus(): void {
    if (this.ended) return;
    if (!this.call) {
      if (!this.admitted) {
        setStatus(
          this.role === "patient"
            ? "You are in the waiting room. The clinician will admit you."
            : this.peerPresent
              ? "The patient is waiting: admit them to start the call."
              : "Waiting for the patient to join.",
          "waiting",
        );
      } else {
        setStatus("Waiting for the other participant to join.", "waiting");
      }
      return;
    }
    if (!this.peerPresent) {
      setStatus("The other participant is not in the room.", "peer-left");
      return;
    }
    const state = this.call.pc.connectionState;
    if (state === "connected") setStatus("Connected.", "connected");
    else if (state === "failed") setStatus("The connection failed; trying again...", "failed");
    else if (state === "disconnected") setStatus("The connection dropped; trying again...", "disconnected");
    else setStatus("Connecting the call...", "connecting");
  }

  private onPeerJoined(): void {
    this.peerPresent = true;
    this.hooks.peer?.(true);
    // A peer that comes back with a fresh page needs a fresh connection; one that only
    // resumed its signaling stream keeps the media that still flows.
    if (this.call && this.call.pc.connectionState !== "connected") this.rebuild();
    this.maybeStartCall();
    this.refreshStatus();
  }

  private onPeerLeft(): void {
    this.peerPresent = false;
    this.hooks.peer?.(false);
    this.refreshStatus();
  }

  private onAdmitted(): void {
    this.admitted = true;
    this.hooks.admitted?.();
    this.maybeStartCall();
    this.refreshStatus();
  }

  private async onDescription(description: RTCSessionDescriptionInit): Promise<void> {
    if (!this.call) this.startCall();
    try {
      await this.call!.handleDescription(description);
    } catch (error) {
      // An offer our connection cannot take (the other side started afresh): start afresh
      // too, with their offer.
      if (description.type !== "offer") throw error;
      this.rebuild();
      await this.call!.handleDescription(description);
    }
  }

  private maybeStartCall(): void {
    if (!this.call && this.admitted && this.peerPresent) this.startCall();
  }

  private startCall(): void {
    const remote = byId<HTMLVideoElement>("remote-video");
    this.call = new PeerCall(this.room, this.polite, this.iceServers, this.localStream, {
      state: (state) => this.onConnectionState(state),
      remoteStream: (stream) => {
        if (remote.srcObject !== stream) remote.srcObject = stream;
      },
      message: (text) => addChat("peer", text),
      channelOpen: () => {
        const hello = `hello from the ${this.role}`;
        if (this.call?.send(hello)) addChat("me", hello);
      },
      problem: (error) => this.problem(error),
    });
    this.refreshStatus();
  }

  private rebuild(): void {
    this.call?.close();
    this.call = null;
    this.startCall();
  }

  private onConnectionState(state: RTCPeerConnectionState): void {
    this.refreshStatus();
    this.room.reportConnectionState(state).catch((error) => this.problem(error));
    if (state === "connected") void this.reportQuality(); // the first report at once
  }

  private async reportQuality(): Promise<void> {
    if (!this.call || this.call.pc.connectionState !== "connected") return;
    const stats = await this.call.stats();
    const line = byId("call-quality");
    fill(
      line,
      `frames decoded ${stats.framesDecoded}, round trip ${stats.roundTripTimeMs.toFixed(1)} ms, ` +
        `jitter ${stats.jitterMs.toFixed(1)} ms, loss ${(stats.fractionLost * 100).toFixed(1)}%`,
    );
    try {
      await this.room.reportCallQuality(PeerCall.quality(stats));
      line.dataset.reports = String(Number(line.dataset.reports ?? 0) + 1);
    } catch (error) {
      this.problem(error);
    }
  }

  /** The ICE username fragment of the other side's current description. */
  remoteIceUfrag(): string {
    const sdp = this.call?.pc.currentRemoteDescription?.sdp ?? "";
    return /^a=ice-ufrag:(.*)$/m.exec(sdp)?.[1]?.trim() ?? "";
  }

  /** The current call's measurements (the browser test reads them). */
  async stats(): Promise<CallStats | null> {
    return this.call ? this.call.stats() : null;
  }

  admit(): Promise<unknown> {
    return this.room.admit();
  }

  /** Leaves the room and hangs up. */
  async leave(): Promise<void> {
    if (this.ended) return;
    try {
      if (this.call) await this.room.reportConnectionState("closed").catch(() => undefined);
      await this.room.leave();
    } finally {
      this.finish("You left the call.");
    }
  }

  private finish(why: string): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.qualityTimer);
    this.room.stop();
    this.call?.close();
    this.call = null;
    for (const track of this.localStream.getTracks()) track.stop();
    setStatus(why, "ended");
    this.hooks.ended?.(why);
  }
}
