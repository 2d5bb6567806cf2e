import type { Logger } from 'pino';
import type { ReaderShippingStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { ReplicationTuning } from './volume-shipper.ts';
import { VolumeShipper } from './volume-shipper.ts';
import { portionFilter } from './reader-portion.ts';
import { background } from '../shared/background.ts';

/**
 * The source side of reader copies: the storage processor holding a site's primary
 * volume ships the site's `volume.readonly` portion (reader-portion.ts) to the
 * storage system of each reader host, with the same machinery as the replica
 * (VolumeShipper: WAL frames for databases, files for the rest) on the protocol's
 * `reader` channel (reader-copies.ts on the other side). One shipper per
 * (site, destination storage); independent of the replica's shipper, so a reader
 * never slows or breaks the site's protection.
 *
 * Lifetime: in memory only. The controller asks for it (idempotent) when it adds a
 * reader and re-asks while the reader lives; every shipper of a site stops when its
 * volume stops being primary here (promote elsewhere, demote, restore), so a deposed
 * primary never feeds a reader.
 */
export interface ReaderShippingDeps {
  name: string;
  log: Logger;
  tuning?: ReplicationTuning;
  /** The primary volume's directory and epoch, or null when the site is not primary here. */
  primaryOf: (site: string) => { dir: string; epoch: number } | null;
  /** The site's `volume.readonly` from the config. */
  portionOf: (site: string) => string[];
}

export class ReaderShipping {
  private readonly shippers = new Map<string, Map<string, VolumeShipper>>();

  constructor(private readonly deps: ReaderShippingDeps) {}

  /** Starts shipping the site's read-only portion to `to` (idempotent for the same destination). */
  start(site: string, epoch: number, to: { name: string; url: string }): ReaderShippingStatus[] {
    const p = this.deps.primaryOf(site);
    if (!p)
      throw new UnderstudyError('US_VOLUME_ROLE', `volume ${site} on storage ${this.deps.name} is not a primary: only the primary's storage feeds readers`);
    if (epoch < p.epoch)
      throw new UnderstudyError(
        'US_STALE_EPOCH',
        `reader request for ${site} carries epoch ${epoch}, but storage ${this.deps.name} has seen epoch ${p.epoch}`,
        { epoch: p.epoch },
      );
    if (epoch > p.epoch)
      throw new UnderstudyError(
        'US_VOLUME_ROLE',
        `reader request for ${site} carries epoch ${epoch}, newer than the primary's ${p.epoch} here: this storage system has not seen the latest decision yet; the controller retries`,
      );
    const portion = this.deps.portionOf(site);
    if (portion.length === 0)
      throw new UnderstudyError(
        'US_NOT_CONFIGURED',
        `site ${site} has no volume.readonly portion: nothing a reader may serve; set sites.${site}.volume.readonly to add readers`,
      );
    let m = this.shippers.get(site);
    if (!m) {
      m = new Map();
      this.shippers.set(site, m);
    }
    const cur = m.get(to.name);
    if (!cur || cur.to.url !== to.url) {
      if (cur) background(cur.stop());
      const s = new VolumeShipper({
        site,
        volumeDir: p.dir,
        from: this.deps.name,
        to,
        epochOf: () => this.deps.primaryOf(site)?.epoch ?? epoch,
        logger: this.deps.log.child({ readerCopy: to.name }),
        include: portionFilter(portion),
        channel: 'reader',
        ...(this.deps.tuning ? { tuning: this.deps.tuning } : {}),
      });
      m.set(to.name, s);
      s.start();
      this.deps.log.info({ site, to: to.name, portion }, 'reader copy shipping started');
    }
    return this.status(site);
  }

  async stop(site: string, to: string): Promise<void> {
    const m = this.shippers.get(site);
    const s = m?.get(to);
    if (!s) return;
    m!.delete(to);
    await s.stop();
    this.deps.log.info({ site, to }, 'reader copy shipping stopped');
  }

  async stopAll(site: string): Promise<void> {
    const m = this.shippers.get(site);
    if (!m) return;
    this.shippers.delete(site);
    await Promise.all([...m.values()].map((s) => s.stop()));
  }

  async stopEverything(): Promise<void> {
    await Promise.all([...this.shippers.keys()].map((s) => this.stopAll(s)));
  }

  status(site: string): ReaderShippingStatus[] {
    return [...(this.shippers.get(site)?.values() ?? [])].map((s) => {
      const st = s.status();
      return { to: st.to, state: st.state, lagMs: st.lagMs, ...(st.lastError ? { lastError: st.lastError } : {}) };
    });
  }

  /**
   * Resolves once every reader copy of `site` (or only `to`) holds — published —
   * every transaction committed in the portion's databases before the call
   * (VolumeShipper.catchUp; reader-copies.ts acknowledges only after publishing).
   * US_TIMEOUT after timeoutMs. With no reader, resolves at once.
   */
  async catchUp(site: string, timeoutMs: number, to?: string): Promise<{ readers: string[] }> {
    const all = [...(this.shippers.get(site)?.values() ?? [])].filter((s) => to === undefined || s.to.name === to);
    if (to !== undefined && all.length === 0)
      throw new UnderstudyError('US_NOT_FOUND', `storage ${this.deps.name} does not ship ${site} to a reader copy on ${to}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(
          all.map(async (s) => {
            await s.catchUp();
            await s.filesCaughtUp();
          }),
        ),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new UnderstudyError('US_TIMEOUT', `reader copies of ${site} (${all.map((s) => s.to.name).join(', ')}) did not catch up within ${timeoutMs} ms`),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return { readers: all.map((s) => s.to.name) };
  }
}
