// The route lint's message for a route every request of which a reading refuses
// (route-overlap.ts `whyReadAs`): what it blames, where a `:tenant` host both routes capture is
// the same tenant (route-readings.ts `runsAsStrictly`). Policies are compiled as
// scripts/compile-policy.mjs compiles them: the validator, then the lint as deployed.
import { describe, expect, it } from "vitest";
import { deployable } from "../support/lint-policies";
import { compileStepProblems } from "../support/policy-compile-step";

describe("the lint blames a route ceiling, not a host-bound tenant, where the ceiling causes the refusal", () => {
  // A shop platform on its shops' hosts: `/orders/**` with a route ceiling (a `route` limit, one
  // counter for the route), and `/orders.json` written for Shopify-style theme JavaScript with the
  // same rules but no ceiling. Both take the tenant from the host, which no reading moves, so the
  // tenant is not why every `/orders.json` is refused as ambiguous_format: the ceiling is (a
  // `route` limit is another route's counter whatever it says), and the message says so.
  const host = ":tenant.shops.example.com";
  const routes = [
    {
      name: "orders-json",
      methods: ["GET"],
      host,
      path: "/orders.json",
      auth: { issuers: ["idp"] },
    },
    {
      name: "orders",
      methods: ["GET"],
      host,
      path: "/orders/**",
      auth: { issuers: ["idp"] },
      limits: [{ name: "orders-ceiling", key: "route", limit: 1000, window_s: 60 }],
    },
  ];

  it("names routes[1] (orders) and its limits, not a tenant from its path", () => {
    const problems = compileStepProblems(deployable(routes));
    expect(problems).toEqual([
      expect.stringMatching(/^routes\[0\] \(orders-json\): GET never reaches it: .*routes\[1\] \(orders\)/),
    ]);
    expect(problems[0]).not.toMatch(/from its path/);
    expect(problems[0]).toMatch(/limits/);
  });
});
