// Key-set fetching and token checks as a hostile identity provider or client would drive them:
// redirects, bodies that trickle or never end, rate-limit answers, discovery pointing keys
// elsewhere, junk entries in a set, degenerate audiences. Real loopback servers (the issuer stand-in, the echo origin
// for real redirects and trickled bodies) and the runtime's real KV, with an injected clock.
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import { echoOrigin } from "../support/harness";
import { AUDIENCE, issuerServer, makeIssuer, makeKey, type TestKey } from "../support/issuers";
import { Clock, kv, signAt, verifierFor } from "../support/clocked-verifier";

/** A token for an issuer no stand-in serves (its keys come from a scripted fetcher). */
function signFor(iss: string, clock: Clock, key: TestKey) {
  const now = Math.floor(clock.ms / 1000);
  return new SignJWT({ iss, aud: AUDIENCE, sub: "user-1", iat: now, exp: now + 600 })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .sign(key.privateKey);
}

/** The real fetch, with a test hook header of the echo origin on every request. */
function withEchoHook(name: string, value: string): Fetcher {
  return (input, init) =>
    fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), [name]: value } });
}

describe("an endpoint that answers with a redirect", () => {
  // A redirect is not followed (the key URL is configured or discovered, never chosen by an
  // answer): the real one below points at the issuer's own, valid set, which is never asked.
  it("for the key set: not followed, jwks_http_status, nothing cached", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const jwksUri = `${echoOrigin}/redirecting-jwks/${issuer.name}`;
    const { verify, settle } = verifierFor(
      issuer.url,
      clock,
      { jwks_uri: jwksUri },
      true,
      withEchoHook("x-echo-redirect", `${issuer.url}/jwks`),
    );
    expect(await verify(await signAt(issuer, clock))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_http_status",
    });
    await settle();
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 0 });
    expect(await kv.get(`jwks:v1:${issuer.url}`)).toBeNull();
  });

  it("for discovery: not followed, jwks_http_status, the document redirected to never read", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    // Discovery goes to the echo origin, which redirects it to a real discovery document.
    const iss = `${echoOrigin}/redirecting-idp-${issuer.name}`;
    const { verify, settle } = verifierFor(
      iss,
      clock,
      {},
      false,
      withEchoHook("x-echo-redirect", `${issuer.url}/.well-known/openid-configuration`),
    );
    const now = Math.floor(clock.ms / 1000);
    const token = await issuer.sign({ iss, iat: now, exp: now + 600 });
    expect(await verify(token)).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_http_status",
    });
    await settle();
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 0 });
  });
});

describe("a key-set body that does not end in time", () => {
  // The echo origin sends its headers and half its body at once, the rest 20 s later: the
  // fetch deadline must cut the body read too, not only the wait for headers.
  it("a trickled body is cut at fetch_timeout_ms: the refresh ends as a timeout", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const { verify, settle } = verifierFor(
      issuer.url,
      clock,
      { jwks_uri: `${echoOrigin}/trickled-jwks/${issuer.name}`, fetch_timeout_ms: 200 },
      false,
      withEchoHook("x-echo-stream-ms", "20000"),
    );
    // Retry-After is the whole cooldown (the clock is injected and stands still): the refresh
    // ended within the request's wait. Had the body read run on past it, the request would have
    // stopped waiting, with Retry-After the fetch timeout (1 s) while the fetch still ran.
    expect(await verify(await signAt(issuer, clock))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_timeout",
      retryAfterS: 30,
    });
    // The deferred refresh has ended too (this would wait out the trickle otherwise).
    await settle();
  });

  it("a body that never ends is cut at max_jwks_bytes and cancelled", async () => {
    const clock = new Clock();
    const key = await makeKey("ES256");
    const iss = `https://endless-${crypto.randomUUID()}.test`;
    let chunks = 0;
    let cancelled = false;
    // Chunked (no Content-Length): only counting while reading can stop it.
    const endless: Fetcher = async () =>
      new Response(
        new ReadableStream({
          pull(controller) {
            chunks += 1;
            controller.enqueue(new TextEncoder().encode(`{"keys":[${" ".repeat(1000)}`));
          },
          cancel() {
            cancelled = true;
          },
        }),
      );
    const { verify, settle } = verifierFor(
      iss,
      clock,
      { jwks_uri: `${iss}/jwks`, max_jwks_bytes: 4096 },
      false,
      endless,
    );
    expect(await verify(await signFor(iss, clock, key))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_too_large",
    });
    await settle();
    expect(cancelled).toBe(true);
    // 4,096 bytes are five chunks of 1,009: the sixth is the one that overflows, at most.
    expect(chunks).toBeLessThanOrEqual(6);
  });
});

