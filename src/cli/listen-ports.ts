import fs from 'node:fs';
import type { Endpoint, UnderstudyConfig } from '../config/types.ts';
import { endpointToString } from '../config/types.ts';

/** Every address the parts of `up` listen on, with the config path that sets it. */
export function listenEndpoints(config: UnderstudyConfig): [string, Endpoint][] {
  return [
    ['controller.listen', config.controller.listen],
    ['director.listen', config.director.listen],
    ...Object.values(config.storage).map((s): [string, Endpoint] => [`storage.${s.name}.listen`, s.listen]),
    ...Object.values(config.sites).map((s): [string, Endpoint] => [`sites.${s.name}.front`, s.front]),
  ];
}

/**
 * This machine's range of ports for outgoing connections (Linux:
 * /proc/sys/net/ipv4/ip_local_port_range), or null where it cannot be read. A listener
 * on a port inside it can find the port taken, at any start, by some process's outgoing
 * connection: `up` then fails with US_PORT_IN_USE.
 */
export function ephemeralPortRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] | null {
  try {
    const [lo, hi] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(lo) && Number.isInteger(hi) ? [lo!, hi!] : null;
  } catch {
    return null;
  }
}

/** Whether `port` lies in the range (false when the range is unknown). */
export function inEphemeralRange(port: number, range: [number, number] | null): range is [number, number] {
  return range !== null && port >= range[0] && port <= range[1];
}

/** The warning for a listener inside the ephemeral range, or null. */
export function ephemeralWarning(file: string, where: string, e: Endpoint, range: [number, number] | null): string | null {
  if (!inEphemeralRange(e.port, range)) return null;
  return `${file}: ${where}: ${endpointToString(e)} is inside this machine's range of ports for outgoing connections (${range[0]}–${range[1]}): an outgoing connection can take it before understudy starts (US_PORT_IN_USE); choose a port below ${range[0]}`;
}
