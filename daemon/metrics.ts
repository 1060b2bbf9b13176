// Prometheus text exposition of the daemon's counters. Values come from the stages that own
// them (kernel, reader, pipeline, sender, attachments); nothing here counts anything itself.

export interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  /** one value, or one per label set */
  values: { labels?: Record<string, string>; value: number | bigint }[];
}

function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderMetrics(metrics: Metric[]): string {
  const out: string[] = [];
  for (const m of metrics) {
    out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
    for (const v of m.values) {
      const labels = v.labels && Object.keys(v.labels).length
        ? `{${Object.entries(v.labels).map(([k, x]) => `${k}="${escape(x)}"`).join(',')}}`
        : '';
      out.push(`${m.name}${labels} ${v.value.toString()}`);
    }
  }
  return out.join('\n') + '\n';
}

export const counter = (name: string, help: string, value: number | bigint): Metric => ({ name, help, type: 'counter', values: [{ value }] });
export const gauge = (name: string, help: string, value: number | bigint): Metric => ({ name, help, type: 'gauge', values: [{ value }] });
