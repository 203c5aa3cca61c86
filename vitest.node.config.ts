// Node-side tests: building the deployable bundle and whole-stack tests that run the edge
// in workerd (wrangler dev) next to real servers on loopback.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
