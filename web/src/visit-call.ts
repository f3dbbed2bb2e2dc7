// A participant's side of a visit's call: the room stream, the peer connection, the
// videos and chat on the page, and the reports (connection state, call quality) that
// the signaling service uses for connected time and monitoring.
import { describeError, signaling, type session, type Telemesh } from "@telemesh/client";
import { PeerCall, type CallStats } from "./call";
import { plainError } from "./errors";
import { RoomConnection } from "./room";
import { bringIntoView, byId, fill, h } from "./ui";

export type Role = "patient" | "clinician";

const QUALITY_EVERY_MS = 3000;

/** The call's part of the page (created once; see callSection()): the other person's
 * video large, our own small in its corner, the state in words, a quality indicator, the
 * chat, and the button to leave. */
export function callSection(peerLabel: string, leaveLabel: string): HTMLElement {
  return h(
    "section",
    { id: "call", hidden: true, "aria-labelledby": "call-title" },
    h("h2", { id: "call-title", tabindex: -1 }, "Video call"),
    h("p", { id: "call-status", "data-testid": "call-status", "data-state": "idle", role: "status" }, ""),
    h("p", { id: "call-stream", class: "note", "data-state": "" }, ""),
    h("p", { id: "call-problem", class: "problem" }, ""),
    h(
      "div",
      { class: "stage" },
      h("video", {
        id: "remote-video",
        autoplay: true,
        playsinline: true,
        "aria-label": `Video of ${peerLabel}`,
      }),
      h("video", {
        id: "local-video",
        autoplay: true,
        muted: true,
        playsinline: true,
        "aria-label": "Your own camera",
      }),
      h("p", { id: "call-quality", "data-testid": "call-quality", "data-quality": "", class: "quality" }, ""),
    ),
    h("button", { id: "leave", type: "button", class: "danger" }, leaveLabel),
    h("div", { id: "call-after", "data-testid": "call-after" }),
    h(
      "div",
      { class: "chat" },
      h("h3", { id: "chat-title" }, "Messages"),
      h("ol", {
        id: "chat-log",
        "data-testid": "chat-log",
        "aria-labelledby": "chat-title",
        "aria-live": "polite",
      }),
      h(
        "form",
        { id: "chat-form", class: "inline-form" },
        h("label", { for: "chat-input" }, "Message"),
        h("input", { id: "chat-input", autocomplete: "off" }),
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

function addChat(who: "me" | "peer", label: string, text: string): void {
  byId("chat-log").append(h("li", { "data-from": who }, h("strong", {}, `${label}: `), text));
}

/** How the call sounds and looks, from its measurements: good, fair or poor. */
export function callQuality(stats: CallStats): "good" | "fair" | "poor" {
  if (stats.roundTripTimeMs > 600 || stats.fractionLost > 0.1 || stats.jitterMs > 100) return "poor";
  if (stats.roundTripTimeMs > 300 || stats.fractionLost > 0.03 || stats.jitterMs > 30) return "fair";
  return "good";
}

const CLOSED_WORDS: Record<number, string> = {
  [signaling.RoomCloseReason.VISIT_ENDED]: "The visit has ended.",
  [signaling.RoomCloseReason.CONSENT_REVOKED]:
    "The call ended because consent to video visits was withdrawn.",
  [signaling.RoomCloseReason.VISIT_CANCELLED]: "The visit was cancelled.",
  [signaling.RoomCloseReason.NO_SHOW]: "The visit was marked as missed.",
};

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
    private readonly peerLabel: string,
    private readonly hooks: VisitCallHooks = {},
  ) {
    this.room = new RoomConnection(api, visit, {
      joined: (joined) => this.onJoined(joined),
      peerJoined: () => this.onPeerJoined(),
      peerLeft: () => this.onPeerLeft(),
      description: (description) => this.onDescription(description),
      candidates: (candidates) => this.call?.handleCandidates(candidates),
      admitted: () => this.onAdmitted(),
      closed: (reason) => this.finish(CLOSED_WORDS[reason] ?? "The call has ended.", "closed"),
      stream: (state) => {
        const banner = byId("call-stream");
        banner.dataset.state = state;
        fill(banner, state === "reconnecting" ? "The connection dropped. Reconnecting..." : "");
      },
      failed: (error) => this.finish(plainError(error).message, "failed"),
      problem: (error) => this.problem(error),
    });
  }

  /** Shows our camera and joins the room; the call starts once both may talk. */
  start(): void {
    byId("call").hidden = false;
    delete byId("call").dataset.ended;
    fill(byId("call-after"));
    fill(byId("chat-log"));
    fill(byId("call-quality"));
    byId("call-quality").dataset.quality = "";
    const local = byId<HTMLVideoElement>("local-video");
    local.muted = true; // the attribute alone sets only the default: no echo of ourselves
    local.srcObject = this.localStream;
    setStatus("Joining the room...", "joining");
    byId<HTMLFormElement>("chat-form").onsubmit = (event) => {
      event.preventDefault();
      const input = byId<HTMLInputElement>("chat-input");
      if (input.value && this.call?.send(input.value)) {
        addChat("me", "You", input.value);
        input.value = "";
      }
    };
    bringIntoView(byId("call-title"));
    void this.room.run();
    this.qualityTimer = setInterval(() => void this.reportQuality(), QUALITY_EVERY_MS);
  }

  private problem(error: unknown): void {
    console.warn("call problem", describeError(error));
    fill(byId("call-problem"), plainError(error).message);
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
        setStatus(
          this.role === "patient" ? "Waiting for the clinician to join." : "Waiting for the patient to join.",
          "waiting",
        );
      }
      return;
    }
    if (!this.peerPresent) {
      setStatus(
        this.role === "patient"
          ? "The clinician has stepped out of the call."
          : "The patient has left the call.",
        "peer-left",
      );
      return;
    }
    const state = this.call.pc.connectionState;
    if (state === "connected") setStatus("You are connected.", "connected");
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
      message: (text) => addChat("peer", this.peerLabel, text),
      channelOpen: () => undefined,
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
    const quality = stats.framesDecoded > 0 ? callQuality(stats) : "fair";
    line.dataset.quality = quality;
    fill(line, `Connection: ${quality}`);
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
  async leave(why = "You left the call."): Promise<void> {
    if (this.ended) return;
    try {
      if (this.call) await this.room.reportConnectionState("closed").catch(() => undefined);
      await this.room.leave();
    } finally {
      this.finish(why, "ended");
    }
  }

  private finish(why: string, state: "ended" | "closed" | "failed"): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.qualityTimer);
    this.room.stop();
    this.call?.close();
    this.call = null;
    for (const track of this.localStream.getTracks()) track.stop();
    setStatus(why, "ended");
    byId("call-status").dataset.end = state;
    // No dark video, quality or chat box left behind: the messages stay readable.
    byId("call").dataset.ended = "true";
    fill(byId("call-quality"));
    fill(byId("call-stream"));
    this.hooks.ended?.(why);
  }
}
