// An origin's redirect that names the upstream is sent as the edge's own URL, and one to
// anywhere else as written. The origin here is the real echo origin (an HTTP upstream, reached by
// its loopback URL as a deployed edge reaches `https://origin.example.com`), which answers a
// redirect to whatever `x-echo-redirect` names and records every request it receives, so a
// followed redirect would show up as a second origin request.
import { describe, expect, it } from "vitest";
import { basePolicy, echoOrigin, harness } from "../support/harness";
import { sendMarked } from "../support/sent";

/** The client's request URL: what a relative `Location` resolves against. */
const asked = (path: string) => `https://edge.test${path}`;

/** An edge whose one public route forwards to the echo origin under `base` (the upstream's path). */
function edgeTo(base: string) {
  return harness(
    basePolicy({
      upstreams: { echo: { url: `${echoOrigin}${base}`, timeout_ms: 2000 } },
      routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }],
    }),
  );
}

describe("an origin's redirect to its own upstream URL is the edge's URL for that path", () => {
  // The edge fetches the upstream URL, so the origin receives `Host: <upstream host>` (the echo
  // origin sees 127.0.0.1:<port>, a deployed one origin.example.com); only X-Forwarded-Host names
  // the edge. Origins that build an absolute Location from Host therefore name the upstream:
  // nginx's own directory redirect (`/docs` → `http://<Host>/docs/`, absolute_redirect and
  // server_name_in_redirect off being its defaults), Apache's DirectorySlash with UseCanonicalName
  // Off, Laravel's redirect() without TrustProxies. The client is then sent off the edge to the
  // private upstream: the hostname the README asks operators to keep unreachable (Tunnel, mTLS) is
  // disclosed to every client (finding the origin behind Cloudflare is the first step of going
  // round it), and the user's next request fails there, or, where the origin can be reached,
  // is served without passing the edge. Reverse proxies rewrite exactly this by default: nginx's
  // `proxy_redirect default` (Location and Refresh starting with the proxy_pass URL become the
  // front end's), Apache's ProxyPassReverse (Location, Content-Location, URI).
  it("a Location naming the upstream URL is sent as the edge's own URL for that path", async () => {
    const e = edgeTo("");
    const { response, seen, record } = await sendMarked(e, "/public/docs", {
      headers: { "x-echo-redirect": `${echoOrigin}/public/docs/?from=dir` },
    });
    expect(response.status).toBe(302);
    expect(seen.map((s) => s.path)).toEqual(["/public/docs"]);
    expect(record).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
    const location = response.headers.get("location") ?? "";
    // Relative (`/public/docs/?from=dir`) or absolute on the edge's origin: either takes the
    // client back through the edge; neither names the upstream.
    expect(location).not.toContain(new URL(echoOrigin).host);
    expect(new URL(location, asked("/public/docs")).href).toBe(asked("/public/docs/?from=dir"));
  });

  it("with the upstream's path (`https://origin.example.com/base`), the base comes off with the host", async () => {
    const e = edgeTo("/base");
    const { response, seen, record } = await sendMarked(e, "/public/docs", {
      headers: { "x-echo-redirect": `${echoOrigin}/base/public/docs/` },
    });
    expect(response.status).toBe(302);
    expect(record).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
    // The origin had the request under its base path: its Location is in its own terms.
    expect(seen.map((s) => s.path)).toEqual(["/base/public/docs"]);
    const location = response.headers.get("location") ?? "";
    expect(location).not.toContain(new URL(echoOrigin).host);
    expect(new URL(location, asked("/public/docs")).href).toBe(asked("/public/docs/"));
  });
});

describe("an origin's redirect elsewhere", () => {
  // An identity provider's login, a payment page, another service: the client must be sent
  // there as the origin wrote it (a rewrite of the upstream's own URLs must not reach these).
  it("to another host (an identity provider's sign-in) is passed on as written, and not fetched", async () => {
    const e = edgeTo("");
    const login = "https://idp.example.com/authorize?client_id=app&redirect_uri=https%3A%2F%2Fedge.test%2Fpublic%2Fcb";
    const { response, seen, record } = await sendMarked(e, "/public/start", {
      headers: { "x-echo-redirect": login },
    });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe(login);
    expect(seen.map((s) => s.path)).toEqual(["/public/start"]);
    expect(record).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
  });

  it("to a path on the upstream's host that only begins with the upstream's base is not the upstream's own", async () => {
    // `${origin}/basement/x` is not under the upstream `${origin}/base`: no edge path stands
    // for it, so it goes on as written (a prefix rewrite blind to the segment boundary would
    // send the client to `/ment/x`).
    const e = edgeTo("/base");
    const elsewhere = `${echoOrigin}/basement/x`;
    const { response, seen, record } = await sendMarked(e, "/public/start", {
      headers: { "x-echo-redirect": elsewhere },
    });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe(elsewhere);
    // Asked once, under its base, and the redirect not followed (no request for `/basement/x`).
    expect(seen.map((s) => s.path)).toEqual(["/base/public/start"]);
    expect(record).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
  });
});
