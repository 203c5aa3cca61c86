// An identity provider played by a scripted fetcher, for key-set tests whose refresh rules turn
// on times an injected clock keeps (a real server cannot be made to follow them).
import { SignJWT } from "jose";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import type { Clock } from "./clocked-verifier";
import { AUDIENCE, type TestKey } from "./issuers";

/** An answer a test scripts for one URL. */
type Answer = () => Response;

/**
 * An issuer only the returned fetcher serves, its URL ending in `path`: its discovery document
 * names `jwksUri` (unless `discovery` answers otherwise), and each URL in `sets` serves that
 * key set; anything else is a 404. With `discoveryHangs`, discovery never answers: the fetch
 * ends only when its deadline aborts it, as the runtime's fetch does. Every URL asked for is
 * recorded, in order.
 */
export function scriptedIssuer(path = "") {
  const iss = `https://idp-${crypto.randomUUID().slice(0, 12)}.test${path}`;
  const discoveryUrl = `${iss}/.well-known/openid-configuration`;
  const host = {
    iss,
    discoveryUrl,
    jwksUri: `${iss}/keys-v1`,
    discovery: undefined as Answer | undefined,
    discoveryHangs: false,
    sets: new Map<string, { keys: unknown[] }>(),
    asked: [] as string[],
  };
  const fetcher: Fetcher = async (input, init) => {
    const url = String(input);
    host.asked.push(url);
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) throw signal.reason;
    if (url === discoveryUrl) {
      if (host.discoveryHangs && signal)
        return new Promise<Response>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      return host.discovery ? host.discovery() : Response.json({ issuer: iss, jwks_uri: host.jwksUri });
    }
    const set = host.sets.get(url);
    return set ? Response.json(set) : new Response('{"error":"not_found"}', { status: 404 });
  };
  return { host, fetcher };
}

/** A token of `iss` signed "now" on the injected clock with `key`, valid for an hour. */
export function signFor(iss: string, clock: Clock, key: TestKey): Promise<string> {
  const now = Math.floor(clock.ms / 1000);
  return new SignJWT({ iss, aud: AUDIENCE, sub: "user-1", iat: now, exp: now + 3600 })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .sign(key.privateKey);
}
