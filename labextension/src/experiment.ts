/**
 * The experiment view (issue 13): live learning curves of all trials with Chart.js (one chart per metric,
 * log scale on demand, the objective's chart first and the best trial drawn thick), a table of trials
 * sortable by the objective and by each parameter, a scatter of each parameter against the objective, and
 * a person's buttons: stop a trial, resume it with more budget, add a trial next to the best, cancel.
 * It polls `GET experiments/{id}` while the experiment runs.
 */
import { Widget } from '@lumino/widgets';
import { Chart, registerables } from 'chart.js';

import { api } from './api';

Chart.register(...registerables);

export interface ITrial {
  number: number;
  job_id: number | null;
  parameters: Record<string, any>;
  state: string;
  stopped_by: string | null;
  value: number | null;
  last_step: number | null;
  budget: number | null;
  metrics: Record<string, [number, number][]>;
}

export interface IExperiment {
  id: number;
  name: string;
  state: string;
  message: string | null;
  objective: { metric: string; mode: 'max' | 'min' };
  space: Record<string, any>;
  budget: { parameter: string; max: number } | null;
  trials: ITrial[];
  best: { trial: number; value: number; parameters: Record<string, any>; provisional: boolean } | null;
  counts: Record<string, number>;
  strategy: string;
  parallelism: number;
  max_trials: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const ACTIVE = ['queued', 'admitted', 'running'];

/** Trials sorted by a column ('value', 'number', 'state' or a parameter name); nulls last. */
export function sortTrials(trials: ITrial[], key: string, descending: boolean): ITrial[] {
  const get = (t: ITrial) => (key === 'value' || key === 'number' || key === 'state' ? (t as any)[key] : t.parameters[key]);
  return [...trials].sort((a, b) => {
    const x = get(a);
    const y = get(b);
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const c = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -c : c;
  });
}

/** Parameters next to the best: each numeric range parameter moved a little, lists to a neighbouring value. */
export function nearBest(exp: IExperiment): Record<string, any> | null {
  if (!exp.best) return null;
  const out: Record<string, any> = {};
  for (const [name, spec] of Object.entries(exp.space)) {
    const v = exp.best.parameters[name];
    if (Array.isArray(spec)) {
      const i = spec.indexOf(v);
      const used = new Set(exp.trials.map(t => JSON.stringify(t.parameters)));
      const j = i + 1 < spec.length ? i + 1 : Math.max(0, i - 1);
      const candidate = { ...exp.best.parameters, [name]: spec[j] };
      out[name] = used.has(JSON.stringify(candidate)) ? v : spec[j];
    } else if (typeof v === 'number') {
      const f = spec.log ? v * 1.2 : v + (spec.high - spec.low) * 0.05;
      let n = Math.min(spec.high, Math.max(spec.low, f));
      if (spec.type === 'int' || (Number.isInteger(spec.low) && Number.isInteger(spec.high) && spec.type !== 'float')) {
        n = Math.round(n);
      }
      out[name] = n;
    } else {
      out[name] = v;
    }
  }
  return out;
}

export class ExperimentView extends Widget {
  private charts: Chart[] = [];
  private timer: number | undefined;
  private sortKey = 'value';
  private descending = true;
  private logScale = false;
  private data: IExperiment | null = null;
  private curves: HTMLDivElement;
  private table: HTMLTableElement;
  private scatter: HTMLDivElement;
  private header: HTMLDivElement;

  constructor(readonly experimentId: string, private pollMs = 2000) {
    super();
    this.addClass('aistack-ExperimentView');
    this.id = `aistack-experiment-${experimentId}`;
    this.title.label = `Experiment ${experimentId}`;
    this.title.closable = true;
    this.node.style.overflow = 'auto';
    this.node.style.padding = '8px';
    this.header = document.createElement('div');
    this.header.className = 'aistack-ExperimentView-header';
    this.curves = document.createElement('div');
    this.curves.className = 'aistack-ExperimentView-curves';
    this.curves.style.display = 'flex';
    this.curves.style.flexWrap = 'wrap';
    this.scatter = document.createElement('div');
    this.scatter.className = 'aistack-ExperimentView-scatter';
    this.scatter.style.display = 'flex';
    this.scatter.style.flexWrap = 'wrap';
    this.table = document.createElement('table');
    this.table.className = 'aistack-ExperimentView-trials';
    this.node.append(this.header, this.curves, this.table, this.scatter);
    void this.refresh();
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    this.charts.forEach(c => c.destroy());
    super.dispose();
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      this.data = await api.get<IExperiment>(`experiments/${this.experimentId}`);
      this.render();
    } catch (e) {
      this.header.textContent = `Could not load experiment ${this.experimentId}: ${(e as Error).message}`;
    }
    const running = this.data && (this.data.state === 'running' || this.data.trials.some(t => ACTIVE.includes(t.state)));
    if (!this.isDisposed && running) {
      this.timer = window.setTimeout(() => void this.refresh(), this.pollMs);
    }
  }

