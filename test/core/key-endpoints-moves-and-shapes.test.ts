// How the edge reads an identity provider's discovery document and key set over HTTP, as a
// provider under an attacker's control (or a flaky one) would answer. Each issuer here is
// played by a scripted fetcher serving its documents at their URLs (the refresh rules are about
// times an injected clock keeps, which a real server cannot be made to follow); KV is the local
// runtime's real namespace where a test uses it.
import type { JWK } from "jose";
import { describe, expect, it } from "vitest";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import { Clock, verifierFor } from "../support/clocked-verifier";
import { scriptedIssuer, signFor } from "../support/scripted-issuer";
import { makeKey } from "../support/issuers";

/** A syntactically plausible base64 DER certificate: a key's x5c is never read for verifying. */
const FAKE_X5C =
  "MIIC/jCCAeagAwIBAgIJAKL0UG+mRkSuMA0GCSqGSIb3DQEBCwUAMC0xKzApBgNVBAMTImFjY291bnRzLmFjY2Vzc2NvbnRyb2wud2luZG93cy5uZXQ=";

describe("a discovered jwks_uri the issuer has since moved away from", () => {
  // The issuer moves its key set (its old key host lost, or retired) and withdraws a key in the
  // move; the old URL goes on serving the old set (a host the issuer no longer controls, a CDN
  // copy left behind). The README: "a key the issuer has withdrawn stops within cache_ttl_s on
  // every isolate". Discovery is the issuer's word on where its keys are: a remembered URI
  // asked again only when it failed or lacked an unknown kid would keep the withdrawn key in
  // use for as long as the old URL answers with the kids tokens carry (KV hands the URI to
  // every new isolate), so discovery is read again once a TTL.
  it.each(["the isolate that discovered it", "an isolate started after the move"] as const)(
    "a set past its TTL is refreshed from where discovery now points: the withdrawn key stops (%s)",
    async (who) => {
      const { host, fetcher } = scriptedIssuer();
      const withdrawn = await makeKey("ES256");
      const kept = await makeKey("ES256");
      host.sets.set(`${host.iss}/keys-v1`, { keys: [withdrawn.publicJwk, kept.publicJwk] });
      const clock = new Clock();
      const settings = { cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 };
      const first = verifierFor(host.iss, clock, settings, true, fetcher);
      expect(await first.verify(await signFor(host.iss, clock, withdrawn))).toMatchObject({
        ok: true,
        keySource: "fetch",
      });
      await first.settle();

      // The move: discovery now names keys-v2, without the withdrawn key; keys-v1 still answers.
      host.jwksUri = `${host.iss}/keys-v2`;
      host.sets.set(`${host.iss}/keys-v2`, { keys: [kept.publicJwk] });
      clock.advance(301);
      host.asked.length = 0;
      const edge =
        who === "the isolate that discovered it" ? first : verifierFor(host.iss, clock, settings, true, fetcher);
      expect(await edge.verify(await signFor(host.iss, clock, withdrawn))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "kid_unknown",
      });
      expect(host.asked).toContain(host.discoveryUrl);
      expect(await edge.verify(await signFor(host.iss, clock, kept))).toMatchObject({ ok: true });
      await edge.settle();
    },
  );
});

describe("max_jwks_bytes and the discovery document", () => {
  // Discovery documents are larger than small key sets: Keycloak's runs to 6 KB or more, Okta's
  // to 4–5 KB, while a set of two EC keys is under 500 bytes. An operator who sets
  // max_jwks_bytes from the size of the key set (the setting's name and the README's "oversized
  // (max_jwks_bytes)" say it bounds the JWKS) must not lose every token of the issuer to a
  // discovery document larger than that.
  it("a 2.5 KB discovery document, max_jwks_bytes 2048 and a key set under 400 bytes: the token verifies", async () => {
    const { host, fetcher } = scriptedIssuer("/realms/acme");
    const key = await makeKey("ES256");
    const set = { keys: [key.publicJwk] };
    host.sets.set(host.jwksUri, set);
    const base = `${host.iss}/protocol/openid-connect`;
    const document = {
      issuer: host.iss,
      authorization_endpoint: `${base}/auth`,
      token_endpoint: `${base}/token`,
      introspection_endpoint: `${base}/token/introspect`,
      userinfo_endpoint: `${base}/userinfo`,
      end_session_endpoint: `${base}/logout`,
      jwks_uri: host.jwksUri,
      check_session_iframe: `${base}/login-status-iframe.html`,
      registration_endpoint: `${host.iss}/clients-registrations/openid-connect`,
      revocation_endpoint: `${base}/revoke`,
      device_authorization_endpoint: `${base}/auth/device`,
      grant_types_supported: [
        "authorization_code",
        "implicit",
        "refresh_token",
        "password",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:openid:params:grant-type:ciba",
      ],
      response_types_supported: ["code", "none", "id_token", "token", "id_token token", "code id_token"],
      subject_types_supported: ["public", "pairwise"],
      id_token_signing_alg_values_supported: ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256"],
      id_token_encryption_alg_values_supported: ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"],
      id_token_encryption_enc_values_supported: ["A256GCM", "A192GCM", "A128GCM", "A128CBC-HS256"],
      userinfo_signing_alg_values_supported: ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "none"],
      request_object_signing_alg_values_supported: ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "none"],
      response_modes_supported: ["query", "fragment", "form_post", "query.jwt", "fragment.jwt", "form_post.jwt"],
      token_endpoint_auth_methods_supported: [
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
        "tls_client_auth",
        "client_secret_jwt",
      ],
      claims_supported: ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "email", "acr"],
      claim_types_supported: ["normal"],
      scopes_supported: ["openid", "microprofile-jwt", "phone", "roles", "profile", "basic", "email", "address"],
      code_challenge_methods_supported: ["plain", "S256"],
      tls_client_certificate_bound_access_tokens: true,
      backchannel_logout_supported: true,
      backchannel_logout_session_supported: true,
    };
    host.discovery = () => Response.json(document);
    expect(JSON.stringify(document).length).toBeGreaterThan(2048);
    expect(JSON.stringify(set).length).toBeLessThan(400);
    const clock = new Clock();
    const { verify } = verifierFor(host.iss, clock, { max_jwks_bytes: 2048 }, false, fetcher);
    expect(await verify(await signFor(host.iss, clock, key))).toMatchObject({ ok: true, keySource: "fetch" });
  });
});

