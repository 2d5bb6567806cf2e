import type { HostConfig, SiteConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { renderTemplate } from './template.ts';

/**
 * A site's `app.command` and `app.env` with their templates filled in for the
 * host the app starts on: the same placeholders as transform rules
 * (`{{host.address}}`, `{{site.app.port}}`, `{{host.profile.cpus}}`, arithmetic) and
 * `{{volume.path}}` (the app's data directory on that host, its DATA_DIR), always
 * rendered as text (an argv element and an environment value are strings).
 *
 * Besides the configured env, every app gets these (they win over a configured
 * value of the same name, so that an app can rely on them):
 * - `UNDERSTUDY_SITE`, `UNDERSTUDY_HOST`: the site's and the host's names;
 * - `UNDERSTUDY_ADDRESS`, `UNDERSTUDY_PORT`: where the app must listen (the host's
 *   address and `app.port`). Probes and the director call exactly that address.
 */
export interface RenderedApp {
  command: string[];
  env: Record<string, string>;
}

export function renderApp(host: HostConfig, site: SiteConfig, volumePath: string): RenderedApp {
  const ctx = { host, site, volumePath };
  const fail = (where: string, e: unknown): never => {
    const why = e instanceof Error ? e.message : String(e);
    throw new UnderstudyError('US_TEMPLATE_FAILED', `sites.${site.name}.app.${where} on host ${host.name}: ${why}`, {
      site: site.name,
      host: host.name,
      where,
    });
  };
  const command = site.app.command.map((arg, i) => {
    try {
      return asText(renderTemplate(arg, ctx));
    } catch (e) {
      return fail(`command[${i}]`, e);
    }
  });
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(site.app.env)) {
    try {
      env[name] = asText(renderTemplate(value, ctx));
    } catch (e) {
      fail(`env.${name}`, e);
    }
  }
  return {
    command,
    env: { ...env, UNDERSTUDY_SITE: site.name, UNDERSTUDY_HOST: host.name, UNDERSTUDY_ADDRESS: host.address, UNDERSTUDY_PORT: String(site.app.port) },
  };
}

/**
 * Which place of `app` a template failed in, for config-time checks: the render of
 * every host that may run the site, so that `{{host.profile.x}}` missing on one
 * standby is found at load time, not at its first failover.
 */
export function appTemplateProblems(hosts: readonly HostConfig[], site: SiteConfig): { path: (string | number)[]; message: string }[] {
  const out: { path: (string | number)[]; message: string }[] = [];
  const seen = new Set<string>();
  const ctxOf = (host: HostConfig) => ({ host, site, volumePath: '/volume' });
  const check = (path: (string | number)[], template: string): void => {
    for (const host of hosts) {
      try {
        renderTemplate(template, ctxOf(host));
      } catch (e) {
        const key = path.join('.');
        if (seen.has(key)) return;
        seen.add(key);
        out.push({ path, message: `${(e as Error).message} (rendered for host ${host.name})` });
        return;
      }
    }
  };
  site.app.command.forEach((arg, i) => check(['command', i], arg));
  for (const [name, value] of Object.entries(site.app.env)) check(['env', name], value);
  return out;
}

function asText(v: unknown): string {
  return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}
