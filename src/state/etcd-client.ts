import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * etcd's v3 API through its own HTTP/JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`,
 * `/v3/lease/*`; served by every etcd ≥ 3.4 on its client URLs), the few calls the
 * controller's state and leader lease need. Keys and values are bytes (base64 on the
 * wire); 64-bit numbers arrive as decimal strings and are kept as bigint or number as
 * each field needs.
 *
 * Endpoints: every call goes to the member that answered last, and to the next one when
 * that member cannot be reached or does not answer within the call's timeout (a member
 * cut off from its quorum answers nothing for writes and linearizable reads: the same
 * for us). A call that no member answers throws US_STATE_STORE_UNAVAILABLE; the caller
 * decides what that means (the leader lease: no renewal).
 */
export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string | null;
}

export type EtcdCompare =
  { key: string; target: 'CREATE'; createRevision: number } | { key: string; target: 'VALUE'; value: string } | { key: string; target: 'LEASE'; lease: string };

export type EtcdOp = { put: { key: string; value: string; lease?: string } } | { range: { key: string } } | { delete: { key: string } };

export interface EtcdTxnResult {
  succeeded: boolean;
  /** The cluster's revision after the transaction. */
  revision: number;
  /** The keys each `range` op found, in op order (empty for other ops). */
  ranges: EtcdKv[][];
}

interface RawKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));

function kvOf(r: RawKv): EtcdKv {
  return {
    key: unb64(r.key),
    value: unb64(r.value),
    createRevision: Number(r.create_revision ?? 0),
    modRevision: Number(r.mod_revision ?? 0),
    lease: r.lease !== undefined && r.lease !== '0' ? r.lease : null,
  };
}

/** The end of the range of every key that starts with `prefix` (etcd's `range_end`, base64). */
function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i] = b[i]! + 1;
      return out.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

function compareOf(c: EtcdCompare): Record<string, unknown> {
  const base = { key: b64(c.key), result: 'EQUAL', target: c.target };
  if (c.target === 'CREATE') return { ...base, create_revision: String(c.createRevision) };
  if (c.target === 'VALUE') return { ...base, value: b64(c.value) };
  return { ...base, lease: c.lease };
}

function opOf(op: EtcdOp): Record<string, unknown> {
  if ('put' in op) return { request_put: { key: b64(op.put.key), value: b64(op.put.value), ...(op.put.lease ? { lease: op.put.lease } : {}) } };
  if ('range' in op) return { request_range: { key: b64(op.range.key) } };
  return { request_delete_range: { key: b64(op.delete.key) } };
}

export class EtcdClient {
  private readonly dispatcher: Agent;
  /** Index of the member that answered last: tried first. */
  private current = 0;

