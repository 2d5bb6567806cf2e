import type http from 'node:http';
import pino from 'pino';
import { endpointToString, type UnderstudyConfig } from '../config/types.ts';
import { startApiServer, type ControllerRole } from '../api/api-server.ts';
import { Notifier } from '../notify/notifier.ts';
import { EtcdClient } from '../state/etcd-client.ts';
import { EtcdState } from '../state/etcd-state.ts';
import { StateStore } from '../state/state-store.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { background } from '../shared/background.ts';
import { createPartServer, partSecurity } from '../shared/cluster-transport.ts';
import { listen } from '../shared/http-json.ts';
import { Controller } from './controller.ts';
import { LeaderLease } from './leader-lease.ts';

/**
 * One of several controllers that share their state in etcd and elect a leader
 * (`controller.state.etcd`), as Patroni runs a database: every controller runs the
 * lease loop (leader-lease.ts); the one that holds the leader key acts, the others
 * follow.
 *
 * - **A term.** Becoming leader starts a term: a fresh view of the state read from
 *   etcd (never this controller's older view), written back to etcd under the term's
 *   token (etcd-state.ts), and a Controller that resumes every runbook left running, at
 *   its journaled step. Its commands carry the token; parts refuse a lower one.
 * - **The end of a term** (the lease not renewed in time, the key gone, etcd refusing a
 *   write) stops the Controller at once: no timer, watch or runbook step starts after
 *   it, and a command still being prepared is refused before it is sent (clients.ts,
 *   host-relays.ts). The controller then follows.
 * - **A follower** keeps a view of the state, read whole and then kept by etcd's watch,
 *   and serves the read API from it; it answers every command with US_NOT_LEADER,
 *   naming the leader.
 * - **etcd without quorum**: nobody can renew, so nobody acts; the sites keep serving
 *   (the director and the hosts need no controller). The status says since when; the
 *   next leader records the gap as an event.
 */
export class ClusteredController {
  private readonly client: EtcdClient;
  private readonly lease: LeaderLease;
  private readonly config: UnderstudyConfig;
  private readonly leaderKey: string;
  readonly log: pino.Logger;
  private term: Term | null = null;
  /** Role changes, one at a time, in order. */
  private changes: Promise<void> = Promise.resolve();
  private unavailable: { since: number; error: string } | null = null;
  /** The last time etcd did not answer, to record as an event by the next term. */
  private gap: { from: number; to: number; error: string } | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  /** The leader this controller last saw (for its log). */
  private knownLeader: string | null | undefined = undefined;
  private front: http.Server | null = null;
  private stopped = false;

  constructor(
    config: UnderstudyConfig,
    readonly name: string,
    logger?: pino.Logger,
  ) {
    const etcd = config.controller.etcd;
    if (!etcd) throw new UnderstudyError('US_CONFIG_INVALID', 'controller.state has no etcd: a single controller keeps its state in its directory');
    const member = config.controller.members[name];
    if (Object.keys(config.controller.members).length > 0 && !member)
      throw new UnderstudyError(
        'US_CONFIG_INVALID',
        `no controller ${name} in controller.members: it has ${Object.keys(config.controller.members).join(', ')}`,
      );
    // This controller's API listens on its own address.
    this.config = member ? { ...config, controller: { ...config.controller, listen: member } } : config;
    this.log = logger ?? pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.client = new EtcdClient(etcd.endpoints, etcd.retryMs);
    this.leaderKey = `${etcd.prefix}/leader`;
    this.lease = new LeaderLease({
      client: this.client,
      key: this.leaderKey,
      name,
      ttlMs: etcd.ttlMs,
      loopMs: etcd.loopMs,
      retryMs: etcd.retryMs,
      onChange: (leader, token) => {
        if (leader && token !== null) this.change(() => this.lead(token));
        else {
          // Now, not after the role changes queued before: no step of this term may start from here.
          this.halt();
          this.change(() => this.follow());
        }
      },
    });
  }

