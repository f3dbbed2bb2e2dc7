// Where the page's settings come from: the URL fragment first (`#token=...&edge=...`,
// so tokens never reach a server log), then what this tab remembered, then the
// server's /config.json (python -m telemesh_tools.webapp names the running edge).

export const DEFAULT_EDGE_URL = "https://localhost:8443";

export interface PageSettings {
  edgeUrl: string;
  token: string | null;
  /** Other fragment parameters (for example `clinician=c-1` to prefill a booking). */
  params: URLSearchParams;
}

function storageKey(app: string, name: string): string {
  return `telemesh.${app}.${name}`;
}

async function serverEdgeUrl(): Promise<string | null> {
  try {
    const reply = await fetch("config.json", { cache: "no-store" });
    if (!reply.ok) return null;
    const config = (await reply.json()) as { edgeUrl?: unknown };
    return typeof config.edgeUrl === "string" ? config.edgeUrl : null;
  } catch {
    return null;
  }
}

/** Reads the settings; a token in the fragment is moved into session storage. */
export async function loadSettings(app: string): Promise<PageSettings> {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  const edge = params.get("edge");
  if (token) sessionStorage.setItem(storageKey(app, "token"), token);
  if (edge) sessionStorage.setItem(storageKey(app, "edge"), edge);
  if (token || edge) {
    params.delete("token");
    params.delete("edge");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  const edgeUrl =
    sessionStorage.getItem(storageKey(app, "edge")) ?? (await serverEdgeUrl()) ?? DEFAULT_EDGE_URL;
  return { edgeUrl, token: sessionStorage.getItem(storageKey(app, "token")), params };
}

export function saveSignIn(app: string, token: string, edgeUrl: string): void {
  sessionStorage.setItem(storageKey(app, "token"), token);
  sessionStorage.setItem(storageKey(app, "edge"), edgeUrl);
}

export function signOut(app: string): void {
  sessionStorage.removeItem(storageKey(app, "token"));
}
