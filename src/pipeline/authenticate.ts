// Stage: authenticate. Public routes pass; every other route needs a verified token.
// (Token verification arrives as its own core module; until then nothing non-public passes.)

import type { MiddlewareHandler } from "hono";
import type { PipelineEnv } from "./context";
import { deny } from "./respond";

export function authenticate(): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    if (c.get("route").auth === "public") return next();
    return deny(c, "token_missing");
  };
}
