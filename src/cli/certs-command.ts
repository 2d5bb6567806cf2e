import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * `understudy certs -c FILE --out DIR`: a CA and one certificate per part of the config
 * (the controller, the director, every storage system and every host's agent), each
 * naming the part's address, made with `openssl` exactly as docs/operations.md shows by
 * hand. Files: `ca.pem`, `ca-key.pem` (keep it off the machines), `PART.pem` and
 * `PART-key.pem`, which `cluster.tls: { ca: DIR/ca.pem, cert: DIR/{{part}}.pem, key:
 * DIR/{{part}}-key.pem }` names. An existing CA is kept, so that adding a host later
 * signs its certificate with the same CA; an existing part certificate is kept too.
 */
export interface PartName {
  part: string;
  addresses: string[];
}

/** Every part of the config and the addresses it is called on. */
export function partsOf(config: UnderstudyConfig): PartName[] {
  const out = new Map<string, Set<string>>();
  const add = (part: string, address: string) => (out.get(part) ?? out.set(part, new Set()).get(part)!).add(address);
  add('controller', config.controller.listen.host);
  for (const m of Object.values(config.controller.members)) add('controller', m.host);
  add('director', config.director.listen.host);
  for (const m of Object.values(config.director.members)) add('director', m.host);
  for (const s of Object.values(config.storage)) add(s.name, s.listen.host);
  for (const h of Object.values(config.hosts)) add(h.name, h.address);
  return [...out].map(([part, a]) => ({ part, addresses: [...a] }));
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT')
      throw new UnderstudyError(
        'US_TOOL_MISSING',
        'openssl is not installed: install it (Debian: apt-get install openssl) or make the certificates as docs/operations.md shows',
      );
    throw new UnderstudyError('US_INTERNAL', `openssl ${args[0]} failed: ${String(err.stderr ?? err.message).trim()}`);
  }
}

export function makeCerts(config: UnderstudyConfig, outDir: string, log: (line: string) => void = () => undefined): { made: string[]; kept: string[] } {
  fs.mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const made: string[] = [];
  const kept: string[] = [];
  if (!fs.existsSync(path.join(outDir, 'ca.pem'))) {
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'ca-key.pem',
        '-out',
        'ca.pem',
        '-days',
        '3650',
        '-subj',
        '/CN=Understudy cluster CA',
      ],
      outDir,
    );
    fs.chmodSync(path.join(outDir, 'ca-key.pem'), 0o600);
    made.push('ca.pem');
    log('  ✓ ca.pem (and ca-key.pem: keep it off the machines)');
  } else {
    kept.push('ca.pem');
  }
  for (const { part, addresses } of partsOf(config)) {
    if (fs.existsSync(path.join(outDir, `${part}.pem`))) {
      kept.push(`${part}.pem`);
      continue;
    }
    const ext = path.join(outDir, `${part}.ext`);
    fs.writeFileSync(
      ext,
      `subjectAltName=${addresses.map((a) => `IP:${a}`).join(',')}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`,
    );
    try {
      openssl(
        ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${part}-key.pem`, '-out', `${part}.csr`, '-subj', `/CN=${part}`],
        outDir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${part}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca-key.pem',
          '-CAcreateserial',
          '-out',
          `${part}.pem`,
          '-days',
          '825',
          '-extfile',
          `${part}.ext`,
        ],
        outDir,
      );
    } finally {
      fs.rmSync(ext, { force: true });
      fs.rmSync(path.join(outDir, `${part}.csr`), { force: true });
    }
    fs.chmodSync(path.join(outDir, `${part}-key.pem`), 0o600);
    made.push(`${part}.pem`);
    log(`  ✓ ${part}.pem for ${addresses.join(', ')}`);
  }
  return { made, kept };
}
