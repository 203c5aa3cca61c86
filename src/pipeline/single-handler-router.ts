// Hono's router for an app with one handler. The pipeline routes by policy itself (the route
// stage, on the canonical path), so Hono has nothing to match: every request goes to the one
// handler, and the deployable bundle carries no router it would never use.

import type { Result, Router } from "hono/router";

export class SingleHandlerRouter<T> implements Router<T> {
  readonly name = "single-handler";
  #result: Result<T> = [[]];

  add(_method: string, _path: string, handler: T): void {
    // A second handler would silently replace the first: refuse it at start-up instead.
    if (this.#result[0].length > 0) throw new Error("SingleHandlerRouter takes one handler");
    this.#result = [[[handler, {}]]];
  }

  match(): Result<T> {
    return this.#result;
  }
}
