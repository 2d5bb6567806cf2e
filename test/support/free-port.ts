import net from 'node:net';
import { claimSlot } from './slots.ts';

/**
 * A TCP port on 127.0.0.1 that is free now, for tests and benches that start servers in one
 * process (the e2e clusters take whole slots instead, cluster.ts).
 *
 * Ports come from a test slot this process holds (20000 + slot × 100, slots.ts), not from the
 * kernel: a port the kernel picks for a listener lies in the ephemeral range, and between its
 * release and the test's own listen() another process's outgoing connection can take it as its
 * source port (EADDRINUSE, seen in a clean-clone run). Ports below the ephemeral range are
 * never given to outgoing connections, and a slot is never shared between test processes; each
 * port is still tried with a listener before it is handed out, and none is handed out twice.
 */
const PORTS_PER_SLOT = 100;

let base = -1;
let next = PORTS_PER_SLOT;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (;;) {
    if (next >= PORTS_PER_SLOT) {
      base = 20000 + claimSlot() * PORTS_PER_SLOT;
      next = 0;
    }
    const port = base + next++;
    if (await canListen(port)) return port;
  }
}
