// Identity providers played in the core tests: an injected fetcher serving each provider's
// documents at its real URLs, keys to sign its tokens with, and a verifier with one route that
// takes every issuer given.
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { compilePolicy } from "../../src/core/policy";
import type { IssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier } from "../../src/core/tokens/verify";

export const NOW_S = () => Math.floor(Date.now() / 1000);

export interface KeyPair {
  privateKey: CryptoKey;
  /** Bare public members only (kty, n, e / crv, x, y). */
  bare: JWK;
}

export async function keyPair(alg: "RS256" | "PS256" | "ES256" | "ES384"): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, bare: await exportJWK(publicKey) };
}
export const rsa = (alg: "RS256" | "PS256" = "RS256") => keyPair(alg);
export const ec = () => keyPair("ES256");

/** Serves exactly these documents by URL; everything else is a 404. Records every URL asked for. */
export function fakeProvider(docs: Record<string, unknown>) {
  const asked: string[] = [];
  const fetcher = async (input: RequestInfo | URL, _init?: RequestInit): Promise<Response> => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    asked.push(url);
    if (Object.hasOwn(docs, url)) return Response.json(docs[url]);
    return new Response('{"error":"not_found"}', { status: 404, headers: { "content-type": "application/json" } });
  };
  return { fetcher, asked };
}

/** A core verifier with one route accepting every given issuer. */
export function verifierFor(issuers: Record<string, IssuerConfig>, docs: Record<string, unknown>) {
  const policy = compilePolicy({
    version: 1,
    issuers,
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: Object.keys(issuers) }, upstream: "o" }],
  });
  const provider = fakeProvider(docs);
  const verifier = new TokenVerifier(policy, { fetch: provider.fetcher, now: Date.now, tokenCacheEntries: 0 });
  const ids = Object.keys(issuers);
  return {
    asked: provider.asked,
    policy,
    verify: (token: string, audiences?: string[]) => verifier.verify(token, ids, audiences, () => undefined),
  };
}

export async function sign(
  key: KeyPair,
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
}
