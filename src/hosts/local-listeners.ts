import fs from 'node:fs';
import net from 'node:net';

/**
 * Who answers a connection to an address and port: the process that owns the
 * listening socket, named as Understudy knows it.
 *
 * - `host`: a process of that host (its agent's process group: the agent or an app it started).
 * - `outside`: a process that is not part of any host Understudy runs (`process`
 *   describes it for the operator when it can be read, e.g. `pid 812 (node rogue.js)`).
 * - `nobody`: nothing listens there now.
 * - `unknown`: this driver cannot tell (no /proc); the caller assumes the host
 *   whose address it called.
 *
 * `bound` is the address the socket is bound to and `allAddresses` whether that is
 * a wildcard (`0.0.0.0`, `::`): on the embedded default every host's address is on
 * the same machine, so such a socket answers on every host's address.
 */
export type ListenerOwner =
  | { kind: 'host'; host: string; bound: string; allAddresses: boolean }
  | { kind: 'outside'; bound: string; allAddresses: boolean; process: string | null }
  | { kind: 'nobody' }
  | { kind: 'unknown'; why: string };

export interface ListenerLookup {
  whoListens(address: string, port: number): ListenerOwner;
}

interface Listening {
  inode: number;
  bound: string;
  allAddresses: boolean;
  exact: boolean;
  v6: boolean;
}

const HAS_PROC = fs.existsSync('/proc/net/tcp');

/**
 * The `local` host driver's answer (embedded hosts: process groups on this
 * machine, one network stack). Reads the kernel's table of listening TCP sockets
 * (/proc/net/tcp, /proc/net/tcp6), picks the socket a connection to the address
 * would reach (bound to that address, else to all addresses), and finds the
 * process that holds it (/proc/PID/fd → `socket:[INODE]`), then the host whose
 * process group that process is in. Only this driver knows pids and groups; what
 * it returns names hosts.
 *
 * Cost: the socket table is read at most once per `tableTtlMs` (two file reads),
 * plus a scan of /proc the first time a socket is seen (the owner of an inode and
 * the descriptor it holds it by are remembered while the socket lives, and checked
 * with one readlink per lookup).
 */
export class LocalListeners implements ListenerLookup {
  /** Socket inode → the process (and its descriptor) that held it when last looked up. */
  private readonly owners = new Map<number, Holder | null>();
  /** The machine's listening sockets by port, as last read, and when (performance.now()). */
  private table: { at: number; byPort: Map<number, TableEntry[]> } | null = null;
  /** Socket inode → the process that held it, for every socket of the last scan of /proc. */
  private holders: { at: number; byInode: Map<number, Holder> } | null = null;

  /**
   * @param groups every host and the process group of its agent (null when off).
   * @param tableTtlMs how long one read of the socket table answers: a pass over many
   *   sites asks once per site, and each read parses every socket of the machine.
   */
  constructor(
    private readonly groups: () => { host: string; group: number | null }[],
    private readonly tableTtlMs = 200,
  ) {}

  /**
   * The process holding the socket, or null when none can be read (another user's, or
   * gone). Finding it means reading every file descriptor of every process, so one scan
   * indexes every socket it sees: the sockets of many sites that start together are
   * found by one scan, not one each. A socket the index does not know (newer than the
   * scan) has the machine scanned again, at most once per `tableTtlMs`.
   */
  private findHolder(inode: number, reread: boolean): Holder | null {
    const now = performance.now();
    const fresh = this.holders !== null && now - this.holders.at <= this.tableTtlMs;
    if (reread || (!fresh && !this.holders?.byInode.has(inode))) this.holders = { at: now, byInode: socketHolders() };
    return this.holders?.byInode.get(inode) ?? null;
  }

  /**
   * Within `tableTtlMs` a socket can have closed (a host just fenced) and another opened
   * on the same port (the new primary's app), so an `outside` answer drawn from the cached
   * table and index stands only when the process it names holds that socket now: while a
   * process holds a listening socket, no other socket binds that address and port (short
   * of SO_REUSEPORT), so the cache's age does not matter. A socket whose holder is gone
   * means the table is older than a close: the owner is looked up on a fresh table and a
   * fresh scan of every process. Only then: a pass over a thousand sites whose apps one
   * outside process serves must not scan every process a thousand times. The cheap
   * answers (`nobody`, a host) come from the cache.
   */
  whoListens(address: string, port: number): ListenerOwner {
    const first = this.lookup(address, port, false);
    return first.kind === 'outside' && first.process === null ? this.lookup(address, port, true) : first;
  }