describe("an endpoint that answers 429 or 503 with a Retry-After", () => {
  it.each([429, 503])("%s: a failed fetch, retried after the cooldown whatever Retry-After says", async (status) => {
    const clock = new Clock();
    const key = await makeKey("ES256");
    const iss = `https://limited-${crypto.randomUUID()}.test`;
    let asked = 0;
    const limited: Fetcher = async () => {
      asked += 1;
      return new Response("slow down", { status, headers: { "retry-after": "86400" } });
    };
    const { verify, settle } = verifierFor(iss, clock, { jwks_uri: `${iss}/jwks` }, false, limited);
    const token = await signFor(iss, clock, key);
    // The issuer's day-long Retry-After is not passed on: the client may ask again once this
    // isolate may ask the issuer again, after its own cooldown.
    expect(await verify(token)).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_http_status",
      retryAfterS: 30,
    });
    clock.advance(10);
    expect(await verify(token)).toMatchObject({ detail: "jwks_http_status", retryAfterS: 20 });
    expect(asked).toBe(1);
    clock.advance(21);
    await verify(token);
    await settle();
    expect(asked).toBe(2);
  });
});

describe("discovery pointing the keys elsewhere", () => {
  /** A discovery document for `iss` naming `jwksUri`; anything else goes to the real fetch. */
  function discovering(iss: string, jwksUri: string) {
    const asked: string[] = [];
    const fetcher: Fetcher = async (input, init) => {
      asked.push(String(input));
      if (String(input) === `${iss}/.well-known/openid-configuration`)
        return Response.json({ issuer: iss, jwks_uri: jwksUri });
      return fetch(input, init);
    };
    return { asked, fetcher };
  }

  it("a jwks_uri over plain http (not loopback) is refused and never fetched", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const iss = `https://idp-${issuer.name}.test`;
    const { asked, fetcher } = discovering(iss, "http://keys.idp.example/jwks");
    const { verify } = verifierFor(iss, clock, {}, false, fetcher);
    const now = Math.floor(clock.ms / 1000);
    expect(await verify(await issuer.sign({ iss, iat: now, exp: now + 600 }))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_discovery_bad_jwks_uri",
    });
    expect(asked).toEqual([`${iss}/.well-known/openid-configuration`]);
  });

  // OpenID discovery lets the keys live on another host (Google's are on googleapis.com): the
  // issuer's own document naming them is what makes them its keys.
  it("a jwks_uri on another host is followed", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const iss = `https://idp-${issuer.name}.test`;
    const { asked, fetcher } = discovering(iss, `${issuer.url}/jwks`);
    const { verify } = verifierFor(iss, clock, {}, false, fetcher);
    const now = Math.floor(clock.ms / 1000);
    expect(await verify(await issuer.sign({ iss, iat: now, exp: now + 600 }))).toMatchObject({
      ok: true,
      keySource: "fetch",
      identity: { issuer: iss },
    });
    expect(asked).toEqual([`${iss}/.well-known/openid-configuration`, `${issuer.url}/jwks`]);
  });
});

describe("entries of a key set that are no keys at all", () => {
  it("null, numbers, strings, arrays and objects without a usable kty are skipped; the set's key verifies", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const good = issuer.keys[0] as TestKey;
    const junk = [null, 1, "key", [good.publicJwk], {}, { kty: null }, { kty: ["EC"], crv: "P-256" }];
    const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
      method: "POST",
      body: JSON.stringify({ jwks: { keys: [...junk, good.publicJwk] } }),
    });
    expect(response.ok).toBe(true);
    const { verify } = verifierFor(issuer.url, clock, { jwks_uri: `${issuer.url}/jwks` }, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
  });
});

describe("degenerate audiences", () => {
  it.each<[string, unknown, boolean]>([
    ["an empty array", [], false],
    ["an empty string", "", false],
    ["an array of one empty string", [""], false],
    ["an array of null", [null], false],
    ["ours nested in an array", [[AUDIENCE]], false],
    ["ours with a trailing slash", `${AUDIENCE}/`, false],
    ["ours twice, beside empties", ["", AUDIENCE, AUDIENCE, ""], true],
  ])("aud %s", async (_label, aud, accepted) => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const { verify } = verifierFor(issuer.url, clock, { jwks_uri: `${issuer.url}/jwks` }, false);
    const now = Math.floor(clock.ms / 1000);
    const result = await verify(await issuer.sign({ aud: aud as string, iat: now, exp: now + 600 }));
    expect(result).toMatchObject(accepted ? { ok: true } : { ok: false, reason: "audience_mismatch", detail: "aud" });
  });
});
