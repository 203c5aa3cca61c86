// Benchmark-only Worker: the cost of one signature verification inside the isolate, the
// physical limit of per-request token verification. Nothing else runs in the loop.
//
//   GET /__bench/verify?alg=ES256&n=2000&mode=raw
//     raw     crypto.subtle.verify with a key imported once
//     import  importKey + verify on every iteration (what a per-request key import costs)
//     jose    jose's jwtVerify with a key imported once (the library's own overhead on top)
// Answers {alg, mode, n, ms, us_per_op}.
import { jwtVerify } from "jose";

interface Sample {
  jwk: JsonWebKey;
  token: string;
}

interface Env {
  VERIFY_SAMPLES: Record<string, Sample>;
  ISSUER: string;
  AUDIENCE: string;
}

type ImportAlgorithm = Parameters<SubtleCrypto["importKey"]>[2];
type VerifyAlgorithm = Parameters<SubtleCrypto["verify"]>[0];

const PARAMS: Record<string, { import: ImportAlgorithm; verify: VerifyAlgorithm }> = {
  ES256: { import: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
  RS256: {
    import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    verify: { name: "RSASSA-PKCS1-v1_5" },
  },
  EdDSA: { import: { name: "Ed25519" }, verify: { name: "Ed25519" } },
};

function base64UrlDecode(text: string): Uint8Array {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const importedKeys = new Map<string, CryptoKey>();

async function keyFor(alg: string, sample: Sample): Promise<CryptoKey> {
  let key = importedKeys.get(alg);
  if (!key) {
    key = await crypto.subtle.importKey("jwk", sample.jwk, PARAMS[alg]!.import, false, ["verify"]);
    importedKeys.set(alg, key);
  }
  return key;
}

async function run(env: Env, alg: string, mode: string, n: number): Promise<number> {
  const sample = env.VERIFY_SAMPLES[alg];
  const params = PARAMS[alg];
  if (!sample || !params) throw new Error(`unknown alg ${alg}`);
  const [header, payload, signature] = sample.token.split(".") as [string, string, string];
  const data = new TextEncoder().encode(`${header}.${payload}`);
  const sig = base64UrlDecode(signature);
  const key = await keyFor(alg, sample);
  const started = performance.now();
  if (mode === "raw") {
    for (let i = 0; i < n; i += 1) {
      if (!(await crypto.subtle.verify(params.verify, key, sig, data))) throw new Error("signature did not verify");
    }
  } else if (mode === "import") {
    for (let i = 0; i < n; i += 1) {
      const fresh = await crypto.subtle.importKey("jwk", sample.jwk, params.import, false, ["verify"]);
      if (!(await crypto.subtle.verify(params.verify, fresh, sig, data))) throw new Error("signature did not verify");
    }
  } else if (mode === "jose") {
    for (let i = 0; i < n; i += 1) {
      await jwtVerify(sample.token, key, { issuer: env.ISSUER, audience: env.AUDIENCE, algorithms: [alg] });
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  return performance.now() - started;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== "/__bench/verify") return new Response("not found", { status: 404 });
    const alg = url.searchParams.get("alg") ?? "ES256";
    const mode = url.searchParams.get("mode") ?? "raw";
    const n = Math.min(Math.max(Number(url.searchParams.get("n") ?? 2000), 1), 20_000);
    try {
      const ms = await run(env, alg, mode, n);
      return Response.json({ alg, mode, n, ms, us_per_op: (ms * 1000) / n });
    } catch (error) {
      return Response.json({ alg, mode, error: String(error) }, { status: 500 });
    }
  },
} satisfies ExportedHandler<Env>;
