// What the page shows about who is signed in. The token is verified by the edge and the
// services, never here: these claims only label the page and fill in the caller's id.

export interface TokenClaims {
  subject: string;
  role: string;
  expiresAt: Date | null;
}

function base64UrlDecode(part: string): string {
  const padded = part
    .replace(/-/g, "+")
    .replace(/_/g, "/")
    .padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The claims of a JWT, or null when it is not one. */
export function readClaims(token: string): TokenClaims | null {
  const [, payload] = token.split(".");
  if (!payload) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(payload)) as { sub?: unknown; role?: unknown; exp?: unknown };
    if (typeof claims.sub !== "string" || typeof claims.role !== "string") return null;
    return {
      subject: claims.sub,
      role: claims.role,
      expiresAt: typeof claims.exp === "number" ? new Date(claims.exp * 1000) : null,
    };
  } catch {
    return null;
  }
}
