import type { RenderedRule } from '../transform/render-rules.ts';
import type { UnderstudyConfig } from '../config/types.ts';
import { endpointUrl } from '../config/types.ts';
import type {
  AgentStatus,
  FencingView,
  PromoteResponse,
  RestoreRequest,
  RestoreResponse,
  VaultPoint,
  RouteTable,
  SiteStats,
  StartAppRequest,
  StorageStatus,
  TransformResponse,
  VolumeStatus,
} from '../shared/contracts.ts';
import { callJson, type JsonCallOptions } from '../shared/http-client.ts';
import { FENCING_HEADER } from '../shared/fencing.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { DirectorCounters, agreedRoutes, firstAccepted, mergedStats } from './director-set.ts';

/** Typed calls from the controller to the other parts (contracts in shared/contracts.ts). */
export class PartClients {
  /** Several directors' counters as one that only grows (director-set.ts). */
  private readonly directorCounters = new DirectorCounters();

  /**
   * @param fencingToken the token of the controller's term (leader-lease.ts) while it has
   *   one: sent on every call, so that parts refuse this controller once a newer one led.
   */
  constructor(
    private readonly config: UnderstudyConfig,
    private readonly fencingToken: () => number | null = () => null,
    /** True where controllers elect a leader: a command without a term's token is never sent. */
    private readonly leased = false,
  ) {}

  /**
   * A call to a part, with the fencing token of the controller's term when it has one
   * (fencing.ts). Where controllers elect a leader, a command (anything but a GET) from
   * a controller whose term has ended is refused here, before it is sent: a part that
   * has seen no token yet would otherwise run it.
   */
  call<T = unknown>(url: string, opts: JsonCallOptions = {}): Promise<T> {
    const token = this.fencingToken();
    if (token === null && this.leased && (opts.method ?? (opts.body === undefined && opts.raw === undefined ? 'GET' : 'POST')) !== 'GET') {
      return Promise.reject(
        new UnderstudyError('US_STALE_LEADER', `this controller does not lead (no term of the leader lease): it sends no command (${url})`),
      );
    }
    return callJson<T>(url, token === null ? opts : { ...opts, headers: { ...opts.headers, [FENCING_HEADER]: String(token) } });
  }

  storageUrl(storage: string): string {
    const s = this.config.storage[storage];
    if (!s) throw new UnderstudyError('US_NOT_FOUND', `unknown storage system ${storage}: the config has ${Object.keys(this.config.storage).join(', ')}`);
    return endpointUrl(s.listen);
  }

  agentUrl(host: string): string {
    const h = this.config.hosts[host];
    if (!h) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: the config has ${Object.keys(this.config.hosts).join(', ')}`);
    return `http://${h.address}:${h.agentPort}`;
  }

  /** Every director's admin URL: `director.members`, else the one at `director.listen`. */
  directorUrls(): string[] {
    const members = Object.values(this.config.director.members);
    return members.length > 0 ? members.map(endpointUrl) : [endpointUrl(this.config.director.listen)];
  }

  /** The first director (rehearsal fronts live on it alone). */
  directorUrl(): string {
    return this.directorUrls()[0]!;
  }

