/**
 * npm run lab -- up [--nodes N] [--datastore sqlite|postgres] [--no-spire] [--json]
 * npm run lab -- down [--prefix nbXXXXXX]      (default: every lab on this machine)
 * npm run lab -- status [--prefix nbXXXXXX] [--json]
 */
import { parseArgs } from 'node:util';
import { Lab, downAll, reapStaleLabs } from './lab.js';

const USAGE = `usage:
  npm run lab -- up [--nodes N] [--datastore sqlite|postgres] [--no-spire] [--json]
  npm run lab -- down [--prefix PREFIX] [--force]
  npm run lab -- status [--prefix PREFIX] [--json]`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      nodes: { type: 'string', default: '2' },
      datastore: { type: 'string', default: 'sqlite' },
      'no-spire': { type: 'boolean', default: false },
      prefix: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const log = values.json ? () => undefined : (l: string) => console.error(`[lab] ${l}`);

  switch (command) {
    case 'up': {
      const nodes = Number(values.nodes);
      if (!Number.isInteger(nodes) || nodes < 0 || nodes > 200)
        return usageError('--nodes must be an integer from 0 to 200');
      if (values.datastore !== 'sqlite' && values.datastore !== 'postgres')
        return usageError('--datastore must be "sqlite" or "postgres"');
      const lab = await Lab.up({ nodes, datastore: values.datastore, spire: !values['no-spire'], log });
      const status = await lab.status();
      if (values.json) console.log(JSON.stringify(status, null, 2));
      else printStatus(status);
      return 0;
    }
    case 'down': {
      const gone = values.prefix
        ? (await Lab.load(values.prefix).down(), [values.prefix])
        : await downAll(log, { force: values.force });
      if (values.json) console.log(JSON.stringify({ removed: gone }));
      else console.log(gone.length ? `removed ${gone.join(', ')}` : 'no lab to remove');
      return 0;
    }
    case 'status': {
      await reapStaleLabs(log);
      const labs = values.prefix ? [Lab.load(values.prefix)] : Lab.list();
      const statuses = await Promise.all(labs.map((l) => l.status()));
      if (values.json) console.log(JSON.stringify(values.prefix ? statuses[0] : statuses, null, 2));
      else if (statuses.length === 0) console.log('no lab');
      else statuses.forEach(printStatus);
      return 0;
    }
    default:
      return usageError(`unknown command "${command}"`);
  }
}

function usageError(msg: string): number {
  console.error(`error: ${msg}\n${USAGE}`);
  return 2;
}

function printStatus(s: Awaited<ReturnType<Lab['status']>>) {
  console.log(`lab ${s.prefix}  (${s.dir})`);
  console.log(`  hub  ${s.hub.netns}  ${s.hub.interface} ${s.hub.overlayIp}  endpoint ${s.hub.endpoint}`);
  if (s.spire)
    console.log(`  spire ${s.spire.trustDomain} :${s.spire.port} ${s.spire.datastore} healthy=${s.spire.healthy}`);
  for (const n of s.nodes) console.log(`  node ${n.name}  ${n.netns}  ${n.underlayIp}`);
  for (const ns of s.namespaces) {
    console.log(
      `  netns ${ns.name} ${ns.exists ? '' : '(missing)'} if=[${ns.interfaces.map((i) => i.name).join(' ')}] procs=[${ns.processes.map((p) => `${p.command}:${p.pid}`).join(' ')}]`,
    );
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
