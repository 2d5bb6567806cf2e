import { isIP } from 'node:net';
import type { Endpoint } from './types.ts';

/**
 * Addresses in the config: "host:port" where host is an IPv4 address, or
 * "[v6]:port" for IPv6 ("[::1]:7070"). Host names are refused: every part binds
 * to and compares these addresses, and a name would hide two parts on one socket.
 */

export const ENDPOINT_MESSAGE = 'must be an address like 127.0.0.1:8080 (IPv4, or [::1]:8080)';
export const ADDRESS_MESSAGE = 'must be an IP address like 127.0.1.1';

/** `controller.listen` when the config does not set it (also where the CLI looks for the API). */
export const DEFAULT_CONTROLLER_LISTEN: Endpoint = Object.freeze({ host: '127.0.0.1', port: 7070 });

/** Parses "host:port"; undefined when it is not one. */
export function parseEndpoint(text: unknown): Endpoint | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const wantV6 = m[1] !== undefined;
  if (isIP(host) !== (wantV6 ? 6 : 4)) return undefined;
  const port = Number(m[3]);
  if (!isPort(port)) return undefined;
  return { host, port };
}

/** A TCP port a server can listen on (1–65535). */
export function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Whether `text` is a bare IPv4 or IPv6 address. */
export function isAddress(text: unknown): text is string {
  return typeof text === 'string' && isIP(text) !== 0;
}

/** Whether `address` is loopback (127.0.0.0/8 or ::1): reachable only from this machine. */
export function isLoopbackAddress(address: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address) || address === '::1';
}
