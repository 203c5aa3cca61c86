import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      // The Worker's sources: wrangler.toml's main is what the build step makes of them.
      main: "./src/index.ts",
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        // Real servers on loopback, started by test/support/global-setup.ts.
        bindings: { ECHO_ORIGIN: inject("echoOrigin"), ISSUER_SERVER: inject("issuerServer") },
        // A service-binding upstream: answers with what it received, like the echo origin.
        serviceBindings: {
          ECHO_SERVICE: async (request: Request) => {
            const response = Response.json({
              via: "service-binding",
              url: request.url,
              method: request.method,
              headers: Object.fromEntries(request.headers),
            });
            // Test hook: `x-respond-with: [["name","value"], …]` adds response headers.
            for (const [name, value] of JSON.parse(request.headers.get("x-respond-with") ?? "[]")) {
              response.headers.append(name, value);
            }
            return response;
          },
        },
      },
    })),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/node/**"],
    globalSetup: ["test/support/global-setup.ts"],
    // A guard against a hang only: on a loaded machine the limiter objects' first calls (their
    // start-up and storage load) can take seconds, which is no failure of the code.
    testTimeout: 30_000,
  },
});