describe("a discovery document whose issuer is another spelling of the configured one", () => {
  // OpenID Discovery §4.3: the document's issuer must be identical to the one it was fetched
  // for. Spellings a URL parser or a normaliser would take as the same are still another issuer
  // here: tokens' iss is compared byte for byte too, and no key set is asked for.
  it.each<[string, (iss: string) => string]>([
    ["with a trailing slash", (iss) => `${iss}/`],
    ["with the host in upper case", (iss) => iss.replace("https://idp-", "https://IDP-")],
    ["with the default port", (iss) => iss.replace(".test/", ".test:443/")],
    ["with a path letter percent-encoded", (iss) => iss.replace("/tenant", "/%74enant")],
    ["with a look-alike letter in the host (Cyrillic і)", (iss) => iss.replace("https://idp-", "https://\u0456dp-")],
  ])("%s: jwks_discovery_issuer_mismatch, and the key set is never fetched", async (_label, spell) => {
    const { host, fetcher } = scriptedIssuer("/tenant");
    const key = await makeKey("ES256");
    host.sets.set(host.jwksUri, { keys: [key.publicJwk] });
    const named = spell(host.iss);
    expect(named).not.toBe(host.iss);
    host.discovery = () => Response.json({ issuer: named, jwks_uri: host.jwksUri });
    const clock = new Clock();
    const { verify } = verifierFor(host.iss, clock, {}, false, fetcher);
    expect(await verify(await signFor(host.iss, clock, key))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_discovery_issuer_mismatch",
    });
    expect(host.asked).toEqual([host.discoveryUrl]);
  });
});

describe("key sets as real hosts serve them", () => {
  // A set kept in object storage comes as text/plain or application/octet-stream, one written by
  // a Windows tool may start with a UTF-8 byte-order mark (RFC 8259 §8.1 lets a parser ignore
  // it): none of that is a reason to lose the issuer's keys. Nor is the media type a check
  // worth having: whoever can answer at the jwks_uri chooses its Content-Type too.
  it.each<[string, string, boolean]>([
    ["text/plain", "text/plain", false],
    ["application/octet-stream", "application/octet-stream", false],
    ["application/jwk-set+json (RFC 7517 §8.5)", "application/jwk-set+json", false],
    ["a UTF-8 byte-order mark before the JSON", "application/json; charset=utf-8", true],
  ])("served as %s: its key verifies", async (_label, contentType, bom) => {
    const key = await makeKey("ES256");
    const iss = `https://idp-${crypto.randomUUID().slice(0, 12)}.test`;
    const text = new TextEncoder().encode(JSON.stringify({ keys: [key.publicJwk] }));
    const body = bom ? new Uint8Array([0xef, 0xbb, 0xbf, ...text]) : text;
    const fetcher: Fetcher = async () => new Response(body, { headers: { "content-type": contentType } });
    const clock = new Clock();
    const { verify } = verifierFor(iss, clock, { jwks_uri: `${iss}/jwks` }, false, fetcher);
    expect(await verify(await signFor(iss, clock, key))).toMatchObject({ ok: true, keySource: "fetch" });
  });

  // A key published as a certificate chain alone (x5c, no n and e): reading the key out of the
  // certificate would be a parser the edge does not have, and a chain nobody validates. Dropped:
  // alone, the set has no usable key; beside a key with its members, that key verifies.
  it("an RSA key listed with x5c only is dropped: alone, jwks_no_usable_keys; its kid is unknown beside a real key", async () => {
    const certOnly = await makeKey("RS256");
    const { n: _n, e: _e, ...rest } = certOnly.publicJwk;
    const x5cOnly: JWK = { ...rest, x5c: [FAKE_X5C] };
    const real = await makeKey("ES256");
    const iss = `https://idp-${crypto.randomUUID().slice(0, 12)}.test`;
    let keys: unknown[] = [x5cOnly];
    const fetcher: Fetcher = async () => Response.json({ keys });
    const clock = new Clock();
    const { verify } = verifierFor(iss, clock, { jwks_uri: `${iss}/jwks` }, false, fetcher);
    expect(await verify(await signFor(iss, clock, certOnly))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_no_usable_keys",
    });

    keys = [x5cOnly, real.publicJwk];
    clock.advance(31);
    expect(await verify(await signFor(iss, clock, real))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(await signFor(iss, clock, certOnly))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });
});
