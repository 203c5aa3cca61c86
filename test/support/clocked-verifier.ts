// A token verifier for one OIDC issuer on an injected clock, with the runtime's real KV (or
// none, or a store a test scripts) and a fetcher a test may script: for the key-set tests.
import { env } from "cloudflare:workers";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import type { KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { AUDIENCE, type TestIssuer } from "./issuers";
import { settleDeferred } from "./waiting";

export const kv = (env as unknown as { JWKS_CACHE: KeyValueStore }).JWKS_CACHE;

/** A clock that stands still until a test moves it. */
export class Clock {
  constructor(public ms = Date.now()) {}
  now = () => this.ms;
  advance(seconds: number) {
    this.ms += seconds * 1000;
  }
}

/**
 * `issuer`: a stand-in issuer, or the URL of one only a scripted fetcher serves. `withKv`: the
 * runtime's KV namespace (true), none (false), or this store. No verified-token cache unless
 * `tokenCacheEntries` says so, so each token is verified.
 */
export function verifierFor(
  issuer: TestIssuer | string,
  clock: Clock,
  settings: Partial<OidcIssuerConfig> = {},
  withKv: boolean | KeyValueStore = true,
  fetcher: Fetcher = (input, init) => fetch(input, init),
  tokenCacheEntries = 0,
) {
  const policy = compilePolicy({
    version: 1,
    issuers: {
      idp: {
        kind: "oidc",
        issuer: typeof issuer === "string" ? issuer : issuer.url,
        audiences: [AUDIENCE],
        ...settings,
      },
    },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const verifier = new TokenVerifier(policy, {
    fetch: fetcher,
    ...(withKv ? { kv: withKv === true ? kv : withKv } : {}),
    now: clock.now,
    tokenCacheEntries,
  });
  const store = verifier.keyStore(policy.issuers.get("idp")!);
  const pending: Promise<unknown>[] = [];
  const defer = (p: Promise<unknown>) => pending.push(p);
  return {
    verifier,
    store,
    verify: (token: string) => verifier.verify(token, ["idp"], undefined, defer),
    settle: () => settleDeferred(pending),
  };
}

/** A token of `issuer` signed "now" on the injected clock, valid for an hour. */
export function signAt(issuer: TestIssuer, clock: Clock, key = issuer.keys[0]) {
  const now = Math.floor(clock.ms / 1000);
  return issuer.sign({ iat: now, exp: now + 3600 }, key ? { key } : {});
}
