// The verified caller, as decided by token verification. Everything here came from a
// signature-checked token; nothing from request headers.

export interface Identity {
  /** Policy id of the issuer that vouched for the token. */
  issuerId: string;
  issuer: string;
  kind: "oidc" | "cloudflare_access";
  subject: string;
  tenant?: string;
  scopes: string[];
  groups: string[];
  email?: string;
  /** Verified claims, for claim conditions. Never forwarded or logged whole. */
  claims: Readonly<Record<string, unknown>>;
  /**
   * Short SHA-256 prefix of the token, for log correlation only. Verification gives a memoised
   * function, so the hash is computed only when an audit record is built (after the response)
   * and once per token per isolate; an identity built without a token may carry a fixed string.
   */
  tokenHash: TokenHash;
}

export type TokenHash = string | (() => Promise<string>);
