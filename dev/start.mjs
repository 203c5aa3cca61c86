// `npm start`: the local stack on loopback. The development identity provider (8788) and
// the echo origin (8789) run in this process; the edge runs in workerd through
// `wrangler dev --env local` (8787), which serves dev/local-worker.ts: the demo policy,
// trusting only this identity provider and forwarding only to this origin.
// Ctrl-C stops all three.
import { spawn } from "node:child_process";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEchoOrigin } from "./echo-origin.mjs";
import { startIdp } from "./idp.mjs";
import { EDGE_PORT, EDGE_URL, IDP_PORT, LOCAL_ORIGIN_URL, ORIGIN_PORT } from "./local-stack.mjs";
import { isMainModule } from "./main-module.mjs";
import { wranglerCommand } from "./wrangler-env.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Fails fast with a clear message instead of letting wrangler pick another port. */
function assertPortFree(port) {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", () => reject(new Error(`port ${port} is in use: is the local stack already running?`)));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve()));
  });
}

async function listen(name, port, start) {
  try {
    return await start();
  } catch (error) {
    if (error.code !== "EADDRINUSE") throw error;
    throw new Error(`${name}: port ${port} is in use: is the local stack already running?`);
  }
}

/** Calls `onLine` for each complete line of a stream. */
function forEachLine(stream, onLine) {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  });
  stream.on("end", () => buffered && onLine(buffered));
}

function spawnWrangler(onLine) {
  const wrangler = wranglerCommand(ROOT, [
    ...["dev", "--env", "local", "--ip", "127.0.0.1", "--port", String(EDGE_PORT)],
    // No interactive hotkeys: stdin is not ours to give, and a detached process reading the
    // terminal would be stopped by the shell.
    "--show-interactive-dev-session=false",
  ]);
  // Its own process group, so stopping the stack reaches wrangler and its workerd children.
  const child = spawn(wrangler.command, wrangler.args, {
    cwd: wrangler.cwd,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: wrangler.env,
  });
  forEachLine(child.stdout, onLine);
  forEachLine(child.stderr, onLine);
  return child;
}

