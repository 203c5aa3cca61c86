// Whether the origin ruled on shared caches is read from its Cache-Control outside quoted
// values, quoted-pairs and an unterminated quote included.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { ACCESS_AUD_TAG, accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";

describe("Cache-Control quoted values on Access answers", () => {
  let team: TestIssuer;
  beforeAll(async () => {
    team = await makeIssuer("RS256");
  });

  /** An Access assertion for the app, and an edge whose one Access route takes these methods. */
  async function signedIn(methods: ("GET" | "OPTIONS")[], upstream: "svc" | "echo") {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const edge = harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
        upstreams: { echo: basePolicy().upstreams!.echo!, svc: { service: "ECHO_SERVICE" } },
        routes: [
          {
            name: "app",
            methods,
            path: "/app/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream,
          },
        ],
      }),
    );
    return { token, edge };
  }

  async function answer(cacheControl: string) {
    const { token, edge } = await signedIn(["GET"], "svc");
    const response = await edge.fetch("/app/report", {
      headers: {
        cookie: `CF_Authorization=${token}`,
        "x-respond-with": JSON.stringify([["cache-control", cacheControl]]),
      },
    });
    expect(response.status).toBe(200);
    return response.headers.get("cache-control");
  }

  it("a directive inside a quoted value with an escaped quote does not count", async () => {
    const fake = 'max-age=600, ext="a\\", public, x="';
    expect(await answer(fake)).toBe(`private, ${fake}`);
  });

  it("a real ruling after a quoted value holding an escaped quote still counts", async () => {
    const real = 'ext="\\"", public, private="set-cookie"';
    expect(await answer(real)).toBe(real);
  });

  // An unterminated quote after a real ruling keeps the ruling.
  it("an unterminated quote after the ruling does not hide it", async () => {
    expect(await answer('no-store, ext="x')).toBe('no-store, ext="x');
  });

  it("a directive after an unterminated quote does not count", async () => {
    const fake = 'max-age=600, ext="x, public';
    expect(await answer(fake)).toBe(`private, ${fake}`);
  });

  it("directives after a closed quoted value are still seen; one inside, or after a lone backslash, is not", async () => {
    for (const [value, kept] of [
      ['ext="a\\\\", public', true],
      ['ext="a\\"b", no-store', true],
      ['ext="a, public"', false],
      ['ext="a\\", public', false],
      ['max-age=60, ext="x, public\\', false],
    ] as const) {
      expect({ value, cc: await answer(value) }).toEqual({ value, cc: kept ? value : `private, ${value}` });
    }
  });

  it("the edge's own answer (an OPTIONS with Max-Forwards: 0) is marked private too", async () => {
    const { token, edge } = await signedIn(["GET", "OPTIONS"], "echo");
    const response = await edge.fetch("/app/report", {
      method: "OPTIONS",
      headers: { "cf-access-jwt-assertion": token, "max-forwards": "0" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(response.headers.get("cache-control")).toBe("private");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", detail: "max_forwards_zero" });
  });
});