  // storage
  storageStatus(storage: string, timeoutMs = 1000): Promise<StorageStatus> {
    return this.call(`${this.storageUrl(storage)}/v1/status`, { timeoutMs });
  }
  volume(storage: string, site: string): Promise<VolumeStatus> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}`, { timeoutMs: 2000 });
  }
  initVolume(storage: string, site: string, epoch: number, seed?: string): Promise<VolumeStatus> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/init`, { body: { epoch, seed }, timeoutMs: 30_000 });
  }
  replicate(storage: string, site: string, epoch: number, to: string): Promise<unknown> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/replicate`, {
      body: { epoch, to: { name: to, url: this.storageUrl(to) } },
      timeoutMs: 10_000,
    });
  }
  promote(storage: string, site: string, epoch: number): Promise<PromoteResponse> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/promote`, { body: { epoch }, timeoutMs: 30_000 });
  }
  /** Waits until the replica has confirmed everything committed on this primary volume so far. */
  confirm(storage: string, site: string, timeoutMs: number, opts: { callTimeoutMs?: number } = {}): Promise<unknown> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/confirm`, { body: { timeoutMs }, timeoutMs: opts.callTimeoutMs ?? timeoutMs + 2000 });
  }
  restore(storage: string, site: string, body: RestoreRequest): Promise<RestoreResponse> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/restore`, { body, timeoutMs: 600_000 });
  }
  vaultPoints(vault: string, site: string): Promise<VaultPoint[]> {
    return this.call(`${this.storageUrl(vault)}/v1/vault/${site}/points`, { timeoutMs: 5000 });
  }
  demote(storage: string, site: string, epoch: number): Promise<unknown> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/demote`, { body: { epoch }, timeoutMs: 2000 });
  }
  transform(storage: string, site: string, epoch: number, rules: RenderedRule[]): Promise<TransformResponse> {
    return this.call(`${this.storageUrl(storage)}/v1/volumes/${site}/transform`, { body: { epoch, rules }, timeoutMs: 10_000 });
  }

  // agents
  agentStatus(host: string, timeoutMs = 500): Promise<AgentStatus> {
    return this.call(`${this.agentUrl(host)}/v1/status`, { timeoutMs });
  }
  startApp(host: string, site: string, req: StartAppRequest): Promise<AgentStatus> {
    return this.call(`${this.agentUrl(host)}/v1/sites/${site}`, { method: 'PUT', body: req, timeoutMs: 5000 });
  }
  stopApp(host: string, site: string): Promise<AgentStatus> {
    return this.call(`${this.agentUrl(host)}/v1/sites/${site}`, { method: 'DELETE', timeoutMs: 5000 });
  }

  // director (several: director-set.ts)
  /** Sends a route to every director; done once one has it. A stale-epoch refusal from any is thrown. */
  async putRoute(route: RouteTable): Promise<unknown> {
    const urls = this.directorUrls();
    const send = (u: string) => this.call(`${u}/v1/routes/${route.site}`, { method: 'PUT', body: route, timeoutMs: 2000 });
    if (urls.length === 1) return send(urls[0]!);
    return firstAccepted(await Promise.allSettled(urls.map(send)));
  }
  /** The routes in force: with several directors, those every director that answers holds the same. */
  async routes(): Promise<RouteTable[]> {
    const get = async (u: string): Promise<RouteTable[]> => {
      const r = await this.call<{ routes: RouteTable[] } | RouteTable[]>(`${u}/v1/routes`, { timeoutMs: 1000 });
      return Array.isArray(r) ? r : r.routes;
    };
    const urls = this.directorUrls();
    if (urls.length === 1) return get(urls[0]!);
    return agreedRoutes(await Promise.allSettled(urls.map(get)));
  }
  /** The traffic of every director that answers, as one; and each one's fencing report (named `director NAME`, or `the director`). */
  async stats(): Promise<{ sites: SiteStats[]; fencing: { part: string; view: FencingView }[] }> {
    const names = Object.keys(this.config.director.members);
    const fencing: { part: string; view: FencingView }[] = [];
    const get = async (u: string, i: number): Promise<SiteStats[]> => {
      const r = await this.call<{ sites: SiteStats[]; fencing?: FencingView }>(`${u}/v1/stats`, { timeoutMs: 1000 });
      if (r.fencing) fencing.push({ part: names.length > 0 ? `director ${names[i]}` : 'the director', view: r.fencing });
      return r.sites;
    };
    const urls = this.directorUrls();
    if (urls.length === 1) return { sites: await get(urls[0]!, 0), fencing };
    const results = await Promise.allSettled(urls.map(get));
    if (!results.some((r) => r.status === 'fulfilled')) return { sites: mergedStats(results), fencing }; // throws: none answered
    const answers = new Map(results.map((r, i) => [urls[i]!, r.status === 'fulfilled' ? r.value : null]));
    return { sites: this.directorCounters.merge(answers), fencing };
  }
}
