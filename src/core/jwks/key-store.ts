// One issuer's verification keys: isolate memory first, then KV, then the issuer. This is
// where the behaviour gateways usually get wrong lives: single-flight refreshes, a
// per-issuer refresh cooldown shared through KV, a grace window for rotated-out keys, and
// serving the last good key set (up to a bound) when the issuer is down. What KV holds is
// described in kv-record.ts.

import type { JWK } from "jose";
import type { ResolvedIssuer } from "../policy";
import { TIMED_OUT, withDeadline } from "../deadline";
import { importVerifyKey, keyFitsAlg } from "../tokens/jws-verify";
import {
  discoverJwksUri,
  type Fetcher,
  type FetchLimits,
  fetchJson,
  KeySetFetchError,
  keyMaterialOf,
  MAX_KEYS,
  type UsableKeySet,
  usableKeys,
  verifiableKeys,
} from "./fetch-key-set";
import {
  isPastTime,
  KV_MIN_TTL_S,
  MAX_LEAKED_KEYS,
  parseStored,
  recordKey,
  refreshStampKey,
  type StoredKeySet,
} from "./kv-record";

/** The subset of a KV namespace the key store needs. */
export interface KeyValueStore {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options?: { expirationTtl?: number }): Promise<void>;
}

export interface KeyStoreDeps {
  fetch: Fetcher;
  kv?: KeyValueStore;
  /** Milliseconds since the epoch. */
  now: () => number;
}

/** Per-request hook to run work after the response (ctx.waitUntil). */
export type Defer = (work: Promise<unknown>) => void;

export type KeySource = "memory" | "kv" | "fetch";

/**
 * Where a lookup's keys came from; `stale` when the set is past its TTL (the issuer has not
 * been reached since): still served, up to max-stale, but an operator must be able to see it.
 */
export type LookupSource = KeySource | "stale";

export type KeyLookup =
  | { ok: true; keys: CryptoKey[]; source: LookupSource }
  | {
      ok: false;
      reason: "jwks_unavailable" | "token_invalid";
      detail: string;
      /** For jwks_unavailable: seconds until this isolate asks again (KV, or the issuer). */
      retryAfterS?: number;
    };

export interface KeyStoreStats {
  fetches: number;
  kvReads: number;
  imports: number;
}

interface KeyEntry {
  jwk: JWK;
  fingerprint: string;
  imported: Map<string, CryptoKey>;
  retiredAt?: number;
}

interface KeySetState {
  fetchedAt: number;
  jwksUri?: string;
  current: KeyEntry[];
  retired: KeyEntry[];
  source: KeySource;
}

/**
 * Why a refresh runs. A set missing or past max-stale ("expired") is fetched before anything
 * is served, and never waits on another isolate's stamp. A set past its TTL ("stale") is
 * refreshed before it is used, one near it ("ahead") after the response; KV writes are never
 * waited for. A refresh for an unknown kid,
 * or for a kid-less token no held key fits ("unknown_kid" either way), which any caller can
 * produce at will, obeys the KV-shared stamp (see #doRefresh for when).
 */
type RefreshReason = "expired" | "unknown_kid" | "stale" | "ahead";

/** A load or refresh in flight, shared by the requests that need it. */
interface Inflight {
  promise: Promise<void>;
  startedAt: number;
}

const MAX_CANDIDATE_KEYS = 3;
/**
 * A set this close to its TTL (or a tenth of the TTL, if less) is refreshed after the response,
 * so that under steady traffic no request waits for the refresh a set past its TTL needs.
 */
const REFRESH_AHEAD_MS = 60_000;
/**
 * After KV had nothing newer than the set held, an isolate with no usable set (none, or one
 * past max-stale) asks KV again no sooner than this: while an issuer is down and nothing is
 * cached, every request would otherwise cost a KV read only to be refused. Another isolate's fresh set is still picked up within this time.
 */
const KV_MISS_RECHECK_MS = 1000;
/**
 * A KV read gets this long at most, and half of fetch_timeout_ms at most (a refresh may read
 * twice within its bound, boundMs); one that does not answer in time is a miss. KV only saves
 * fetches: a KV that hangs must not keep the issuer from being asked.
 */
const KV_READ_TIMEOUT_MS = 300;
/**
 * Retired keys kept (the latest retired), as many as a key set has at most: an endpoint serving
 * new keys on every fetch must not grow the list, in memory or KV, with each refresh.
 */