  /** What this controller is now, for the status and a follower's refusals. */
  role(): ControllerRole {
    const v = this.lease.status();
    const leader = this.term?.leading ? this.name : v.role === 'follower' ? v.leader : null;
    const api = leader !== null ? this.config.controller.members[leader] : undefined;
    return {
      name: this.name,
      // `leader` while this controller acts (its term not halted), whatever the last etcd call said.
      role: this.term?.leading ? 'leader' : v.role === 'unknown' ? 'unknown' : 'follower',
      leader,
      leaderApi: api ? endpointToString(api) : null,
      token: this.term?.leading ? this.term.token : v.role === 'follower' ? v.token : null,
      storeUnavailable: this.unavailable,
    };
  }

  async start(): Promise<void> {
    // One listener for every term: each request goes to the API of the term it arrives in
    // (a term's API is bound to that term's store and controller).
    const l = this.config.controller.listen;
    this.front = createPartServer(partSecurity(this.config, 'controller'), (req, res) => {
      const server = this.term?.server;
      if (server) {
        server.emit('request', req, res);
        return;
      }
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { code: 'US_NOT_LEADER', message: `controller ${this.name} is changing its role; try again` } }));
    });
    await listen(this.front, l.host, l.port);
    await this.follow();
    this.lease.start();
    // etcd answering or not, as the lease loop sees it: for the status, and the gap the next leader records.
    this.watchTimer = setInterval(() => this.noteStore(), this.config.controller.etcd!.loopMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchTimer) clearInterval(this.watchTimer);
    await this.changes;
    await this.endTerm();
    await this.lease.stop(true);
    await this.client.close();
    this.front?.close();
    this.front?.closeAllConnections();
  }

  private noteStore(): void {
    const v = this.lease.status();
    if (v.role === 'unknown') {
      if (!this.unavailable)
        this.log.warn(
          { controller: this.name, err: v.error, endpoints: this.config.controller.etcd!.endpoints },
          'etcd does not answer: this controller can neither lead nor follow, and no controller acts without a quorum; check the members (etcdctl endpoint health)',
        );
      this.unavailable ??= { since: v.since, error: v.error };
      this.unavailable.error = v.error;
      return;
    }
    if (this.unavailable) {
      this.gap = { from: this.unavailable.since, to: Date.now(), error: this.unavailable.error };
      this.log.info({ controller: this.name, ms: this.gap.to - this.gap.from }, 'etcd answers again');
      this.unavailable = null;
    }
    const leader = v.role === 'leader' ? this.name : v.leader;
    if (leader !== this.knownLeader) {
      this.knownLeader = leader;
      if (leader !== this.name) this.log.info({ controller: this.name, leader }, leader ? `this controller follows ${leader}` : 'no controller leads now');
    }
  }

  private change(fn: () => Promise<void>): void {
    this.changes = this.changes.then(fn).catch((e: unknown) => {
      this.log.error({ err: (e as Error).message }, 'changing the controller role failed');
    });
  }

  /** This controller leads with `token`: a term begins (see the class comment). */
  private async lead(token: number): Promise<void> {
    if (this.stopped) return;
    this.noteStore(); // a gap that just ended is recorded by this term
    await this.endTerm();
    const etcd = this.config.controller.etcd!;
    const store = new StateStore({ mirrored: true });
    // The term's token, and only while this term lasts: a later term of this same controller has another.
    const fencingToken = (): number | null => (this.lease.fencingToken() === token && this.term?.store === store ? token : null);
    const state = new EtcdState(store, {
      client: this.client,
      prefix: etcd.prefix,
      guard: { leaderKey: this.leaderKey, token },
      onRefused: () => {
        this.log.warn({ token }, 'etcd refused a state write: another controller leads; this one stops acting');
        this.halt();
        this.change(() => this.follow());
      },
      onError: (e) => this.log.warn({ err: e.message }, 'the state could not be written to etcd yet; trying again'),
    });
    try {
      await state.load();
    } catch (e) {
      // A leader that cannot read the state cannot act: it gives the lead up for another.
      store.close();
      this.log.error({ err: (e as Error).message }, 'the state could not be read from etcd; this controller gives the lead up');
      await this.lease.resign(); // the lease says so: this controller follows (onChange)
      return;
    }
    if (this.lease.fencingToken() !== token) {
      store.close();
      return; // the term ended while the state was read
    }
    state.start();
    const controller = new Controller(this.config, this.log, { store, fencingToken });
    const notifier = new Notifier(this.config, store, this.log);
    this.term = { leading: true, token, store, state, controller, notifier, server: null, following: null };
    this.term.server = await startApiServer(controller, { notifier, role: () => this.role(), listen: false });
    this.log.info({ controller: this.name, token }, 'this controller leads');
    store.addEvent({
      site: null,
      host: null,
      kind: 'controller-leads',
      message: `controller ${this.name} leads (term ${token})`,
      data: { controller: this.name, token },
    });
    if (this.gap) {
      const g = this.gap;
      this.gap = null;
      store.addEvent({
        site: null,
        host: null,
        kind: 'state-store-unavailable',
        message: `etcd did not answer controller ${this.name} from ${new Date(g.from).toISOString()} to ${new Date(g.to).toISOString()} (${g.error}): no automatic action ran from this controller then`,
        data: { from: g.from, to: g.to, error: g.error },
      });
    }
    notifier.start();
    // Not awaited here: a term that ends while its sites start must be able to end at once.
    controller.start().catch((e: Error) => {
      if (this.term?.controller !== controller) return; // the term ended meanwhile: its start was cut short
      this.log.error({ err: e.message }, 'the leading controller could not start the sites; it gives the lead up');
      store.addEvent({
        site: null,
        host: null,
        kind: 'controller-start-failed',
        message: `controller ${this.name} could not start: ${e.message}`,
        data: { controller: this.name, error: e.message },
      });
      this.change(async () => {
        await store.flush().catch(() => undefined);
        this.halt();
        await this.lease.resign(); // the lease says so: this controller follows (onChange)
      });
    });
  }

  /** Ends the leading term's actions at once (the rest of endTerm follows in order). */
  private halt(t = this.term): void {
    if (!t?.leading) return;
    t.leading = false;
    t.state.close();
    t.notifier?.stop();
    background(t.controller.stop(), () => undefined);
    this.log.warn({ controller: this.name }, 'this controller no longer leads: it stopped acting');
  }

  /** This controller follows (or does not know who leads): no term, a read-only view. */
  private async follow(): Promise<void> {
    await this.endTerm();
    if (this.stopped) return;
    const store = new StateStore({ mirrored: true });
    const state = new EtcdState(store, { client: this.client, prefix: this.config.controller.etcd!.prefix });
    const controller = new Controller(this.config, this.log, { store, fencingToken: () => null });
    const following = new AbortController();
    const term: Term = { leading: false, token: null, store, state, controller, notifier: null, server: null, following };
    term.server = await startApiServer(controller, { role: () => this.role(), listen: false });
    this.term = term;
    // The view: read whole, then kept by etcd's watch (read whole again when the watch ends).
    background(state.follow(following.signal, this.config.controller.etcd!.loopMs), (e) =>
      this.log.warn({ err: (e as Error).message }, 'the follower view stopped following etcd'),
    );
  }

  private async endTerm(): Promise<void> {
    const t = this.term;
    if (!t) return;
    this.term = null;
    t.following?.abort();
    if (t.leading) this.halt(t);
    else {
      t.state.close();
      await t.controller.stop();
    }
  }
}

interface Term {
  leading: boolean;
  token: number | null;
  store: StateStore;
  state: EtcdState;
  controller: Controller;
  notifier: Notifier | null;
  server: http.Server | null;
  /** A follower's watch of etcd, aborted when the term ends. */
  following: AbortController | null;
}

/** `understudy controller --name NAME -c FILE` where the state is in etcd: until SIGTERM/SIGINT. */
export async function runClusteredController(config: UnderstudyConfig, name: string): Promise<void> {
  const c = new ClusteredController(config, name);
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    background(
      c.stop().then(() => process.exit(0)),
      (err) => {
        process.stderr.write(`understudy controller: stopping failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await c.start();
}
