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
   * Short SHA-256 prefix of the token, for log correlation only. A memoised function, so the
   * hash is computed only when an audit record is built (after the response), and once per
   * token per isolate.
   */
  tokenHash: () => Promise<string>;
}
