import { pino } from 'pino';

/**
 * The part of a logger the director uses; pino's Logger satisfies it. The request
 * path logs nothing at info level: only route changes, failures and lifecycle.
 */
export interface DirectorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export function defaultLogger(): DirectorLogger {
  return pino({ name: 'director', level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' });
}

export const silentLogger: DirectorLogger = { debug() {}, info() {}, warn() {}, error() {} };
