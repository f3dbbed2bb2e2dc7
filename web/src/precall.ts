// The pre-call check: our camera and microphone sent to the signaling service's echo
// peer, which sends them back and measures the path. The echo peer does not trickle, so
// the whole offer (all candidates gathered) goes up in one call.
import { newRequestId, signaling, type Telemesh } from "@telemesh/client";
import { sleep } from "./ui";
import { toIceServers } from "./visit-call";

const GATHER_TIMEOUT_MS = 5000;
const POLL_EVERY_MS = 500;
const CHECK_TIMEOUT_MS = 30000;

function gatheringComplete(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_TIMEOUT_MS); // go with what we have
  });
}

/** Runs a check with `stream`; `echo` receives what the echo peer sends back. */
export async function runPreCallCheck(
  api: Telemesh,
  stream: MediaStream,
  echo: (stream: MediaStream) => void,
): Promise<signaling.GetPreCallCheckResponse> {
  // No join token: the check belongs to no visit (it runs before check-in), so the
  // service answers with STUN only; TURN credentials come with a visit's join token.
  const { iceServers } = await api.signaling.getIceServers({ joinToken: "" });
  const pc = new RTCPeerConnection({ iceServers: toIceServers(iceServers) });
  try {
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.ontrack = ({ track, streams }) => echo(streams[0] ?? new MediaStream([track]));
    await pc.setLocalDescription();
    await gatheringComplete(pc);
    const started = await api.signaling.startPreCallCheck({
      requestId: newRequestId(),
      offer: { type: signaling.SdpType.OFFER, sdp: pc.localDescription?.sdp ?? "" },
    });
    await pc.setRemoteDescription({ type: "answer", sdp: started.answer?.sdp ?? "" });
    const deadline = Date.now() + CHECK_TIMEOUT_MS;
    for (;;) {
      const check = await api.signaling.getPreCallCheck({ checkId: started.checkId });
      if (check.state !== signaling.PreCallCheckState.RUNNING || Date.now() > deadline) return check;
      await sleep(POLL_EVERY_MS);
    }
  } finally {
    pc.close();
  }
}
