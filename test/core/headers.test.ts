import { describe, expect, it } from "vitest";
import { cookiePairs, hidesCredentialCookie, withoutCredentialCookies } from "../../src/core/cookies";
import { makeStripPredicate } from "../../src/core/headers";

describe("cookies", () => {
  it("parses pairs in order, keeping each as sent", () => {
    expect(cookiePairs(" a=1;flag ; b = 2 ;;")).toEqual([
      ["a", "1", "a=1"],
      ["flag", "", "flag"],
      ["b", "2", "b = 2"],
    ]);
  });

  it("removes the Access cookie in any case and keeps every other cookie untouched", () => {
    expect(withoutCredentialCookies("a=1; flag; CF_Authorization=x; cf_authorization=y; b=2")).toBe("a=1; flag; b=2");
    expect(withoutCredentialCookies("CF_Authorization=x")).toBe("");
  });

  it("keeps the separators between the other cookies as sent", () => {
    // A `,` inside a value stays a `,`: a strict parser reads `filter=a,b=c` as one cookie.
    expect(withoutCredentialCookies("filter=a,b=c; theme=dark; CF_Authorization=t")).toBe("filter=a,b=c; theme=dark");
    expect(withoutCredentialCookies("note=x,session=attacker; session=real; CF_Authorization=t")).toBe(
      "note=x,session=attacker; session=real",
    );
    expect(withoutCredentialCookies("CF_Authorization=t;  a=1,b=2 ;c=3")).toBe("a=1,b=2 ;c=3");
  });

  it("cuts out a credential cookie behind an empty name, which a browser sends as its value alone", () => {
    expect(withoutCredentialCookies("x=1; =CF_Authorization=t; y=2")).toBe("x=1; y=2");
    expect(withoutCredentialCookies(" = =cf_authorization=t")).toBe("");
    // A nameless cookie that is not a credential stays.
    expect(withoutCredentialCookies("=theme=dark; CF_Authorization=t")).toBe("=theme=dark");
    // After a comma too: two Cookie headers arrive joined by ", ".
    expect(withoutCredentialCookies("x=1, =CF_Authorization=t")).toBe("x=1");
    expect(withoutCredentialCookies("a=1,=CF_Authorization=t; b=2")).toBe("a=1; b=2");
  });

  it("finds a credential cookie hidden behind an `=` in another cookie's value", () => {
    expect(hidesCredentialCookie("session=s =CF_Authorization=t")).toBe(true);
    expect(hidesCredentialCookie("next=a=CF_Authorization=t")).toBe(true);
    expect(hidesCredentialCookie("data=YWJj==; q=a=b")).toBe(false);
  });

  it("parts the neighbours of a cut cookie by `;` when any separator around it was one", () => {
    // Otherwise a strict parser would read `a`'s value as running on into `b`.
    expect(withoutCredentialCookies("a=1; CF_Authorization=t,b=2")).toBe("a=1;b=2");
    expect(withoutCredentialCookies("a=1,CF_Authorization=t; b=2")).toBe("a=1; b=2");
    expect(withoutCredentialCookies("a=1,CF_Authorization=t,b=2")).toBe("a=1,b=2");
    expect(withoutCredentialCookies("a=1, CF_Authorization=t, CF_AUTHORIZATION=u; b=2")).toBe("a=1; b=2");
  });
});

describe("strip predicate", () => {
  const strip = makeStripPredicate(["X-Custom-Identity"]);
  it.each([
    "x-user-sub",
    "X_User_Sub",
    "x-tenant-id",
    "X-Tenant",
    "x-org-id",
    "x-client-dn",
    "x-forwarded-client-cert",
    "cf-access-authenticated-user-email",
    "x-request-id",
    "x-http-method-override",
    "connection",
    "x_custom_identity",
  ])("strips %s", (name) => {
    expect(strip(name)).toBe(true);
  });
  it.each(["accept", "content-type", "x-userland", "x-tenancy"])("keeps %s", (name) => {
    expect(strip(name)).toBe(false);
  });
});