  private async act(path: string, body: unknown = {}): Promise<void> {
    try {
      await api.post(`experiments/${this.experimentId}/${path}`, body);
    } catch (e) {
      this.header.querySelector('.aistack-ExperimentView-error')?.remove();
      const err = document.createElement('div');
      err.className = 'aistack-ExperimentView-error';
      err.style.color = 'var(--jp-error-color1)';
      err.textContent = (e as Error).message;
      this.header.append(err);
    }
    await this.refresh();
  }

  private render(): void {
    const exp = this.data!;
    this.title.label = `Experiment ${exp.name}`;
    const best = exp.best
      ? `best: trial ${exp.best.trial} ${exp.objective.metric} = ${exp.best.value.toPrecision(4)} (${Object.entries(exp.best.parameters)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')})${exp.best.provisional ? ' so far' : ''}`
      : 'no value yet';
    const counts = Object.entries(exp.counts).map(([k, v]) => `${v} ${k}`).join(', ');
    this.header.innerHTML = '';
    const h = document.createElement('div');
    h.className = 'aistack-ExperimentView-summary';
    h.textContent = `${exp.name} — ${exp.state} — ${exp.strategy}, ${exp.trials.length}/${exp.max_trials} trials (${counts}), parallelism ${exp.parallelism} — ${best}`;
    this.header.append(h);
    if (exp.message) {
      const m = document.createElement('div');
      m.className = 'aistack-ExperimentView-message';
      m.style.color = 'var(--jp-warn-color0)';
      m.textContent = exp.message;
      this.header.append(m);
    }
    const bar = document.createElement('div');
    const log = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = this.logScale;
    box.className = 'aistack-ExperimentView-log';
    box.onchange = () => {
      this.logScale = box.checked;
      this.render();
    };
    log.append(box, ' log scale');
    const add = this.button('Add trial near best', 'aistack-ExperimentView-add', async () => {
      const p = nearBest(exp);
      if (p) await this.act('trials', { parameters: p });
    });
    add.disabled = !exp.best || exp.state === 'cancelled';
    const cancel = this.button('Cancel experiment', 'aistack-ExperimentView-cancel', () => this.act('cancel'));
    cancel.disabled = exp.state !== 'running';
    bar.append(log, add, cancel);
    this.header.append(bar);
    this.renderCurves(exp);
    this.renderTable(exp);
    this.renderScatter(exp);
  }

  private button(label: string, cls: string, onClick: () => Promise<void>): HTMLButtonElement {
    const b = document.createElement('button');
    b.className = `jp-mod-styled ${cls}`;
    b.textContent = label;
    b.onclick = () => void onClick();
    return b;
  }

  private renderCurves(exp: IExperiment): void {
    this.charts.forEach(c => c.destroy());
    this.charts = [];
    this.curves.innerHTML = '';
    const names = new Set<string>();
    exp.trials.forEach(t => Object.keys(t.metrics || {}).forEach(n => names.add(n)));
    const ordered = [exp.objective.metric, ...[...names].filter(n => n !== exp.objective.metric).sort()].filter(n => names.has(n));
    for (const name of ordered) {
      const box = document.createElement('div');
      box.className = 'aistack-ExperimentView-chart';
      box.dataset.metric = name;
      box.style.width = '420px';
      box.style.height = '240px';
      const canvas = document.createElement('canvas');
      box.append(canvas);
      this.curves.append(box);
      const objective = name === exp.objective.metric;
      const datasets = exp.trials
        .filter(t => t.metrics && t.metrics[name])
        .map(t => {
          const isBest = exp.best?.trial === t.number;
          return {
            label: `trial ${t.number}`,
            data: t.metrics[name].map(([x, y]) => ({ x, y })),
            borderColor: COLORS[t.number % COLORS.length],
            borderWidth: isBest ? 4 : objective ? 2 : 1,
            borderDash: t.state === 'pruned' || t.state === 'stopped' ? [4, 3] : [],
            pointRadius: 0,
            fill: false
          };
        });
      this.charts.push(
        new Chart(canvas, {
          type: 'line',
          data: { datasets },
          options: {
            animation: false,
            maintainAspectRatio: false,
            parsing: false,
            plugins: {
              title: { display: true, text: objective ? `${name} (objective, ${exp.objective.mode})` : name, font: { weight: objective ? 'bold' : 'normal' } },
              legend: { display: datasets.length <= 12, position: 'right', labels: { boxWidth: 10 } }
            },
            scales: {
              x: { type: 'linear', title: { display: true, text: exp.budget?.parameter ?? 'step' } },
              y: { type: this.logScale ? 'logarithmic' : 'linear' }
            }
          }
        })
      );
    }
  }

