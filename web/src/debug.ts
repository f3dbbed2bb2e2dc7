// Hooks on `window.telemesh` for the browser tests and for support: read the call's
// measurements, drop the signaling stream as a network failure would, restart ICE.
import type { VisitCall } from "./visit-call";

export interface DebugHooks {
  callStats(): Promise<unknown>;
  dropStream(holdMs: number): void;
  restartIce(): void;
  remoteIceUfrag(): string;
}

export function exposeCall(current: () => VisitCall | null): void {
  const hooks: DebugHooks = {
    callStats: async () => (await current()?.stats()) ?? null,
    dropStream: (holdMs) => current()?.room.dropStream(holdMs),
    restartIce: () => current()?.call?.restartIce(),
    remoteIceUfrag: () => current()?.remoteIceUfrag() ?? "",
  };
  (window as unknown as { telemesh: DebugHooks }).telemesh = hooks;
}