  private lookup(address: string, port: number, reread: boolean): ListenerOwner {
    if (!HAS_PROC) return { kind: 'unknown', why: 'no /proc to read listening sockets from' };
    let sockets: Listening[];
    try {
      const now = performance.now();
      if (reread || this.table === null || now - this.table.at > this.tableTtlMs) {
        this.table = { at: now, byPort: readListeningTable() };
        const live = new Set<number>();
        for (const list of this.table.byPort.values()) for (const e of list) live.add(e.inode);
        for (const inode of this.owners.keys()) if (!live.has(inode)) this.owners.delete(inode);
      }
      sockets = listeningOn(this.table.byPort, address, port);
    } catch (e) {
      return { kind: 'unknown', why: `cannot read the socket table: ${(e as Error).message}` };
    }
    // Linux prefers the socket bound to the address; then IPv4 over IPv6 (dual-stack) sockets.
    const s = sockets.sort((a, b) => Number(b.exact) - Number(a.exact) || Number(a.v6) - Number(b.v6))[0];
    if (!s) return { kind: 'nobody' };
    let holder = this.owners.get(s.inode);
    if (holder === undefined || holder === null || !holds(holder, s.inode)) {
      holder = this.findHolder(s.inode, reread);
      // An index older than the socket's last close names a holder that is gone.
      if (holder !== null && !holds(holder, s.inode)) holder = null;
      this.owners.set(s.inode, holder);
    }
    const pid = holder?.pid ?? null;
    if (pid !== null) {
      const group = processGroup(pid);
      const host = this.groups().find((g) => g.group !== null && g.group === group)?.host;
      if (host) return { kind: 'host', host, bound: s.bound, allAddresses: s.allAddresses };
    }
    return { kind: 'outside', bound: s.bound, allAddresses: s.allAddresses, process: pid === null ? null : describe(pid) };
  }
}

/** A listening socket of the machine: where it is bound, and its inode. */
interface TableEntry {
  inode: number;
  bound: string;
  v6: boolean;
}

/** Every listening TCP socket of the machine (/proc/net/tcp, /proc/net/tcp6), by port. */
function readListeningTable(): Map<number, TableEntry[]> {
  const byPort = new Map<number, TableEntry[]>();
  for (const [file, v6] of [
    ['/proc/net/tcp', false],
    ['/proc/net/tcp6', true],
  ] as const) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6
    }
    const lines = text.split('\n');
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i]!.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A: LISTEN
      const [hexAddr, hexPort] = f[1]!.split(':');
      const port = parseInt(hexPort!, 16);
      const entry = { inode: Number(f[9]), bound: v6 ? ipv6Of(hexAddr!) : ipv4Of(hexAddr!), v6 };
      const list = byPort.get(port);
      if (list === undefined) byPort.set(port, [entry]);
      else list.push(entry);
    }
  }
  return byPort;
}

/** The listening sockets a connection to address:port could reach (bound to it, or to all addresses). */
function listeningOn(table: ReadonlyMap<number, TableEntry[]>, address: string, port: number): Listening[] {
  const v4 = net.isIPv4(address);
  const out: Listening[] = [];
  for (const { inode, bound, v6 } of table.get(port) ?? []) {
    const mapped = v6 && bound.startsWith('::ffff:') ? bound.slice(7) : null;
    const allAddresses = bound === '0.0.0.0' || bound === '::';
    const exact = bound === address || (v4 && mapped === address);
    // A wildcard IPv6 socket takes IPv4 connections too (dual stack, Node's default for `::`).
    if (exact || (allAddresses && (v6 || v4))) out.push({ inode, bound, allAddresses, exact, v6 });
  }
  return out;
}

function ipv4Of(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function ipv6Of(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.every((b) => b === 0)) return '::';
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 && bytes[11] === 255) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

function pids(): number[] {
  return fs
    .readdirSync('/proc')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** A process holding a socket, and the descriptor it holds it by. */
interface Holder {
  pid: number;
  fd: string;
}

/** Every socket of every process this user may read: inode → its holder (the first found). */
function socketHolders(): Map<number, Holder> {
  const out = new Map<number, Holder>();
  for (const pid of pids()) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // another user's, or gone
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue; // closed meanwhile
      }
      if (!link.startsWith('socket:[')) continue;
      const inode = Number(link.slice(8, -1));
      if (!out.has(inode)) out.set(inode, { pid, fd });
    }
  }
  return out;
}

/** The holder still holds the socket by that descriptor (one readlink, whatever the process's number of descriptors). */
function holds(h: Holder, inode: number): boolean {
  try {
    return fs.readlinkSync(`/proc/${h.pid}/fd/${h.fd}`) === `socket:[${inode}]`;
  } catch {
    return false; // gone, or closed
  }
}

function processGroup(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return null;
  }
}

function describe(pid: number): string {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return `pid ${pid} (${cmd.length > 120 ? `${cmd.slice(0, 117)}...` : cmd})`;
  } catch {
    return `pid ${pid}`;
  }
}