const MAX_RETIRED_KEYS = MAX_KEYS;
function fingerprintOf(jwk: JWK): string {
  return JSON.stringify([jwk.kty, jwk.kid, jwk.alg, jwk.crv, jwk.n, jwk.e, jwk.x, jwk.y]);
}

export class IssuerKeyStore {
  readonly stats: KeyStoreStats = { fetches: 0, kvReads: 0, imports: 0 };
  #state: KeySetState | undefined;
  #inflight: Inflight | undefined;
  #lastAttemptAt = -Infinity;
  /** Attempts started: whether a request started the one it waits for. */
  #attempts = 0;
  /** The number of the last attempt that failed. */
  #lastFailedAttemptNo = 0;
  /** The last attempt took a fresh set from KV (for its own kid, if any) and asked the issuer nothing. */
  #tookKvSet = false;
  /** Why the last attempt gave no set: its failure, or `refreshing` (another isolate is asking). */
  #lastFailure: string | undefined;
  /**
   * When a refresh last failed, or another isolate asked the issuer with no answer seen here
   * (`#lastFailure` says which): the keys served meanwhile were still taken as current.
   */
  #lastUnansweredAt = -Infinity;
  /** When a refresh last failed, whatever the set held then (none, or an expired one). */
  #lastRefreshFailedAt = -Infinity;
  #lastKvMissAt = -Infinity;
  /** When this isolate last read the issuer's discovery document (see `#fetchKeySet`). */
  #discoveredAt = -Infinity;
  /**
   * The material of keys the issuer has published with their private part, here or in a set
   * another isolate saw: never current again, whichever set lists their public half later.
   */
  #leaked = new Set<string>();
  /** Every key imported from the current set, to its entry there: what `trusts` reads. */
  #keysInSet = new Map<CryptoKey, KeyEntry>();
  readonly #kvKey: string;
  readonly #kvRefreshKey: string;

  readonly #issuer: ResolvedIssuer;
  // The issuer's intervals in milliseconds, as the clock reads.
  readonly #cooldownMs: number;
  readonly #ttlMs: number;
  readonly #graceMs: number;
  readonly #maxStaleMs: number;
  /** How old a set is when it is refreshed after the response (see REFRESH_AHEAD_MS). */
  readonly #refreshAheadAtMs: number;
  readonly #deps: KeyStoreDeps;

  constructor(issuer: ResolvedIssuer, deps: KeyStoreDeps) {
    this.#issuer = issuer;
    this.#cooldownMs = issuer.refreshCooldownS * 1000;
    this.#ttlMs = issuer.cacheTtlS * 1000;
    this.#graceMs = issuer.rotationGraceS * 1000;
    this.#maxStaleMs = issuer.maxStaleS * 1000;
    this.#refreshAheadAtMs = this.#ttlMs - Math.min(REFRESH_AHEAD_MS, this.#ttlMs / 10);
    this.#deps = deps;
    this.#kvKey = recordKey(issuer);
    this.#kvRefreshKey = refreshStampKey(issuer);
  }