/** Resolves once no process of the group is left (or after `ms`, whichever is first). */
async function groupGone(child, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      process.kill(-child.pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Waits until the edge answers a request, then returns what it answered. The probe goes to
 * a public route, so it crosses the whole pipeline to the echo origin; a policy that fails
 * to compile shows up here as 500 `misconfigured`. `failure()` names a start-up failure
 * seen in wrangler's output: wrangler keeps waiting for a fix after a failed build, but
 * the stack should say so at once rather than sit until the deadline.
 */
async function probeEdge(child, deadline, failure) {
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error("the edge (wrangler dev) exited during start-up; see its output above");
    if (failure()) throw new Error(`${failure()}; see the edge's output above`);
    try {
      const response = await fetch(`${EDGE_URL}/public/`, { signal: AbortSignal.timeout(2000) });
      const body = await response.text();
      let reason;
      try {
        reason = JSON.parse(body).reason;
      } catch {
        // The echo origin's JSON has no reason; anything unparsable is not a deny.
      }
      return { status: response.status, reason };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  throw new Error("the edge did not answer within the start-up time limit");
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal colour codes
const COLOUR_CODES = /\u001b\[[0-9;]*m/g;

/**
 * wrangler's own line per request (`[wrangler:info] GET /path 200 OK (5ms)`): it prints the
 * path as sent, a JWT in it included. The audit record already shows each request, its path
 * with any JWT recorded as `[jwt]`, so these lines are left out.
 */
const WRANGLER_REQUEST_LINE = /^\[wrangler:info\] [A-Z]+ \S* \d{3}\b/;

/** Whether a line of wrangler's output is shown (see WRANGLER_REQUEST_LINE). */
export function showsEdgeLine(line) {
  return !WRANGLER_REQUEST_LINE.test(line.replace(COLOUR_CODES, "").trimStart());
}

/**
 * Starts the identity provider, the echo origin and the edge, and resolves once the edge
 * answers. `onEdgeOutput` receives wrangler's output line by line (default: this process's
 * stdout). Always call `stop()`, also when the probe reports a problem.
 */
export async function startStack({ onEdgeOutput = (line) => console.log(line), readyTimeoutMs = 90_000 } = {}) {
  const majorNode = Number(process.versions.node.split(".")[0]);
  if (majorNode < 22) {
    throw new Error(`wrangler needs Node 22 or later (this is ${process.version}); run the stack with \`npm start\``);
  }
  await assertPortFree(EDGE_PORT);
  const idp = await listen("identity provider", IDP_PORT, () => startIdp({ port: IDP_PORT }));
  let echo;
  try {
    echo = await listen("echo origin", ORIGIN_PORT, () => startEchoOrigin({ port: ORIGIN_PORT }));
  } catch (error) {
    await idp.close();
    throw error;
  }

  const recentOutput = [];
  let buildFailure;
  const edge = spawnWrangler((line) => {
    recentOutput.push(line);
    if (recentOutput.length > 200) recentOutput.shift();
    if (line.replace(COLOUR_CODES, "").includes("Build failed")) buildFailure = "the edge's Worker failed to build";
    if (showsEdgeLine(line)) onEdgeOutput(line);
  });
  // If this process dies without stop(), wrangler must not outlive it.
  const killOnExit = () => killGroup(edge, "SIGKILL");
  process.on("exit", killOnExit);
  const edgeExited = new Promise((resolve) => edge.once("exit", (code, signal) => resolve({ code, signal })));

  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      process.off("exit", killOnExit);
      if (edge.exitCode === null && edge.signalCode === null) {
        killGroup(edge, "SIGTERM");
        const timer = setTimeout(() => killGroup(edge, "SIGKILL"), 5000);
        await edgeExited;
        clearTimeout(timer);
      }
      // workerd may still be winding down in the group after wrangler itself has exited.
      killGroup(edge, "SIGKILL");
      await groupGone(edge, 3000);
      await Promise.all([idp.close(), echo.close()]);
    })();
    return stopping;
  };

  let probe;
  try {
    probe = await probeEdge(edge, Date.now() + readyTimeoutMs, () => buildFailure);
  } catch (error) {
    await stop();
    throw error;
  }
  return { idp, echo, edge, edgeExited, probe, recentOutput, stop };
}

/** The policy problems the edge printed while loading (`  - path: why` lines), if any. */
function policyProblems(lines) {
  const plain = lines.map((line) => line.replace(COLOUR_CODES, ""));
  const start = plain.findIndex((line) => line.includes("invalid policy:"));
  if (start === -1) return [];
  const problems = [];
  for (const line of plain.slice(start + 1)) {
    if (/^\s*- /.test(line)) problems.push(line.trim());
    else if (line.trim() !== "") break;
  }
  return problems;
}

function banner(issuer) {
  return `
  Portcullis local stack
    edge                ${EDGE_URL}   (wrangler dev, policy: dev/local-policy.ts)
    identity provider   ${issuer}   (discovery, /jwks, /access/cdn-cgi/access/certs)
    echo origin         ${LOCAL_ORIGIN_URL}   (answers with the request it received)

  Try:
    curl -i ${EDGE_URL}/public/hello
    curl -i ${EDGE_URL}/v1/things
    curl -i -H "authorization: Bearer $(npm run -s token)" ${EDGE_URL}/v1/things
    curl -i -H "authorization: Bearer $(npm run -s token -- --scope nothing)" ${EDGE_URL}/v1/things
    curl -i -H "cf-access-jwt-assertion: $(npm run -s token -- --access)" ${EDGE_URL}/access/x

  Ctrl-C stops everything.
`;
}

async function main() {
  let stack;
  let shuttingDown = false;
  const shutdown = async (code) => {
    if (!stack || shuttingDown) {
      // Ctrl-C during start-up, or a second Ctrl-C: do not wait for a graceful stop. Exiting
      // runs startStack's exit hook, which kills the edge's process group.
      if (stack) killGroup(stack.edge, "SIGKILL");
      process.exit(code);
    }
    shuttingDown = true;
    await stack.stop();
    process.exit(code);
  };
  process.on("SIGINT", () => shutdown(0));
  process.on("SIGTERM", () => shutdown(0));
  // Closing the terminal: without this Node exits at once, and wrangler, in a process group of
  // its own, would go on holding the edge's port.
  process.on("SIGHUP", () => shutdown(0));

  try {
    stack = await startStack();
  } catch (error) {
    console.error(`\nlocal stack: ${error.message}`);
    process.exit(1);
  }
  stack.edgeExited.then(({ code, signal }) => {
    if (shuttingDown) return;
    console.error(`\nlocal stack: the edge (wrangler dev) exited (${signal ?? `code ${code}`}); stopping`);
    shutdown(1);
  });

  console.log(banner(stack.idp.issuer));
  // Last, so it is what the terminal shows.
  if (stack.probe.status === 500 && stack.probe.reason === "misconfigured") {
    const problems = policyProblems(stack.recentOutput).map((problem) => `    ${problem}`);
    console.error(`  ██ The edge is running but refuses every request: the local policy is invalid. ██
  Fix dev/local-policy.ts or policy/policy.json; wrangler reloads the edge on save.
${problems.join("\n") || "    (the edge printed the problems above)"}
`);
  } else if (stack.probe.status >= 500) {
    // A 404 or 401 is a policy without the demo's public route, not a fault.
    console.error(`  warning: the edge answered GET /public/ with ${stack.probe.status} ${stack.probe.reason ?? ""}\n`);
  }
}

if (isMainModule(import.meta.url)) {
  await main();
}
