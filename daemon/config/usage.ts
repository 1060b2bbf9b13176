// The --help text, generated from the field table so it cannot drift from what is parsed.
import { CONFIG_FLAG, FIELDS } from './fields';

export function usage(program = 'int-host-reporter'): string {
  const rows: [string, string][] = [
    [`--${CONFIG_FLAG.flag} ${CONFIG_FLAG.valueName}`, `YAML or JSON file with any of the settings below, keyed by flag name. [env ${CONFIG_FLAG.env.join(', ')}]`],
  ];
  for (const f of FIELDS) {
    const names = f.short ? `-${f.short}, --${f.flag}` : `--${f.flag}`;
    const def = f.default && f.key !== 'nodeName' ? ` (default ${String(f.default())})` : '';
    const env = [...f.env, ...(f.fallbackEnv ?? [])];
    rows.push([`${names} ${f.valueName}`, `${f.help}${def} [env ${env.join(', ')}]`]);
  }
  rows.push(['-h, --help', 'Show this text.']);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    `Usage: ${program} --collector HOST:PORT [options]`,
    '',
    'Sends INT reports for the flows crossing this node. Precedence: flags > environment > config file > defaults.',
    'Flags may be written with one or two dashes, and as --flag=value or --flag value.',
    '',
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    '',
  ].join('\n');
}