  /** Keys that may have signed a token with this `kid` and `alg`, current keys first. */
  async lookup(kid: string | undefined, alg: string, defer: Defer): Promise<KeyLookup> {
    const now = this.#deps.now();
    // The unknown-kid step waits within what is left of this, whatever the request waited before.
    const waitEnds = now + this.#boundMs;
    const warm = this.#state !== undefined && !this.#isExpired(this.#state, now);
    if (!this.#state && !(await this.#waitBounded(this.#loadFromKv(defer)))) return this.#unavailable("timeout", true);
    // A kid the set lacks goes with a refresh this request starts, so that one does not stop
    // at a newer KV set that lacks it too (fetched before the issuer published it).
    const missingKid = () =>
      kid !== undefined && this.#candidates(kid, undefined, now).length === 0 ? kid : undefined;
    // What a refresh this request waited for says for the unknown-kid step below (see #counted):
    // one refresh per request at most.
    let refreshed: boolean | undefined;
    if (!this.#state || this.#isExpired(this.#state, now)) {
      // While the cooldown holds a refresh back, KV may have what another isolate fetched.
      const { refresh, startedHere } = this.#startOrJoin("expired", defer, missingKid());
      const settled = await this.#waitBounded(refresh ?? this.#loadFromKv(defer));
      if (refresh) refreshed = this.#counted(startedHere, settled);
      if (!this.#state || this.#isExpired(this.#state, this.#deps.now())) {
        return settled ? this.#unavailable(this.#lastFailure ?? "unavailable") : this.#unavailable("timeout", true);
      }
    }
    let source: KeySource = warm ? "memory" : this.#state.source;
    const held = this.#state;
    const attempts = this.#attempts;
    const refreshing = this.keepCurrent(now, defer, missingKid());
    const startedHere = this.#attempts !== attempts;
    if (refreshing) {
      refreshed = this.#counted(startedHere, await refreshing);
      if (this.#state !== held) source = this.#state.source;
    }

    let entries = this.#candidates(kid, alg, now);
    if (entries.length === 0) {
      // A kid we hold, but whose key cannot verify this alg: a rotation would not explain
      // that, so refuse it as verify would, and spend no refresh on it.
      if (kid !== undefined && this.#candidates(kid, undefined, now).length > 0)
        return { ok: false, reason: "token_invalid", detail: "key_alg_mismatch" };
      // Unknown kid, or no kid and no key for this alg: the issuer may have rotated. Refresh
      // once (single-flight, cooled down, the cooldown shared through KV); a refresh that
      // does not settle in time counts as failed.
      const before = this.#state;
      let settled = refreshed;
      if (settled === undefined) {
        const { refresh, startedHere } = this.#startOrJoin("unknown_kid", defer, kid);
        settled = await this.#waitBounded(refresh, waitEnds - this.#deps.now());
        // Another request's refresh that succeeded without this kid (begun, maybe, before its
        // key was published): once more, its own, if the cooldown allows.
        if (refresh && this.#counted(startedHere, settled) === undefined && !this.#candidates(kid, alg, now).length)
          settled = await this.#waitBounded(this.#refresh("unknown_kid", defer, kid), waitEnds - this.#deps.now());
      }
      if (this.#state !== before) source = this.#state?.source ?? source;
      entries = this.#candidates(kid, alg, this.#deps.now());
      if (entries.length === 0) {
        // The issuer could not be asked (its last answer, since the set held was fetched, was
        // a failure): that says nothing against the token, so it is not refused as invalid.
        if (!settled) return this.#unavailable("timeout", true);
        if (this.#lastFailure && Math.max(this.#lastUnansweredAt, this.#lastRefreshFailedAt) > this.#state.fetchedAt)
          return this.#unavailable(this.#lastFailure, false, this.#lastFailure === "refreshing");
        // The attempt holding this one back (for a second) took another isolate's set from KV
        // for another kid, asking the issuer nothing. Fetched within a cooldown, that set is the
        // issuer's answer as this isolate's own fetch would be; older, it says nothing of a key
        // published since.
        if (this.#tookKvSet && now - this.#state.fetchedAt >= this.#cooldownMs) return this.#unavailable("refreshing");
        return { ok: false, reason: "token_invalid", detail: kid === undefined ? "no_matching_key" : "kid_unknown" };
      }
    }
    const keys: CryptoKey[] = [];
    for (const entry of entries.slice(0, MAX_CANDIDATE_KEYS)) {
      const key = await this.#imported(entry, alg);
      if (key) keys.push(key);
    }
    if (keys.length === 0) return { ok: false, reason: "token_invalid", detail: "key_import_failed" };
    return { ok: true, keys, source: this.#isStale(this.#state, this.#deps.now()) ? "stale" : source };
  }

  /** A refresh this call starts, or the one in flight it joins (or none: the cooldown holds). */
  #startOrJoin(reason: RefreshReason, defer: Defer, kid?: string) {
    const attempts = this.#attempts;
    const refresh = this.#refresh(reason, defer, kid);
    return { refresh, startedHere: this.#attempts !== attempts };
  }

  /**
   * Whether the refresh a request waited for was its one: its own (started for its kid) counts
   * whatever it came to; another request's counts when it timed out or failed (a second
   * refresh would double the wait), not when it succeeded (begun, maybe, before the kid's key
   * was published). Undefined: the request may start its own, if the cooldown allows.
   */
  #counted(startedHere: boolean, settled: boolean): boolean | undefined {
    if (startedHere || !settled) return settled;
    return this.#lastFailedAttemptNo === this.#attempts ? true : undefined;
  }

  /**
   * Before the set is used. Past its TTL, the issuer may have withdrawn a key since (a leaked
   * one, with no grace): the set is refreshed first, and the request waits for that (bounded),
   * the set serving on, stale, only when the refresh fails or the cooldown holds it back. In the
   * last stretch before the TTL, a refresh after the response, so steady traffic never waits.
   * What to wait for, if anything.
   */
  keepCurrent(now: number, defer: Defer, kid?: string): Promise<boolean> | undefined {
    const state = this.#state;
    if (!state || this.#isExpired(state, now)) return undefined;
    if (this.#isStale(state, now)) {
      const refresh = this.#refresh("stale", defer, kid);
      // While refreshes fail (the last one failed within two cooldowns: an outage makes one
      // attempt per cooldown), later attempts run after the response, so an outage does not
      // hold a request every cooldown. A failure older than that says nothing of the issuer
      // now, nor does one before the set held was fetched (unless the clock stepped back behind
      // that fetch: then every failure seems to be).
      const failing =
        this.#lastFailure !== undefined &&
        this.#lastFailure !== "refreshing" &&
        (this.#lastUnansweredAt > state.fetchedAt || now < state.fetchedAt) &&
        now - this.#lastUnansweredAt < 2 * this.#cooldownMs;
      return refresh && !failing ? this.#waitBounded(refresh) : undefined;
    }
    if (now - state.fetchedAt >= this.#refreshAheadAtMs) this.#refresh("ahead", defer, kid);
    return undefined;
  }

  /**
   * Whether `key` still belongs to a usable set: current, or retired within the grace window,
   * in a set not past max-stale. Asked on every verified-token cache hit, so a withdrawn key or
   * an expired set stops the tokens it verified earlier exactly when it stops new ones.
   */
  trusts(key: CryptoKey, now: number): boolean {
    const state = this.#state;
    if (!state || this.#isExpired(state, now)) return false;
    const entry = this.#keysInSet.get(key);
    if (!entry) return false;
    return this.#inGrace(entry, now);
  }

  /** Whether the set held is past its TTL: served stale, as a lookup's `stale` source says. */
  servesStale(now: number): boolean {
    return this.#state !== undefined && this.#isStale(this.#state, now);
  }

  /** Current, or retired less than rotation_grace_s ago (a clock stepped back to before then grants none). */
  #inGrace(entry: KeyEntry, now: number): boolean {
    const at = entry.retiredAt;
    return at === undefined || (now >= at && now - at < this.#graceMs);
  }

  /**
   * `running`: this request stopped waiting for work still in flight, which ends within the
   * fetch timeout. Else this isolate asks again once the cooldown since it last asked is over,
   * or, for an unknown kid while another isolate's stamp holds (`stamped`), since that isolate
   * did; at once after the clock stepped back.
   */
  #unavailable(failure: string, running = false, stamped = false): KeyLookup {
    const from = stamped ? this.#lastUnansweredAt : this.#lastAttemptAt;
    const now = this.#deps.now();
    const leftMs = running ? this.#issuer.fetchTimeoutMs : now < from ? 0 : from + this.#cooldownMs - now;
    const retryAfterS = Math.min(this.#issuer.refreshCooldownS, Math.max(1, Math.ceil(leftMs / 1000)));
    return { ok: false, reason: "jwks_unavailable", detail: `jwks_${failure}`, retryAfterS };
  }

  /** Past its TTL; or fetched "in the future", after the clock stepped back: refresh it then too. */
  #isStale(state: KeySetState, now: number): boolean {
    return now - state.fetchedAt >= this.#ttlMs || now < state.fetchedAt;
  }

  /** Past TTL + max-stale: no longer usable at all. */
  #isExpired(state: KeySetState, now: number): boolean {
    return now - state.fetchedAt >= this.#ttlMs + this.#maxStaleMs;
  }

  /** A clock that stepped back since the last attempt ends the cooldown rather than stretching it. */
  #cooldownOver(now: number): boolean {
    return !(now - this.#lastAttemptAt < this.#cooldownMs && now >= this.#lastAttemptAt);
  }

  /** Keys in use (current, or retired within grace) with this kid, and fitting `alg` if given. */
  #candidates(kid: string | undefined, alg: string | undefined, now: number): KeyEntry[] {
    const state = this.#state;
    if (!state) return [];
    const fits = (entry: KeyEntry) =>
      (alg === undefined || keyFitsAlg(entry.jwk, alg)) && (kid === undefined || entry.jwk.kid === kid);
    return [...state.current, ...state.retired].filter((e) => fits(e) && this.#inGrace(e, now));
  }

  async #imported(entry: KeyEntry, alg: string): Promise<CryptoKey | undefined> {
    const cached = entry.imported.get(alg);
    if (cached) return cached;
    const key = await importVerifyKey(entry.jwk, alg);
    if (!key) return undefined;
    this.stats.imports += 1;
    entry.imported.set(alg, key);
    // Indexed under the entry of the current set that shares this import map: a refresh
    // that landed during the import replaced `entry` by a copy, and indexed the map before
    // the key was in it.
    const state = this.#state;
    const owner = state && [...state.current, ...state.retired].find((e) => e.imported === entry.imported);
    if (owner) this.#keysInSet.set(key, owner);
    return key;
  }

  /** Whether a key's material is known to have leaked, under whatever kid. */
  #isLeaked(jwk: JWK): boolean {
    return this.#leaked.has(keyMaterialOf(jwk as Record<string, unknown>));
  }

  /**
   * Remembers leaked keys' material, MAX_LEAKED_KEYS at most, the oldest forgotten first. Those
   * just `seen` at the issuer are the latest; those a record names, older than any this isolate
   * knows of: the record read again before one is saved must not push out the leak just seen.
   */
  #remember(leaked: readonly string[] = [], seen?: boolean): void {
    if (!seen) this.#leaked = new Set([...leaked, ...this.#leaked]);
    else
      for (const material of leaked) {
        this.#leaked.delete(material);
        this.#leaked.add(material);
      }
    for (const material of this.#leaked) {
      if (this.#leaked.size <= MAX_LEAKED_KEYS) break;
      this.#leaked.delete(material);
    }
  }

  /**
   * A key of the set held that is now known to have leaked (another isolate saw it) stops
   * being current at once: the set is taken again, without it (its grace window from when it
   * was last taken as current, as for any withdrawn key). `retiredElsewhere`: the retirements
   * of the record that told of the leak, taken or not: where it retired a leaked key earlier
   * than this isolate would, the earlier time counts (and goes on in the record written next).
   */
  #withdrawLeaked(retiredElsewhere: StoredKeySet["retired"] = []): void {
    const state = this.#state;
    if (!state) return;
    const held = new Set([...state.current, ...state.retired].map((entry) => entry.fingerprint));
    const earlier = retiredElsewhere.filter((old) => this.#isLeaked(old.jwk) && held.has(fingerprintOf(old.jwk)));
    if (earlier.length === 0 && !state.current.some((entry) => this.#isLeaked(entry.jwk))) return;
    const stored = this.#toStored() as StoredKeySet;
    stored.retired.push(...earlier);
    this.#adopt(stored, state.source);
  }

  #adopt(stored: StoredKeySet, source: KeySource): void {
    this.#remember(stored.leaked, source === "fetch");
    const previous = this.#state;
    const known = new Map<string, KeyEntry>();
    for (const entry of [...(previous?.current ?? []), ...(previous?.retired ?? [])])
      known.set(entry.fingerprint, entry);
    const reuse = (jwk: JWK): KeyEntry => {
      const fingerprint = fingerprintOf(jwk);
      return { jwk, fingerprint, imported: known.get(fingerprint)?.imported ?? new Map() };
    };
    const current = stored.keys.filter((jwk) => !this.#isLeaked(jwk)).map(reuse);
    const currentPrints = new Set(current.map((e) => e.fingerprint));
    const now = this.#deps.now();
    const retired = new Map<string, KeyEntry>();
    // Where KV and memory disagree on when a key was retired, the earlier time counts.
    const retire = (entry: KeyEntry, at: number) =>
      retired.set(entry.fingerprint, {
        ...entry,
        retiredAt: Math.min(at, retired.get(entry.fingerprint)?.retiredAt ?? at),
      });
    for (const old of stored.retired) retire(reuse(old.jwk), old.retired_at);
    for (const old of previous?.retired ?? []) retire(old, old.retiredAt as number);
    // A key the new set lacks was last taken as current while the previous set was fresh, or
    // while the issuer could not be asked (a failed refresh): its grace runs from then at the
    // latest, not from whenever this isolate next looked (it may have sat idle for hours since
    // the issuer withdrew it).
    const lastSeen = Math.min(now, Math.max((previous?.fetchedAt ?? now) + this.#ttlMs, this.#lastUnansweredAt));
    for (const old of previous?.current ?? []) retire(old, lastSeen);
    this.#state = {
      fetchedAt: stored.fetched_at,
      ...(stored.jwks_uri ? { jwksUri: stored.jwks_uri } : {}),
      current,
      retired: [...retired.values()]
        .filter((e) => !currentPrints.has(e.fingerprint) && this.#inGrace(e, now))
        .sort((a, b) => (b.retiredAt as number) - (a.retiredAt as number))
        .slice(0, MAX_RETIRED_KEYS),
      source,
    };
    this.#keysInSet = new Map();
    for (const entry of [...this.#state.current, ...this.#state.retired]) {
      for (const key of entry.imported.values()) this.#keysInSet.set(key, entry);
    }
  }

  #toStored(): StoredKeySet | undefined {
    const state = this.#state;
    if (!state) return undefined;
    return {
      v: 1,
      fetched_at: state.fetchedAt,
      ...(state.jwksUri ? { jwks_uri: state.jwksUri } : {}),
      discovered: !this.#issuer.jwksUri,
      keys: state.current.map((e) => e.jwk),
      retired: state.retired.map((e) => ({ jwk: e.jwk, retired_at: e.retiredAt ?? 0 })),
      ...(this.#leaked.size > 0 ? { leaked: [...this.#leaked] } : {}),
    };
  }

  /**
   * Saves the set held for other isolates, with every leak one of them saved since this one read
   * KV (read again first): a set written over theirs must not drop it, as the next fetch cannot
   * bring it back once the issuer stops publishing the private part. Without compare-and-swap a
   * leak saved between this read and the write can still be lost, until it is seen again.
   */
  async #saveSet(): Promise<void> {
    if (!this.#deps.kv) return;
    await this.#readKv();
    const record = this.#toStored();
    if (record) await this.#putKv(this.#kvKey, JSON.stringify(record), this.#issuer.cacheTtlS + this.#issuer.maxStaleS);
  }

  /** A KV value; null when there is none, or no KV, or KV fails or does not answer in time. */
  async #getKv(key: string): Promise<string | null> {
    if (!this.#deps.kv) return null;
    this.stats.kvReads += 1;
    try {
      const text = await withDeadline(
        this.#deps.kv.get(key),
        Math.min(KV_READ_TIMEOUT_MS, this.#issuer.fetchTimeoutMs / 2),
      );
      return text === TIMED_OUT ? null : text;
    } catch {
      return null;
    }
  }

  /** The set saved in KV, if it is one this store may take; the leaks it names are taken either way. */
  async #readKv(): Promise<StoredKeySet | undefined> {
    let stored: StoredKeySet | undefined;
    const text = await this.#getKv(this.#kvKey);
    try {
      stored = text ? parseStored(text, this.#deps.now(), this.#issuer.jwksUri) : undefined;
    } catch {
      // A corrupt record: behave as a cache miss
    }
    // Leaks another isolate saw count whether or not its set is taken: the record this one
    // writes next carries them on, rather than dropping them.
    this.#remember(stored?.leaked);
    this.#withdrawLeaked(stored?.retired);
    return stored;
  }

  /**
   * How long a load or refresh can legitimately take: discovery and the JWKS fetch share one
   * fetch_timeout_ms, and the KV reads around them get as much again.
   */
  get #boundMs(): number {
    return 2 * this.#issuer.fetchTimeoutMs;
  }

  /**
   * The load or refresh in flight, unless it is older than the bound. It was started by
   * another request, and a Worker's I/O may be cancelled with the request that made it (a
   * client disconnect), leaving a promise that never settles: that one is forgotten, so the
   * next caller starts afresh instead of waiting on it forever.
   */
  #live(now: number): Promise<void> | undefined {
    if (this.#inflight && now - this.#inflight.startedAt < this.#boundMs) return this.#inflight.promise;
    this.#inflight = undefined;
    return undefined;
  }

  /** Makes `work` the one in flight, and keeps it running after its request's response if it can. */
  #track(work: Promise<void>, now: number, defer: Defer): Promise<void> {
    const inflight: Inflight = {
      startedAt: now,
      promise: work.finally(() => {
        // A forgotten attempt that settles late must not clear its successor.
        if (this.#inflight === inflight) this.#inflight = undefined;
      }),
    };
    this.#inflight = inflight;
    defer(inflight.promise);
    return inflight.promise;
  }

  /**
   * Waits for a shared load or refresh, but no longer than the bound: the timer belongs to
   * this request, so it fires even if the request that started the work is gone. False if the
   * bound came first; the caller then goes on as after a failed refresh.
   */
  async #waitBounded(work: Promise<void> | undefined, ms = this.#boundMs): Promise<boolean> {
    if (!work) return true;
    // Never past the bound: a clock stepped back would stretch what is left of a wait.
    return (await withDeadline(work, Math.min(this.#boundMs, Math.max(0, ms)))) !== TIMED_OUT;
  }

  /**
   * Takes a set from KV if it is newer than the one held (if any). Undefined when KV was asked
   * too recently to have anything new (KV_MISS_RECHECK_MS).
   */
  #loadFromKv(defer: Defer): Promise<void> | undefined {
    const now = this.#deps.now();
    const live = this.#live(now);
    if (live) return live;
    if (now - this.#lastKvMissAt < KV_MISS_RECHECK_MS) return undefined;
    const load = async () => {
      const stored = await this.#readKv();
      if (stored && !(this.#state && stored.fetched_at <= this.#state.fetchedAt)) this.#adopt(stored, "kv");
      else this.#lastKvMissAt = this.#deps.now();
    };
    return this.#track(load(), now, defer);
  }

  /**
   * Single-flight refresh: concurrent callers share one attempt; attempts are cooled down.
   * Undefined when the cooldown allows none. `kid` is the unknown kid that prompted it, if any.
   */
  #refresh(reason: RefreshReason, defer: Defer, kid?: string): Promise<void> | undefined {
    const now = this.#deps.now();
    const live = this.#live(now);
    if (live) return live;
    if (!this.#cooldownOver(now)) return undefined;
    this.#lastAttemptAt = now;
    const attempt = ++this.#attempts;
    this.#tookKvSet = false;
    return this.#track(this.#doRefresh(reason, defer, kid, attempt), now, defer);
  }

  /**
   * KV writes are handed to `defer`, never awaited: they go after the response, and a KV
   * that hangs must not hold the fetch back (a stale set would then never be refreshed).
   */
  async #doRefresh(reason: RefreshReason, defer: Defer, kid: string | undefined, attempt: number): Promise<void> {
    const now = this.#deps.now();
    // No fetch after all: the cooldown spaces fetches, so the next attempt may read KV again
    // in a second (for the set another isolate is fetching, or a kid this attempt was not for).
    const fetchSkipped = () => {
      this.#lastAttemptAt = now - this.#cooldownMs + KV_MISS_RECHECK_MS;
    };
    // Another isolate may have refreshed already: take its newer set, even past its TTL (in an
    // outage it outlasts ours), and prefer it to a fetch when it is fresh.
    const stored = await this.#readKv();
    if (!stored) this.#lastKvMissAt = this.#deps.now();
    if (stored && (!this.#state || stored.fetched_at > this.#state.fetchedAt)) {
      this.#adopt(stored, "kv");
      // A newer set that lacks the unknown kid was fetched before the issuer published it:
      // only a fetch can find it (for an unknown kid, within the shared cooldown below).
      if (
        !this.#isStale(this.#state as KeySetState, now) &&
        (kid === undefined || stored.keys.some((key) => key.kid === kid))
      ) {
        this.#tookKvSet = true;
        return fetchSkipped();
      }
    }
    // A refresh for an unknown kid (or for a kid-less token no held key fits: any client can
    // send one), and one a set near its TTL starts for it (or the kid would buy a fetch). Not
    // one a set past its TTL (or expired) needs whatever the kid, unless KV gave it a fresh
    // set above: skipped on a stamp, it would leave a key the issuer withdrew in use for the
    // stamp's cooldown.
    const held = this.#state;
    const fresh = held !== undefined && !this.#isStale(held, now) && !this.#isExpired(held, now);
    if (reason === "unknown_kid" || (kid !== undefined && (reason === "ahead" || (reason === "stale" && fresh)))) {
      // Shared cooldown: one fetch per issuer per cooldown across isolates (KV is eventually
      // consistent, so isolates in other locations may still fetch once each). No stamp, or no
      // answer from KV, reads as 0: the isolate's own cooldown still bounds the fetches.
      const last = Number(await this.#getKv(this.#kvRefreshKey));
      // A stamp from the future (another isolate's clock, a bad write) is ignored, not obeyed:
      // obeying it could block refreshes until it expires.
      if (isPastTime(last, now) && now - last < this.#cooldownMs) {
        // Another isolate asked the issuer. Until a set it fetched since reaches this one, the
        // issuer's answer is unknown here (that isolate may be fetching still, or have failed,
        // and KV in this location may lag a minute behind), as after a failed refresh.
        this.#lastFailure = "refreshing";
        this.#lastUnansweredAt = last;
        return fetchSkipped();
      }
    }
    defer(this.#putKv(this.#kvRefreshKey, String(now), this.#issuer.refreshCooldownS));
    try {
      // One deadline for discovery and the JWKS fetch together, so a cold request waits at
      // most fetch_timeout_ms for the issuer, not once per fetch.
      const limits = {
        timeoutMs: this.#issuer.fetchTimeoutMs,
        maxBytes: this.#issuer.maxJwksBytes,
        signal: AbortSignal.timeout(this.#issuer.fetchTimeoutMs),
      };
      const { jwksUri, keys, leaked } = await this.#fetchKeySet(kid, limits);
      // The keys it drops are retired by adopt, with those retired before.
      this.#adopt({ v: 1, fetched_at: this.#deps.now(), jwks_uri: jwksUri, keys, retired: [], leaked }, "fetch");
      this.#lastFailure = undefined;
      defer(this.#saveSet());
    } catch (error) {
      // Never cache a bad response: the last good set (if any) stays as it was.
      this.#lastFailure = error instanceof KeySetFetchError ? error.message : "fetch_failed";
      // Only while the held set still serves: an expired one kept no key current.
      const failedAt = this.#deps.now();
      this.#lastRefreshFailedAt = failedAt;
      this.#lastFailedAttemptNo = attempt;
      if (this.#state && !this.#isExpired(this.#state, failedAt)) this.#lastUnansweredAt = failedAt;
    }
  }

  /**
   * The issuer's key set, with discovery first when no jwks_uri is known. A discovered URI is
   * remembered (in memory, and in KV for other isolates), but the issuer may move it: when the
   * remembered URI fails, or its set lacks the unknown kid that prompted this refresh, discover
   * once more within the same deadline. An attempt fetches the remembered URI alone when it
   * serves what was asked; adds discovery when it does not (so an unknown kid that no key set
   * has costs two fetches per cooldown, not one); and makes at most three fetches (remembered
   * URI, discovery, new URI), when the URI has moved. A configured jwks_uri is never
   * second-guessed.
   */
  async #fetchKeySet(
    kid: string | undefined,
    limits: FetchLimits & { signal: AbortSignal },
  ): Promise<{ jwksUri: string } & UsableKeySet> {
    const discover = async (within = limits) => {
      this.stats.fetches += 1;
      const uri = await discoverJwksUri(
        this.#deps.fetch,
        this.#issuer.discoveryUrl as string,
        this.#issuer.issuer,
        within,
      );
      this.#discoveredAt = this.#deps.now();
      return uri;
    };
    // A leak counts as soon as it is seen, whichever set is taken: a URI that moved may list
    // the public half of a key the previous one published with its private part.
    const fetchFrom = async (jwksUri: string) => {
      this.stats.fetches += 1;
      const set = usableKeys(await fetchJson(this.#deps.fetch, jwksUri, limits), this.#leaked);
      this.#remember(set.leaked, true);
      return { jwksUri, ...(await verifiableKeys(set)) };
    };
    const remembered = this.#issuer.jwksUri ?? this.#state?.jwksUri;
    if (!remembered) return fetchFrom(await discover());
    // Discovery is asked again once a TTL: an issuer that moved its key set may leave the old
    // address serving a key it has withdrawn since (a host it lost, a copy left on a CDN). If
    // discovery cannot be read, the remembered URI serves, as it did.
    // It gets half the deadline at most: one that hangs must leave the set time to be fetched.
    const now = this.#deps.now();
    const rediscover =
      this.#issuer.discoveryUrl !== undefined && (now < this.#discoveredAt || now - this.#discoveredAt >= this.#ttlMs);
    if (rediscover) {
      const halfway = AbortSignal.any([limits.signal, AbortSignal.timeout(limits.timeoutMs / 2)]);
      const current = await discover({ ...limits, signal: halfway }).catch(() => remembered);
      if (current !== remembered) return fetchFrom(current);
    }

    let fetched: ({ jwksUri: string } & UsableKeySet) | undefined;
    let failure: unknown;
    try {
      fetched = await fetchFrom(remembered);
    } catch (error) {
      failure = error;
    }
    const lacksKid = kid !== undefined && fetched !== undefined && !fetched.keys.some((key) => key.kid === kid);
    const mayHaveMoved = this.#issuer.discoveryUrl !== undefined && !rediscover && (fetched === undefined || lacksKid);
    // Once the deadline has passed there is no time left to look.
    if (mayHaveMoved && !limits.signal.aborted) {
      try {
        const current = await discover();
        // Same URI: its answer is the one just had; refetching it would be a third fetch for nothing.
        if (current !== remembered) return await fetchFrom(current);
      } catch (error) {
        failure = error; // the latest word from the issuer, unless the remembered set still stands
      }
    }
    // A set the remembered URI served is still a good set, even if it lacks the kid.
    if (fetched) return fetched;
    throw failure;
  }

  async #putKv(key: string, value: string, ttlS: number): Promise<void> {
    if (!this.#deps.kv) return;
    try {
      await this.#deps.kv.put(key, value, { expirationTtl: Math.max(KV_MIN_TTL_S, ttlS) });
    } catch {
      // KV write failures cost cross-isolate sharing only; memory still has the keys.
    }
  }
}
