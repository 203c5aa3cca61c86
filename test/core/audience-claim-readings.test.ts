// `claims.audience` (an OIDC issuer naming the claim its tokens' audience is read from,
// `client_id` for AWS Cognito's access tokens): the verifier's reading of it against a
// loopback issuer's real signed tokens.
import { beforeAll, describe, expect, it } from "vitest";
import { Clock, verifierFor } from "../support/clocked-verifier";
import { makeIssuer, type TestIssuer } from "../support/issuers";

/** A Cognito app client id, as Cognito writes one in an access token's `client_id`. */
const CLIENT = "3n4b5urk1ft4fl3mg5e62d9ado";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("RS256");
});

/** A verifier for `idp` whose issuer takes `CLIENT`, read from `audience`. */
const readingFrom = (audience: string) => verifierFor(idp, new Clock(), { audiences: [CLIENT], claims: { audience } });

describe("a token whose aud names another API is refused though its client_id is listed", () => {
  // RFC 7519 §4.1.3: when `aud` is present and the recipient does not identify itself with a
  // value in it, the JWT MUST be rejected. Cognito now writes `aud` into access tokens: with
  // resource binding (RFC 8707 `resource`, Essentials and Plus tiers) it issues an access
  // token "with the audience claim set to the specific resource", beside the same
  // `client_id`. API Gateway's JWT authorizer, whose reading the README cites for this
  // setting, evaluates `aud` whenever it is present and `client_id` only when it is not. Here
  // `aud` were not looked at, a token the app client got for another API (a billing service
  // that received and leaked it, or logs it) would be accepted by every route that lists the
  // app client: the audience restriction resource binding exists for would be undone.
  it("an access token for https://billing.example.com carrying the listed client_id is refused as audience_mismatch, naming aud", async () => {
    const { verify } = readingFrom("client_id");
    const bound = await idp.sign({
      aud: "https://billing.example.com",
      client_id: CLIENT,
      token_use: "access",
      scope: "billing/read",
    });
    expect(await verify(bound)).toMatchObject({ ok: false, reason: "audience_mismatch", detail: "aud" });
  });
});

describe("an audience claim named like a prototype property is read as the token's own claim", () => {
  // Claims are read from the parsed payload by name: `constructor` is also a property every
  // object inherits (a function), which must count as no audience, never as one that matches.
  it("claims.audience constructor: refused without the claim, naming it; taken with it", async () => {
    const { verify } = readingFrom("constructor");
    expect(await verify(await idp.sign({ aud: CLIENT }))).toMatchObject({
      ok: false,
      reason: "audience_mismatch",
      detail: "constructor",
    });
    expect(await verify(await idp.sign({ aud: undefined, constructor: CLIENT }))).toMatchObject({
      ok: true,
      identity: { subject: "user-1" },
    });
  });
});
