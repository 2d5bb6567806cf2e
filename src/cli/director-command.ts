import { endpointUrl, type UnderstudyConfig } from '../config/types.ts';
import { Director } from '../director/director.ts';
import { defaultLogger } from '../director/logger.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Where several directors share the fronts (`director.members`), the config as one of
 * them sees it: its admin API on its own member address.
 */
function withMember(config: UnderstudyConfig, name: string | undefined): UnderstudyConfig {
  const names = Object.keys(config.director.members);
  if (name === undefined) {
    if (names.length > 0)
      throw new UnderstudyError('US_CONFIG_INVALID', `director.members names ${names.join(', ')}: run \`understudy director --name NAME\` with one of them`);
    return config;
  }
  const member = config.director.members[name];
  if (!member)
    throw new UnderstudyError(
      'US_CONFIG_INVALID',
      names.length > 0 ? `no director ${name} in director.members: it has ${names.join(', ')}` : `--name ${name}: the config has no director.members`,
    );
  return { ...config, director: { ...config.director, listen: member } };
}

/**
 * `understudy director -c FILE`: runs the built-in director in the foreground as
 * its own process. It signals connection errors to the controller at
 * controller.listen, and stops cleanly on SIGTERM / SIGINT: held requests get
 * 503 + Retry-After, in-flight ones get a short grace, then the process may exit.
 * Resolves once stopped.
 */
export async function runDirector(opts: { config: UnderstudyConfig; name?: string }): Promise<void> {
  const logger = defaultLogger();
  const config = withMember(opts.config, opts.name);
  // Where several controllers elect a leader, each gets the signals: the leader acts on them.
  const controllers = [...new Set([config.controller.listen, ...Object.values(config.controller.members)].map((e) => endpointUrl(e)))];
  const director = new Director({ config, controllerUrl: controllers.length === 1 ? controllers[0]! : controllers, logger });
  await director.start();
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      logger.info({ signal }, 'director stopping');
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await director.stop();
}
