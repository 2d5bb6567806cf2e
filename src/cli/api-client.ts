import { endpointUrl } from '../config/types.ts';
import { loadConfig } from '../config/load-config.ts';
import { callJson, type JsonCallOptions } from '../shared/http-client.ts';
import { baseDirFor, resolveConfigPath } from './config-path.ts';

export interface ApiOptions { api?: string; config?: string }

/** The controller's API address: --api, else UNDERSTUDY_API, else the config's controller.listen. */
export function apiBase(opts: ApiOptions): string {
  if (opts.api) return opts.api.replace(/\/$/, '');
  if (process.env.UNDERSTUDY_API) return process.env.UNDERSTUDY_API.replace(/\/$/, '');
  const file = resolveConfigPath(opts.config);
  return endpointUrl(loadConfig(file, { baseDir: baseDirFor(file) }).controller.listen);
}

export function callApi<T>(opts: ApiOptions, pathAndQuery: string, call: JsonCallOptions = {}): Promise<T> {
  const token = process.env.UNDERSTUDY_TOKEN;
  return callJson<T>(`${apiBase(opts)}${pathAndQuery}`, {
    ...call,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...call.headers },
  });
}
