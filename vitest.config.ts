import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        // Real servers on loopback, started by test/support/global-setup.ts.
        bindings: { ECHO_ORIGIN: inject("echoOrigin"), ISSUER_SERVER: inject("issuerServer") },
        // A service-binding upstream: answers with what it received, like the echo origin.
        serviceBindings: {
          ECHO_SERVICE: async (request: Request) =>
            Response.json({
              via: "service-binding",
              url: request.url,
              method: request.method,
              headers: Object.fromEntries(request.headers),
            }),
        },
      },
    })),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/node/**"],
    globalSetup: ["test/support/global-setup.ts"],
  },
});