  private renderTable(exp: IExperiment): void {
    const params = Object.keys(exp.space);
    const cols = ['number', 'state', 'value', ...params, 'last_step', ''];
    const headers = ['#', 'state', exp.objective.metric, ...params, exp.budget?.parameter ?? 'step', ''];
    this.table.innerHTML = '';
    const head = this.table.createTHead().insertRow();
    cols.forEach((c, i) => {
      const th = document.createElement('th');
      th.textContent = headers[i] + (this.sortKey === c && c ? (this.descending ? ' ▼' : ' ▲') : '');
      th.style.cursor = c ? 'pointer' : '';
      th.dataset.sort = c;
      if (c && c !== 'last_step') {
        th.onclick = () => {
          this.descending = this.sortKey === c ? !this.descending : true;
          this.sortKey = c;
          this.renderTable(exp);
        };
      }
      head.append(th);
    });
    const body = this.table.createTBody();
    for (const t of sortTrials(exp.trials, this.sortKey, this.descending)) {
      const row = body.insertRow();
      row.dataset.trial = String(t.number);
      if (exp.best?.trial === t.number) row.style.fontWeight = 'bold';
      const cells = [
        String(t.number),
        t.state + (t.stopped_by ? ` (${t.stopped_by === 'rule' ? 'rule' : 'by ' + t.stopped_by})` : ''),
        t.value === null ? '' : t.value.toPrecision(4),
        ...params.map(p => String(t.parameters[p])),
        t.last_step === null ? '' : `${t.last_step}/${t.budget ?? ''}`
      ];
      cells.forEach(c => (row.insertCell().textContent = c));
      const actions = row.insertCell();
      if (ACTIVE.includes(t.state)) {
        actions.append(this.button('Stop', 'aistack-ExperimentView-stop', () => this.act(`trials/${t.number}/stop`)));
      } else if (exp.state !== 'cancelled' && t.job_id !== null) {
        const more = (t.budget ?? 0) + (exp.budget?.max ?? 1);
        actions.append(
          this.button(`Resume to ${more}`, 'aistack-ExperimentView-resume', () => this.act(`trials/${t.number}/resume`, exp.budget ? { budget: more } : {}))
        );
      }
    }
  }

  private renderScatter(exp: IExperiment): void {
    this.scatter.innerHTML = '';
    for (const p of Object.keys(exp.space)) {
      const box = document.createElement('div');
      box.style.width = '320px';
      box.style.height = '220px';
      box.className = 'aistack-ExperimentView-param';
      const canvas = document.createElement('canvas');
      box.append(canvas);
      this.scatter.append(box);
      const values = exp.trials.filter(t => t.value !== null);
      const numeric = values.every(t => typeof t.parameters[p] === 'number');
      const labels = numeric ? undefined : [...new Set(values.map(t => String(t.parameters[p])))];
      this.charts.push(
        new Chart(canvas, {
          type: 'scatter',
          data: {
            datasets: [
              {
                label: `${p} vs ${exp.objective.metric}`,
                data: values.map(t => ({ x: numeric ? t.parameters[p] : labels!.indexOf(String(t.parameters[p])), y: t.value as number })),
                pointBackgroundColor: values.map(t => (exp.best?.trial === t.number ? '#d62728' : t.state === 'completed' ? '#1f77b4' : '#aaaaaa')),
                pointRadius: 5
              }
            ]
          },
          options: {
            animation: false,
            maintainAspectRatio: false,
            plugins: { legend: { display: false }, title: { display: true, text: `${p} vs ${exp.objective.metric}` } },
            scales: {
              x: numeric
                ? { type: exp.space[p]?.log ? 'logarithmic' : 'linear', title: { display: true, text: p } }
                : { type: 'linear', ticks: { stepSize: 1, callback: (v: any) => labels![v] ?? '' }, title: { display: true, text: p } }
            }
          }
        })
      );
    }
  }
}
