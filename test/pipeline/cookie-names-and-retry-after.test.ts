// Cookie names with characters beyond ASCII (what is decoded, what costs nothing, what reaches
// the origin), the Retry-After of a key set being refreshed elsewhere, the CF-Worker ip key,
// and the verified-token cache under a normal clock.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { hidesCredentialCookie, withoutCredentialCookies } from "../../src/core/cookies";
import { clientAddressKey } from "../../src/core/limits/plan";
import type { PolicyDocument } from "../../src/core/policy-types";
import { VerifiedTokenCache } from "../../src/core/tokens/verified-cache";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, makeKey } from "../support/issuers";

const kv = (env as unknown as { JWKS_CACHE: KVNamespace }).JWKS_CACHE;

/** A string as the Node echo origin shows it: the UTF-8 bytes on the wire, read as Latin-1. */
const onWire = (text: string) => String.fromCharCode(...new TextEncoder().encode(text));

afterEach(() => {
  vi.restoreAllMocks();
});

describe("plain non-ASCII cookie names cost no decoding", () => {
  it("a Cookie header of 1,000 non-ASCII names with nothing escaped is not run through the escape/UTF-8 decoder", () => {
    // The runtime hands header values over decoded from UTF-8, so a name with no `%` has no
    // escape to decode: it is only folded (ı, İ, ſ, K), never escaped and decoded back (which
    // made a header of non-ASCII names within the caps 10–20× dearer than an ASCII one).
    const cookie = Array.from({ length: 1000 }, (_, i) => `名字名字名字名字${i}=v`).join(";");
    expect(cookie.split(/[;=]/).length - 1).toBeLessThanOrEqual(2000);
    const decode = vi.spyOn(TextDecoder.prototype, "decode");
    const encode = vi.spyOn(globalThis, "encodeURIComponent");
    const kept = withoutCredentialCookies(cookie);
    expect(hidesCredentialCookie(kept)).toBe(false);
    expect(kept).toBe(cookie);
    expect({ decode: decode.mock.calls.length, encodeURIComponent: encode.mock.calls.length }).toEqual({
      decode: 0,
      encodeURIComponent: 0,
    });
  });
});

describe("jwks_unavailable's Retry-After is what is left of the cooldown", () => {
  it("another isolate asked the issuer 590 s into a 600 s cooldown: Retry-After is the 10 s left", async () => {
    // While another isolate's stamp is fresh, unknown-kid tokens get `503 jwks_unavailable`
    // (`jwks_refreshing`) for the rest of that cooldown at most: Retry-After says what is left
    // of it, not the whole refresh_cooldown_s (600 s here), which a client would wait out for
    // what this edge serves 11 s later.
    const issuer = await makeIssuer();
    let ms = Date.now();
    const policy = basePolicy({
      issuers: {
        idp: {
          kind: "oidc",
          issuer: issuer.url,
          audiences: [AUDIENCE],
          refresh_cooldown_s: 600,
          cache_ttl_s: 3600,
        },
      },
      routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
    } as Partial<PolicyDocument>);
    const edge = harness(policy, { authentication: { now: () => ms } });
    const bearer = async (key = issuer.keys[0]) => {
      const s = Math.floor(ms / 1000);
      return `Bearer ${await issuer.sign({ iat: s, exp: s + 7200 }, key ? { key } : {})}`;
    };
    expect((await edge.fetch("/v1/a", { headers: { authorization: await bearer() } })).status).toBe(200);

    const k2 = await makeKey();
    await issuer.publish([issuer.keys[0]!, k2]);
    ms += 700_000; // this isolate's own cooldown is over
    // Another isolate stamped its refresh attempt 590 s ago (the shared cooldown stamp).
    await kv.put(`jwks-refresh:v1:${issuer.url}`, String(ms - 590_000), { expirationTtl: 600 });
    const refused = await edge.fetch("/v1/a", { headers: { authorization: await bearer(k2) } });
    expect(refused.status).toBe(503);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "jwks_unavailable", detail: "jwks_refreshing" });
    const retryAfter = Number(refused.headers.get("retry-after"));

    // 11 s later the cooldown is over and this edge asks the issuer itself: admitted.
    ms += 11_000;
    expect((await edge.fetch("/v1/a", { headers: { authorization: await bearer(k2) } })).status).toBe(200);
    // README (`jwks_unavailable`): what is left of the cooldown since that isolate asked; the
    // injected clock stood still meanwhile, so exactly 10 s.
    expect(retryAfter).toBe(10);
  });
});

