import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { request } from 'undici';
import type { NotifyTarget, SecretSource } from '../config/types.ts';
import type { EventRecord } from '../state/state-store.ts';

/** What a delivery sends: the event, plus which target and attempt this is (for the receiver's logs). */
export interface NotificationBody extends EventRecord {
  target: string;
  attempt: number;
}

/** A failed delivery, said without any header value (secrets never reach a log or an event). */
export class DeliveryError extends Error {}

/** Reads a secret where the config says it is; a missing one is a failed delivery that names where it looked. */
export function readSecret(s: SecretSource): string {
  if ('value' in s) return s.value;
  if ('env' in s) {
    const v = process.env[s.env];
    if (v === undefined) throw new DeliveryError(`the environment variable ${s.env} (a header value) is not set`);
    return v;
  }
  try {
    return fs.readFileSync(s.file, 'utf8').trim();
  } catch (e) {
    throw new DeliveryError(`cannot read the secret file ${s.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** One delivery attempt to a target; resolves when it was delivered, rejects with a DeliveryError otherwise. */
export async function deliver(target: NotifyTarget, body: NotificationBody, cwd: string): Promise<void> {
  if (target.webhook) return deliverWebhook(target.webhook, body);
  if (target.command) return deliverCommand(target.command, body, cwd);
  throw new DeliveryError(`notify.${target.name} has neither webhook nor command`);
}

async function deliverWebhook(w: NonNullable<NotifyTarget['webhook']>, body: NotificationBody): Promise<void> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'understudy-notify',
    // Receivers deduplicate on it: delivery is at least once.
    'x-understudy-event-id': String(body.id),
    'x-understudy-event-kind': body.kind,
  };
  for (const [name, source] of Object.entries(w.headers)) headers[name.toLowerCase()] = readSecret(source);
  let status: number;
  try {
    const res = await request(w.url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      headersTimeout: w.timeoutMs,
      bodyTimeout: w.timeoutMs,
      signal: AbortSignal.timeout(w.timeoutMs),
    });
    status = res.statusCode;
    await res.body.dump();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new DeliveryError(`POST ${safeUrl(w.url)}: ${err.code ?? err.name}${err.code ? '' : `: ${err.message}`}`);
  }
  if (status < 200 || status > 299) throw new DeliveryError(`POST ${safeUrl(w.url)}: answered ${status}`);
}

/** The URL without credentials or query (either may hold a token). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(bad url)';
  }
}

function deliverCommand(c: NonNullable<NotifyTarget['command']>, body: NotificationBody, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(c.run[0]!, c.run.slice(1), {
      cwd,
      stdio: ['pipe', 'ignore', 'pipe'],
      env: {
        ...process.env,
        UNDERSTUDY_EVENT_ID: String(body.id),
        UNDERSTUDY_EVENT_KIND: body.kind,
        UNDERSTUDY_EVENT_SITE: body.site ?? '',
        UNDERSTUDY_EVENT_HOST: body.host ?? '',
        UNDERSTUDY_EVENT_MESSAGE: body.message,
        UNDERSTUDY_EVENT_AT: new Date(body.at).toISOString(),
      },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 400) stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), c.timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new DeliveryError(`${c.run[0]}: ${e.code ?? e.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new DeliveryError(
            `${c.run[0]} exited ${signal ? `on ${signal}${signal === 'SIGKILL' ? ` (timeout ${c.timeoutMs} ms)` : ''}` : `with ${code}`}${stderr.trim() ? `: ${stderr.trim().slice(0, 200)}` : ''}`,
          ),
        );
    });
    child.stdin.on('error', () => undefined); // a command that does not read its input
    child.stdin.end(JSON.stringify(body));
  });
}