  /**
   * @param endpoints client URLs of the members (`http://10.0.0.5:2379`).
   * @param timeoutMs how long one call may take, through every member it tries.
   */
  constructor(
    readonly endpoints: readonly string[],
    private readonly timeoutMs: number,
  ) {
    if (endpoints.length === 0) throw new UnderstudyError('US_CONFIG_INVALID', 'etcd: no endpoints');
    this.dispatcher = new Agent({ keepAliveTimeout: 10_000, connections: 4, connect: { timeout: timeoutMs } });
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => undefined);
  }

  async get(key: string): Promise<EtcdKv | null> {
    const r = (await this.call('/v3/kv/range', { key: b64(key) })) as { kvs?: RawKv[] };
    return r.kvs?.[0] ? kvOf(r.kvs[0]) : null;
  }

  /**
   * Every key under `prefix`, in key order, read in pages of `pageSize` (one response
   * stays small however much is stored), all at the revision of the first page: a
   * consistent view even while others write. Returns the keys and that revision.
   */
  async range(prefix: string, pageSize = 500): Promise<{ kvs: EtcdKv[]; revision: number }> {
    const end = prefixEnd(prefix);
    const kvs: EtcdKv[] = [];
    let from = prefix;
    let revision = 0;
    for (;;) {
      const r = (await this.call('/v3/kv/range', {
        key: b64(from),
        range_end: end,
        limit: String(pageSize),
        ...(revision > 0 ? { revision: String(revision) } : {}),
      })) as { kvs?: RawKv[]; more?: boolean; header?: { revision?: string } };
      if (revision === 0) revision = Number(r.header?.revision ?? 0);
      const page = (r.kvs ?? []).map(kvOf);
      kvs.push(...page);
      if (!r.more || page.length === 0) return { kvs, revision };
      from = `${page[page.length - 1]!.key}\0`;
    }
  }

  /**
   * Watches every key under `prefix` from `fromRevision` on (etcd's watch through the
   * gateway: one long response, a JSON object per line), calling `onEvents` with each
   * batch in order. Resolves when the watch ends (the member went away, the revision was
   * compacted, `signal` aborted); the caller reads again and watches anew.
   */
  async watch(prefix: string, fromRevision: number, onEvents: (events: { type: 'put' | 'delete'; kv: EtcdKv }[]) => void, signal: AbortSignal): Promise<void> {
    const url = this.endpoints[this.current]!;
    const res = await request(`${url}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: String(fromRevision) } }),
      headers: { 'content-type': 'application/json' },
      dispatcher: this.dispatcher,
      headersTimeout: this.timeoutMs,
      bodyTimeout: 0,
      signal,
    });
    if (res.statusCode !== 200) {
      await res.body.text().catch(() => '');
      throw new UnderstudyError('US_STATE_STORE_UNAVAILABLE', `etcd ${url} refused the watch: ${res.statusCode}`);
    }
    let pending = '';
    try {
      for await (const chunk of res.body) {
        pending += (chunk as Buffer).toString('utf8');
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line === '') continue;
          const r = (JSON.parse(line) as { result?: { events?: { type?: string; kv: RawKv }[]; canceled?: boolean; compact_revision?: string } }).result;
          if (!r) continue;
          if (r.canceled || Number(r.compact_revision ?? 0) > 0) return;
          if (r.events?.length) onEvents(r.events.map((e) => ({ type: e.type === 'DELETE' ? 'delete' : 'put', kv: kvOf(e.kv) })));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      throw e;
    }
  }

  /** The cluster's revision now (a linearizable read of nothing: it grows with every write anywhere). */
  async revision(): Promise<number> {
    const r = (await this.call('/v3/kv/range', { key: b64('\0'), count_only: true })) as { header?: { revision?: string } };
    return Number(r.header?.revision ?? 0);
  }

  async txn(compare: EtcdCompare[], success: EtcdOp[], failure: EtcdOp[] = []): Promise<EtcdTxnResult> {
    const r = (await this.call('/v3/kv/txn', { compare: compare.map(compareOf), success: success.map(opOf), failure: failure.map(opOf) })) as {
      header?: { revision?: string };
      succeeded?: boolean;
      responses?: { response_range?: { kvs?: RawKv[] } }[];
    };
    return {
      succeeded: r.succeeded === true,
      revision: Number(r.header?.revision ?? 0),
      ranges: (r.responses ?? []).map((x) => (x.response_range?.kvs ?? []).map(kvOf)),
    };
  }

  /** A new lease of `ttlSeconds`; its id. */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    const r = (await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) })) as { ID?: string; error?: string };
    if (!r.ID) throw new UnderstudyError('US_STATE_STORE_UNAVAILABLE', `etcd granted no lease${r.error ? `: ${r.error}` : ''}`);
    return r.ID;
  }

  /** Renews a lease; its remaining TTL in seconds, 0 when it is gone (expired or revoked). */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = (await this.call('/v3/lease/keepalive', { ID: id })) as { result?: { TTL?: string } };
    return Number(r.result?.TTL ?? 0);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id });
  }

  /**
   * One call, to the member that answered last, then to the others in turn, all within
   * `timeoutMs` (each member gets an equal share, at least 100 ms, of what is left: a
   * member that hangs cannot use up the time the others need).
   */
  private async call(path: string, body: unknown): Promise<unknown> {
    const errors: string[] = [];
    const deadline = performance.now() + this.timeoutMs;
    for (let k = 0; k < this.endpoints.length; k++) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const share = Math.ceil(Math.min(left, Math.max(100, left / (this.endpoints.length - k))));
      const i = (this.current + k) % this.endpoints.length;
      const url = this.endpoints[i]!;
      try {
        const res = await request(`${url}${path}`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
          dispatcher: this.dispatcher,
          headersTimeout: share,
          bodyTimeout: share,
          signal: AbortSignal.timeout(share),
        });
        const text = await res.body.text();
        if (res.statusCode >= 500) {
          errors.push(`${url}: ${res.statusCode} ${text.slice(0, 200)}`);
          continue;
        }
        let data: { error?: string; message?: string } & Record<string, unknown>;
        try {
          data = JSON.parse(text) as typeof data;
        } catch {
          errors.push(`${url}: not JSON: ${text.slice(0, 200)}`);
          continue;
        }
        if (res.statusCode >= 400) throw new UnderstudyError('US_BAD_REQUEST', `etcd ${url}${path}: ${data.message ?? data.error ?? res.statusCode}`);
        this.current = i;
        return data;
      } catch (e) {
        if (e instanceof UnderstudyError) throw e;
        const err = e as NodeJS.ErrnoException;
        errors.push(
          `${url}: ${err.name === 'TimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' ? `no answer within ${Math.round(share)} ms` : (err.code ?? err.message)}`,
        );
      }
    }
    throw new UnderstudyError('US_STATE_STORE_UNAVAILABLE', `no etcd member answered ${path}: ${errors.join('; ')}`);
  }
}