describe("cookie spellings through the edge", () => {
  const send = async (cookie: string) => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch("/public/a", { headers: { cookie, "x-test-marker": m } });
    await response.text();
    return { status: response.status, seen: await originSaw(m) };
  };

  it.each([
    // Spellings caught before today: still caught.
    "CF%5FAuthorization=t",
    "CF.Authorization=t",
    "CF+Authorization=t",
    "cf_authorization=t",
    "CF_Authorization%00x=t",
    "CF_Authorization[0]x=t",
    "CF_Authorization[%C3%A9]=t",
    "CF%5FAuthorization[\u00e9]=t",
    "CF_Author%C4%B1zation=t",
    "CF_Author%u0131zation=t",
    "CF_Author%u0130zation=t",
    // Caught since today.
    "CF_Author\u0131zation=t",
    "CF_Author\u0130zation=t",
    "CF_Authorization[\u0100\u00e9]=t",
    "\uFEFFCF_Authorization=t",
  ])("strips %j and forwards the rest as sent", async (credential) => {
    const { status, seen } = await send(`session=s; ${credential}; pr\u00e9nom=\u540d`);
    expect(status).toBe(200);
    expect(seen[0]!.headers.cookie).toBe(onWire("session=s; pr\u00e9nom=\u540d"));
  });

  it("forwards legitimate non-ASCII cookies (names and values) exactly as sent", async () => {
    const cookie =
      "pr\u00e9nom=\u00e9l\u00e8ve; \u540d\u524d=\u592a\u90ce; \u0130stanbul=1; emoji\u{1F600}=x; session=s";
    const { status, seen } = await send(cookie);
    expect(status).toBe(200);
    expect(seen[0]!.headers.cookie).toBe(onWire(cookie));
  });

  it("a lone surrogate never reaches the name reader: the runtime hands over U+FFFD, and nothing throws", async () => {
    // workerd writes header values as (WTF-)UTF-8 and reads them back as USVStrings, so the
    // `catch` in escapeUtf8 is unreachable from a request; a hostile one still gets a 200.
    const headers = new Headers({ cookie: "a\uD800=1" });
    expect(headers.get("cookie")).toBe("a\uFFFD\uFFFD\uFFFD=1");
    const { status, seen } = await send("x\uDC00y=1; CF_Authorization[\uD83D]=t; session=s");
    expect(status).toBe(200);
    expect(seen[0]!.headers.cookie).toBe(onWire("x\uFFFD\uFFFD\uFFFDy=1; session=s"));
  });
});

describe("the CF-Worker ip key", () => {
  const worker = "2a06:98c0:3600::103";
  it("is bounded, case-insensitive and only taken from Cloudflare's Worker address", () => {
    const long = clientAddressKey(worker, `${"a".repeat(100_000)}.example`);
    expect(long.length).toBeLessThanOrEqual("worker:".length + 255);
    expect(clientAddressKey(worker, "API.Example.COM")).toBe(clientAddressKey(worker, "api.example.com"));
    expect(clientAddressKey(` ${worker} `, "api.example.com")).toBe("worker:api.example.com");
    // Any other address ignores it, however many zones it names.
    for (const zone of ["a.example", "b.example", "c.example"])
      expect(clientAddressKey("198.51.100.9", zone)).toBe("198.51.100.9");
    expect(clientAddressKey(worker, "")).toBe("2a06:98c0:3600:0::/64");
  });
});

describe("the verified-token cache under a normal clock", () => {
  it("hits at the same millisecond and later; misses only once the clock is behind the check", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 10, maxKeyChars: 10_000, maxAgeMs: 300_000 });
    const entry = { identity: {} as never, key: {} as CryptoKey };
    const t = 1_800_000_000_000;
    cache.set("tok", entry, t / 1000 + 600, t);
    expect(cache.get("tok", t)).toBeDefined();
    expect(cache.get("tok", t + 1)).toBeDefined();
    expect(cache.get("tok", t + 299_999)).toBeDefined();
    expect(cache.get("tok", t - 1)).toBeUndefined();
  });
});
