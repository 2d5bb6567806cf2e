import net from 'node:net';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Throws US_APP_PORT_IN_USE when `address:port`, where a site's app must listen on
 * this host, is already taken: by a process started outside Understudy (an old app
 * left running), or by an app listening on all addresses (`0.0.0.0`), which on the
 * embedded default takes the port on every host's loopback address at once.
 * A bind test: the port is free when a socket can listen there (with SO_REUSEADDR, as
 * servers do, so a closed connection in TIME_WAIT does not count).
 */
export async function assertPortFree(host: string, site: string, listen: { address: string; port: number }): Promise<void> {
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    s.listen({ host: listen.address, port: listen.port, exclusive: true }, () => s.close(() => resolve(null)));
  });
  if (err?.code === 'EADDRINUSE') {
    throw new UnderstudyError(
      'US_APP_PORT_IN_USE',
      `${site} cannot start on ${host}: ${listen.address}:${listen.port} is already in use by another process. Stop it (see who listens: ss -ltnp 'sport = :${listen.port}'), or give the site another app.port. An app listening on all addresses (0.0.0.0) takes the port on every address of its machine: bind the app to {{host.address}}`,
      { site, host, address: listen.address, port: listen.port },
    );
  }
  // Any other error (the address is not on this machine…) is the app's to meet and report.
}
