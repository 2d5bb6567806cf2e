import { request } from 'undici';
import type { PointManifest, VaultHasResponse, VaultPoint, VerificationResult } from '../../shared/contracts.ts';
import { UnderstudyError, errorFromReply, isUnderstudyError } from '../../shared/errors.ts';
import { clusterDispatcher } from '../../shared/cluster-dispatcher.ts';
import { callJson } from '../../shared/http-client.ts';

/**
 * The vault's HTTP API as seen from another storage processor (a primary taking a
 * restore point, a target restoring one). JSON calls go through callJson; chunks
 * travel as raw bytes (application/octet-stream) — base64 would add a third.
 * Chunks read from the vault are hashed by their user (rebuild-point.ts): the
 * network is not trusted more than the disk.
 */

export class VaultClient {
  private readonly base: string;

  constructor(
    url: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.base = url.replace(/\/+$/, '');
  }

  get url(): string {
    return this.base;
  }

  async missing(site: string, hashes: string[]): Promise<string[]> {
    const r = await callJson<VaultHasResponse>(`${this.base}/v1/vault/${encodeURIComponent(site)}/has`, { body: { hashes }, timeoutMs: this.timeoutMs });
    return r.missing;
  }

  async putChunk(hash: string, data: Buffer): Promise<void> {
    await this.raw('PUT', `/v1/vault/chunks/${hash}`, data);
  }

  /** The chunk's bytes as the vault sent them, or null when it does not hold it. Not checked here: rebuild-point.ts hashes every chunk it uses. */
  async getChunk(hash: string): Promise<Buffer | null> {
    try {
      return await this.raw('GET', `/v1/vault/chunks/${hash}`);
    } catch (e) {
      if (isUnderstudyError(e) && e.code === 'US_NOT_FOUND') return null;
      throw e;
    }
  }

  commit(site: string, manifest: PointManifest, keep: number): Promise<VaultPoint> {
    return callJson<VaultPoint>(`${this.base}/v1/vault/${encodeURIComponent(site)}/points`, { body: { manifest, keep }, timeoutMs: this.timeoutMs });
  }

  /** Newest first. */
  points(site: string): Promise<VaultPoint[]> {
    return callJson<VaultPoint[]>(`${this.base}/v1/vault/${encodeURIComponent(site)}/points`, { timeoutMs: this.timeoutMs });
  }

  manifest(site: string, id: string): Promise<PointManifest> {
    return callJson<PointManifest>(`${this.base}/v1/vault/${encodeURIComponent(site)}/points/${encodeURIComponent(id)}`, { timeoutMs: this.timeoutMs });
  }

  verifyPoint(site: string, id: string): Promise<VerificationResult> {
    return callJson<VerificationResult>(`${this.base}/v1/vault/${encodeURIComponent(site)}/points/${encodeURIComponent(id)}/verify`, {
      method: 'POST',
      timeoutMs: 10 * this.timeoutMs,
    });
  }

  private async raw(method: 'GET' | 'PUT', p: string, body?: Buffer): Promise<Buffer> {
    const url = `${this.base}${p}`;
    let res;
    try {
      res = await request(url, {
        method,
        ...(body ? { body, headers: { 'content-type': 'application/octet-stream' } } : {}),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        dispatcher: clusterDispatcher(),
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new UnderstudyError('US_UNREACHABLE', `cannot reach the vault at ${url}: ${err.code ?? err.message}`);
    }
    const buf = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode >= 400) {
      let err: { code?: unknown; message?: unknown; details?: unknown } | undefined;
      try {
        err = (JSON.parse(buf.toString('utf8')) as { error?: typeof err }).error;
      } catch {
        /* not JSON */
      }
      throw errorFromReply(err, `${url} answered ${res.statusCode}`);
    }
    return buf;
  }
}
