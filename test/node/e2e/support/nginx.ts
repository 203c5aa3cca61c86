// nginx as the customer's reverse proxy behind the edge: edge → nginx → application (the echo
// origin). nginx is the Debian package (`apt-get install nginx`; .ci/run installs it), run
// in the foreground as one process with its own configuration, logs and temporary files
// in a throwaway directory, listening on 127.0.0.1 only.
//
// It is configured the permissive way some deployments are: `underscores_in_headers on`, so
// `$http_x_user_sub` reads `x_user_sub` as well as `x-user-sub`. What nginx itself made of
// the request — the URI it parsed, the identity and credential headers as its variables read
// them — goes to the application in `x-nginx-*` headers, where the test reads it, each value
// in brackets: nginx leaves out a header whose value is empty, and `[]` says "read nothing".
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Nginx {
  url: string;
  stop(): Promise<void>;
}

/** What nginx passes on to the application, as `x-nginx-<name>: <nginx variable>`. */
export const NGINX_VIEW = {
  uri: "$request_uri",
  "user-sub": "$http_x_user_sub",
  tenant: "$http_x_tenant",
  "user-scope": "$http_x_user_scope",
  authorization: "$http_authorization",
  "cookie-session": "$cookie_session",
  "cookie-cf-authorization": "$cookie_CF_Authorization",
} as const;

/** nginx on the PATH, else where Debian puts it (/usr/sbin is not on every user's PATH). */
function nginxBinary(): string {
  for (const candidate of ["nginx", "/usr/sbin/nginx"]) {
    try {
      execFileSync(candidate, ["-v"], { stdio: "ignore" });
      return candidate;
    } catch {
      // not this one
    }
  }
  throw new Error("nginx not found: install it with `apt-get install nginx` (.ci/run does)");
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve();
      });
      socket.once("error", () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`nginx did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export async function startNginx(options: { port: number; applicationUrl: string }): Promise<Nginx> {
  const binary = nginxBinary();
  const dir = mkdtempSync(join(tmpdir(), "portcullis-nginx-"));
  for (const sub of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, sub));
  const view = Object.entries(NGINX_VIEW)
    .map(([name, variable]) => `      proxy_set_header x-nginx-${name} "[${variable}]";`)
    .join("\n");
  const config = `
daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${join(dir, "client_body")};
  proxy_temp_path ${join(dir, "proxy")};
  fastcgi_temp_path ${join(dir, "fastcgi")};
  uwsgi_temp_path ${join(dir, "uwsgi")};
  scgi_temp_path ${join(dir, "scgi")};
  underscores_in_headers on;
  server {
    listen 127.0.0.1:${options.port};
    location /public/files/ {
      root ${join(dir, "files")};
    }
    location / {
      proxy_pass ${options.applicationUrl};
      proxy_http_version 1.1;
${view}
    }
  }
}
`;
  // A directory nginx serves itself: a request for it without its trailing slash gets nginx's
  // own redirect, an absolute URL built from the Host it was sent (its defaults:
  // absolute_redirect on, server_name_in_redirect off, port_in_redirect on).
  mkdirSync(join(dir, "files", "public", "files", "docs"), { recursive: true });
  writeFileSync(join(dir, "files", "public", "files", "docs", "index.html"), "docs\n");
  const configFile = join(dir, "nginx.conf");
  writeFileSync(configFile, config);
  const child: ChildProcess = spawn(binary, ["-p", dir, "-c", configFile, "-e", join(dir, "error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += String(chunk);
  });
  try {
    await waitForPort(options.port, 10_000);
  } catch (error) {
    child.kill("SIGKILL");
    let log = "";
    try {
      log = readFileSync(join(dir, "error.log"), "utf8");
    } catch {
      // no log written
    }
    throw new Error(`${(error as Error).message}\n${stderr}\n${log}`);
  }
  return {
    url: `http://127.0.0.1:${options.port}`,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
