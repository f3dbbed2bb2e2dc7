// What both apps share: settings, sign-in, the API clients and the page's frame.
import { createTelemesh, type Telemesh } from "@telemesh/client";
import { loadSettings, saveSignIn, signOut } from "./config";
import { readClaims, type TokenClaims } from "./identity";
import { byId, configureErrors, field, fill, h } from "./ui";

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
  if (!settings.token || !claims || claims.role !== app) {
    showSignInForm(
      app,
      settings.edgeUrl,
      settings.token && claims ? `This sign-in code is for a ${claims.role}, not a ${app}.` : "",
    );
    return null;
  }
  configureErrors(settings.edgeUrl, () => {
    signOut(app);
    location.reload();
  });
  showSignedIn("");
  const token = settings.token;
  return {
    api: createTelemesh({ baseUrl: settings.edgeUrl, token }),
    claims,
    params: settings.params,
    edgeUrl: settings.edgeUrl,
  };
}

/** The header's "signed in" line: the person's name once the profile is known. */
export function showSignedIn(name: string): void {
  const who = byId("who");
  if (who.dataset.state === "expired") return; // the sign-in is gone: say so, not "signed in"
  const signOutButton = h("button", { type: "button", id: "sign-out", class: "secondary" }, "Sign out");
  signOutButton.addEventListener("click", () => {
    const app = document.body.dataset.app ?? "";
    signOut(app);
    location.reload();
  });
  who.dataset.state = "signed-in";
  fill(
    who,
    name ? h("span", { "data-testid": "signed-in-name" }, `Signed in as ${name}`) : "",
    signOutButton,
  );
}

function showSignInForm(app: string, edgeUrl: string, problem: string): void {
  const token = h("textarea", { id: "sign-in-token", rows: 4, autocomplete: "off", spellcheck: "false" });
  const edge = h("input", { id: "sign-in-edge", value: edgeUrl, type: "url" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { id: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h2", { id: "sign-in-title" }, "Sign in"),
    h(
      "p",
      {},
      `Paste the sign-in code you were given. On a development machine, make one with `,
      h("code", {}, `.venv/bin/telemesh token --${app} ID`),
      ".",
    ),
    problem && h("p", { class: "problem", role: "alert" }, problem),
    field("Sign-in code", token),
    field("Service address", edge, "Leave this as it is unless you were told otherwise."),
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
