// One WebRTC call with the other participant, negotiated the "perfect negotiation" way:
// both sides offer whenever negotiation is needed; on glare the impolite side (the
// clinician) ignores the incoming offer and the polite side (the patient) rolls its own
// back and answers. Candidates trickle up in small batches, in order after the
// description they belong to.
import { create, signaling } from "@telemesh/client";
import type { RoomConnection } from "./room";

export interface CallEvents {
  state(state: RTCPeerConnectionState): void;
  remoteStream(stream: MediaStream): void;
  message(text: string): void;
  channelOpen(): void;
  /** Something went wrong that does not end the call (shown to the user). */
  problem(error: unknown): void;
}

export interface CallStats {
  framesDecoded: number;
  framesReceived: number;
  audioPacketsReceived: number;
  roundTripTimeMs: number;
  jitterMs: number;
  fractionLost: number;
  connectionState: RTCPeerConnectionState;
}

const CANDIDATE_BATCH = 50; // the most SendIceCandidates takes at once
const CANDIDATE_DELAY_MS = 30; // candidates gathered together go up together

export class PeerCall {
  readonly pc: RTCPeerConnection;
  readonly channel: RTCDataChannel;
  private makingOffer = false;
  private ignoreOffer = false;
  private settingRemoteAnswer = false;
  private outgoing: RTCIceCandidateInit[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly room: RoomConnection,
    readonly polite: boolean,
    iceServers: RTCIceServer[],
    localStream: MediaStream,
    private readonly events: CallEvents,
  ) {
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    // Negotiated on both sides with the same id: no in-band announcement to race.
    this.channel = pc.createDataChannel("chat", { negotiated: true, id: 0 });
    this.channel.onopen = () => events.channelOpen();
    this.channel.onmessage = (event) => events.message(String(event.data));
    pc.ontrack = ({ track, streams }) => events.remoteStream(streams[0] ?? new MediaStream([track]));
    pc.onnegotiationneeded = () => void this.offer();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate?.candidate) this.queueCandidate(candidate.toJSON());
    };
    pc.onconnectionstatechange = () => {
      events.state(pc.connectionState);
      if (pc.connectionState === "failed") pc.restartIce();
    };
  }

  private async offer(): Promise<void> {
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
    } catch (error) {
      this.events.problem(error);
      return;
    } finally {
      this.makingOffer = false;
    }
    const description = this.pc.localDescription;
    if (description) await this.room.sendDescription(description.toJSON()).catch(this.events.problem);
  }

  /** A description from the other participant. */
  async handleDescription(description: RTCSessionDescriptionInit): Promise<void> {
    const readyForOffer =
      !this.makingOffer && (this.pc.signalingState === "stable" || this.settingRemoteAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.settingRemoteAnswer = description.type === "answer";
    try {
      // For the polite side in glare this rolls its own offer back first.
      await this.pc.setRemoteDescription(description);
    } finally {
      this.settingRemoteAnswer = false;
    }
    if (description.type === "offer") {
      await this.pc.setLocalDescription();
      const answer = this.pc.localDescription;
      if (answer) await this.room.sendDescription(answer.toJSON());
    }
  }

  /** Candidates from the other participant. */
  async handleCandidates(candidates: RTCIceCandidateInit[]): Promise<void> {
    for (const candidate of candidates) {
      try {
        // An empty candidate is the end of the other side's candidates.
        await this.pc.addIceCandidate(candidate.candidate ? candidate : undefined);
      } catch (error) {
        // Candidates of an offer we ignored in glare do not apply.
        if (!this.ignoreOffer) throw error;
      }
    }
  }

  private queueCandidate(candidate: RTCIceCandidateInit): void {
    this.outgoing.push(candidate);
    this.flushTimer ??= setTimeout(() => this.flushCandidates(), CANDIDATE_DELAY_MS);
  }

  private flushCandidates(): void {
    this.flushTimer = undefined;
    while (this.outgoing.length > 0) {
      const batch = this.outgoing.splice(0, CANDIDATE_BATCH);
      this.room.sendCandidates(batch).catch(this.events.problem);
    }
  }

  /** New ICE credentials and candidates (after a network change or a lost stream). */
  restartIce(): void {
    this.pc.restartIce();
  }

  send(text: string): boolean {
    if (this.channel.readyState !== "open") return false;
    this.channel.send(text);
    return true;
  }

  async stats(): Promise<CallStats> {
    const result: CallStats = {
      framesDecoded: 0,
      framesReceived: 0,
      audioPacketsReceived: 0,
      roundTripTimeMs: 0,
      jitterMs: 0,
      fractionLost: 0,
      connectionState: this.pc.connectionState,
    };
    const report = await this.pc.getStats();
    report.forEach((entry: Record<string, unknown>) => {
      const number = (name: string) => (typeof entry[name] === "number" ? (entry[name] as number) : 0);
      if (entry.type === "inbound-rtp" && entry.kind === "video") {
        result.framesDecoded += number("framesDecoded");
        result.framesReceived += number("framesReceived");
        result.jitterMs = Math.max(result.jitterMs, number("jitter") * 1000);
      } else if (entry.type === "inbound-rtp" && entry.kind === "audio") {
        result.audioPacketsReceived += number("packetsReceived");
      } else if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") {
        result.roundTripTimeMs = number("currentRoundTripTime") * 1000;
      } else if (entry.type === "remote-inbound-rtp") {
        result.fractionLost = Math.min(1, Math.max(result.fractionLost, number("fractionLost")));
      }
    });
    return result;
  }

  /** The stats as the contract's CallQuality, for ReportCallQuality. */
  static quality(stats: CallStats): signaling.CallQuality {
    return create(signaling.CallQualitySchema, {
      roundTripTimeMs: stats.roundTripTimeMs,
      fractionLost: stats.fractionLost,
      jitterMs: stats.jitterMs,
      framesReceived: BigInt(stats.framesReceived),
      audioPacketsReceived: BigInt(stats.audioPacketsReceived),
    });
  }

  close(): void {
    clearTimeout(this.flushTimer);
    this.pc.onconnectionstatechange = null;
    this.pc.onnegotiationneeded = null;
    this.pc.onicecandidate = null;
    this.channel.close();
    this.pc.close();
  }
}
