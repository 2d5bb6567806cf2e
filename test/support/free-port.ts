import net from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the kernel chose it for a listener
 * that was closed at once). For tests and benches that start servers in one process; the
 * e2e clusters take ports from their slot (slots.ts) instead.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
