// What both apps share: settings, sign-in, the API clients and the page's frame.
import { createTelemesh, type Telemesh } from "@telemesh/client";
import { loadSettings, saveSignIn, signOut } from "./config";
import { readClaims, type TokenClaims } from "./identity";
import { byId, fill, h } from "./ui";

export interface SignedIn {
  api: Telemesh;
  claims: TokenClaims;
  params: URLSearchParams;
  edgeUrl: string;
}

/** The page's signed-in user, or null after showing the sign-in form. */
export async function signIn(app: "patient" | "clinician"): Promise<SignedIn | null> {
  const settings = await loadSettings(app);
  const claims = settings.token ? readClaims(settings.token) : null;
  const who = byId("who");
  if (!settings.token || !claims || claims.role !== app) {
    showSignInForm(
      app,
      settings.edgeUrl,
      settings.token && claims ? `This token is for a ${claims.role}.` : "",
    );
    return null;
  }
  const signOutLink = h("a", { href: "#", id: "sign-out" }, "Sign out");
  signOutLink.addEventListener("click", (event) => {
    event.preventDefault();
    signOut(app);
    location.reload();
  });
  fill(who, `Signed in as ${claims.subject} (${claims.role}) `, signOutLink);
  const token = settings.token;
  return {
    api: createTelemesh({ baseUrl: settings.edgeUrl, token }),
    claims,
    params: settings.params,
    edgeUrl: settings.edgeUrl,
  };
}

function showSignInForm(app: string, edgeUrl: string, problem: string): void {
  const token = h("textarea", { id: "sign-in-token", rows: 4, placeholder: "eyJ..." });
  const edge = h("input", { id: "sign-in-edge", value: edgeUrl });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { id: "sign-in" },
    h("h2", {}, "Sign in"),
    h(
      "p",
      {},
      `Paste a ${app} token from the dev issuer: `,
      h("code", {}, `.venv/bin/telemesh token --${app} ID`),
    ),
    problem && h("p", { class: "problem" }, problem),
    h("label", {}, h("span", {}, "Token"), token),
    h("label", {}, h("span", {}, "Edge"), edge),
    button,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveSignIn(app, token.value.trim(), edge.value.trim());
    location.reload();
  });
  fill(byId("main"), form);
}

/** Asks for the camera and microphone (the browser prompts the first time). */
export function localMedia(): Promise<MediaStream> {
  return navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: 640 }, height: { ideal: 480 } },
  });
}
