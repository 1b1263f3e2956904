/**
 * The Jobs panel (left sidebar): the user's jobs (and their tenants' for tenant admins), sweeps grouped,
 * with state, queue position and estimated start, elapsed time, per-cell progress, failure reason and
 * the actions: logs, open output, download, cancel, rerun (same or edited parameters).
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import { Signal, ISignal } from '@lumino/signaling';

import { AistackError, api, fetchLogBytes } from './api';
import {
  elapsedSeconds,
  estimatedStartText,
  failureText,
  FINAL_STATES,
  formatDuration,
  groupJobs,
  groupState,
  IJob,
  ILatestMetric,
  jobsNeedingMetrics,
  latestMetrics,
  metricsLine,
  newlyFinished,
  normalizeJob,
  progressFraction
} from './jobs';

export interface IJobActions {
  openOutput(job: IJob): Promise<void>;
  download(job: IJob): Promise<void>;
  showLogs(job: IJob): void;
  cancel(job: IJob): Promise<void>;
  rerun(job: IJob, edit: boolean): Promise<void>;
}

export class JobsPanel extends Widget {
  constructor(
    private actions: IJobActions,
    private trans: TranslationBundle
  ) {
    super();
    this.id = 'aistack-jobs-panel';
    this.addClass('aistack-JobsPanel');
    this.title.caption = trans.__('Jobs');
    const header = document.createElement('div');
    header.className = 'aistack-JobsPanel-header';
    const h = document.createElement('h2');
    h.textContent = trans.__('Jobs');
    header.appendChild(h);
    this.scopeSelect = document.createElement('select');
    this.scopeSelect.className = 'jp-mod-styled';
    this.scopeSelect.setAttribute('aria-label', trans.__('Which jobs to show'));
    for (const [v, label] of [
      ['mine', trans.__('My jobs')],
      ['all', trans.__('All jobs I can see')]
    ]) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = label;
      this.scopeSelect.appendChild(o);
    }
    this.scopeSelect.addEventListener('change', () => void this.refresh());
    header.appendChild(this.scopeSelect);
    const refresh = document.createElement('button');
    refresh.className = 'jp-Button jp-mod-minimal aistack-JobsPanel-refresh';
    refresh.textContent = '⟳';
    refresh.title = trans.__('Refresh');
    refresh.setAttribute('aria-label', trans.__('Refresh the jobs list'));
    refresh.addEventListener('click', () => void this.refresh());
    header.appendChild(refresh);
    this.node.appendChild(header);
    this.status = document.createElement('div');
    this.status.className = 'aistack-JobsPanel-status';
    this.status.setAttribute('role', 'status');
    this.node.appendChild(this.status);
    this.list = document.createElement('ul');
    this.list.className = 'aistack-JobsPanel-list';
    this.list.setAttribute('aria-label', trans.__('Jobs'));
    this.node.appendChild(this.list);
  }

  /** Emits the jobs that reached a final state since the previous refresh. */
  get finished(): ISignal<this, IJob[]> {
    return this._finished;
  }

  get jobs(): IJob[] {
    return this._jobs;
  }

  /** Reload the list from the service (and notify about jobs that just ended). */
  async refresh(): Promise<void> {
    if (this.refreshing) {
      return this.refreshing;
    }
    this.refreshing = this.doRefresh().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    let raw: any;
    try {
      const query = this.scopeSelect.value === 'mine' && this.user ? `?user=${encodeURIComponent(this.user)}&limit=200` : '?limit=200';
      raw = await api.get(`jobs${query}`);
    } catch (e) {
      this.status.textContent = this.trans.__('Cannot list jobs: %1', (e as Error).message);
      return;
    }
    const items: any[] = Array.isArray(raw) ? raw : (raw?.jobs ?? raw?.items ?? []);
    const jobs = items.map(normalizeJob);
    const ended = newlyFinished(this.lastStates, jobs);
    this.lastStates = new Map(jobs.map(j => [j.id, j.state]));
    this._jobs = jobs;
    this.status.textContent = jobs.length ? '' : this.trans.__('No jobs yet. Use "Run as job" on a notebook.');
    this.render();
    if (ended.length) {
      this._finished.emit(ended);
    }
    void this.refreshMetrics(jobs);
  }

  /** Live metrics (GET jobs/{id}/metrics): the running jobs' on every refresh, a finished job's once more. */
  private async refreshMetrics(jobs: IJob[]): Promise<void> {
    if (this.metricsUnavailable) {
      return;
    }
    const wanted = jobsNeedingMetrics(jobs, this.metricsStates);
    await Promise.all(
      wanted.map(async job => {
        try {
          this.metrics.set(job.id, latestMetrics(await api.get(`jobs/${encodeURIComponent(job.id)}/metrics`)));
        } catch (e) {
          if (e instanceof AistackError && e.status === 404 && e.code !== 'not_found') {
            this.metricsUnavailable = true; // a service without the metrics endpoint: stop asking
          }
        }
        this.metricsStates.set(job.id, job.state);
        this.showMetrics(job.id);
      })
    );
  }

  private showMetrics(jobId: string): void {
    const li = this.list.querySelector(`[data-job-id="${CSS.escape(jobId)}"]`);
    if (!li) {
      return;
    }
    let line = li.querySelector('.aistack-Job-metrics') as HTMLElement | null;
    const latest = this.metrics.get(jobId) ?? [];
    if (!latest.length) {
      line?.remove();
      return;
    }
    if (!line) {
      line = document.createElement('div');
      line.className = 'aistack-Job-metrics';
      line.setAttribute('aria-label', this.trans.__('latest metrics'));
      li.insertBefore(line, li.querySelector('.aistack-Job-actions'));
    }
    line.textContent = metricsLine(latest);
    line.title = latest.map(m => `${m.name}: ${m.values.slice(-20).map(v => +v.toPrecision(4)).join(', ')}`).join('\n');
  }

  /** Remember the current states so that the next refresh can tell which jobs ended. */
  track(jobId: string, state: string): void {
    this.lastStates.set(jobId, state);
  }

  set user(user: string | null) {
    this._user = user;
  }

  get user(): string | null {
    return this._user;
  }

  /** Re-render only the times (elapsed, estimated start) between refreshes. */
  tick(): void {
    const now = new Date();
    for (const job of this._jobs) {
      const t = this.list.querySelector(`[data-job-id="${job.id}"] .aistack-Job-time`);
      if (t) {
        t.textContent = this.timeText(job, now);
      }
    }
  }

  private timeText(job: IJob, now: Date): string {
    const trans = this.trans;
    if (job.state === 'queued') {
      const eta = estimatedStartText(job, now);
      const pos = job.position !== null ? trans.__('#%1 in queue', job.position) : trans.__('queued');
      return eta ? `${pos} · ${trans.__(eta)}` : pos;
    }
    const el = elapsedSeconds(job, now);
    return el === null ? '' : FINAL_STATES.includes(job.state) ? trans.__('ran %1', formatDuration(el)) : trans.__('running for %1', formatDuration(el));
  }

  private render(): void {
    const focused = document.activeElement as HTMLElement | null;
    const focusKey = focused?.dataset?.focusKey;
    this.list.textContent = '';
    const now = new Date();
    for (const group of groupJobs(this._jobs)) {
      if (group.groupId && group.jobs.length > 1) {
        const li = document.createElement('li');
        li.className = 'aistack-JobGroup';
        li.dataset.groupId = group.groupId;
        const title = document.createElement('div');
        title.className = 'aistack-JobGroup-title';
        const done = group.jobs.filter(j => j.state === 'succeeded').length;
        title.textContent = this.trans.__('Sweep of %1 jobs — %2 succeeded — %3', group.jobs.length, done, this.trans.__(groupState(group)));
        li.appendChild(title);
        const ul = document.createElement('ul');
        for (const job of group.jobs) {
          ul.appendChild(this.renderJob(job, now));
        }
        li.appendChild(ul);
        this.list.appendChild(li);
      } else {
        this.list.appendChild(this.renderJob(group.jobs[0], now));
      }
    }
    if (focusKey) {
      (this.list.querySelector(`[data-focus-key="${focusKey}"]`) as HTMLElement | null)?.focus();
    }
  }

  private renderJob(job: IJob, now: Date): HTMLElement {
    const trans = this.trans;
    const li = document.createElement('li');
    li.className = `aistack-Job aistack-Job-${job.state}`;
    li.dataset.jobId = job.id;
    li.dataset.state = job.state;

    const top = document.createElement('div');
    top.className = 'aistack-Job-top';
    const name = document.createElement('span');
    name.className = 'aistack-Job-name';
    name.textContent = job.name;
    name.title = `${job.name} (#${job.id})`;
    const state = document.createElement('span');
    state.className = `aistack-Job-state aistack-Job-state-${job.state}`;
    state.textContent = trans.__(job.state);
    top.append(name, state);
    li.appendChild(top);

    const meta = document.createElement('div');
    meta.className = 'aistack-Job-meta';
    const bits = [job.profile, job.tenant, job.user && this.scopeSelect.value === 'all' ? job.user : '', job.priority !== 'normal' ? job.priority : ''];
    meta.textContent = bits.filter(Boolean).join(' · ');
    li.appendChild(meta);

    const time = document.createElement('div');
    time.className = 'aistack-Job-time';
    time.textContent = this.timeText(job, now);
    li.appendChild(time);

    if (job.state === 'running' || job.state === 'admitted' || (job.cellsTotal > 0 && job.state !== 'queued')) {
      const frac = progressFraction(job);
      const bar = document.createElement('div');
      bar.className = 'aistack-Job-progress';
      bar.setAttribute('role', 'progressbar');
      bar.setAttribute('aria-valuemin', '0');
      bar.setAttribute('aria-valuemax', String(job.cellsTotal || 1));
      bar.setAttribute('aria-valuenow', String(job.state === 'succeeded' ? job.cellsTotal || 1 : job.cellsDone));
      bar.setAttribute('aria-label', trans.__('cells done'));
      const fill = document.createElement('div');
      fill.className = 'aistack-Job-progressFill';
      fill.style.width = `${Math.round(frac * 100)}%`;
      bar.appendChild(fill);
      const label = document.createElement('span');
      label.className = 'aistack-Job-progressLabel';
      label.textContent = job.cellsTotal ? trans.__('cell %1 of %2', Math.min(job.cellsDone + (FINAL_STATES.includes(job.state) ? 0 : 1), job.cellsTotal), job.cellsTotal) : '';
      li.append(bar, label);
    }

    const failure = failureText(job);
    if (failure && job.state !== 'succeeded') {
      const f = document.createElement('div');
      f.className = 'aistack-Job-failure';
      f.textContent = failure;
      li.appendChild(f);
    }

    const params = Object.entries(job.parameters);
    if (params.length) {
      const p = document.createElement('div');
      p.className = 'aistack-Job-params';
      p.textContent = params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
      li.appendChild(p);
    }

    const actions = document.createElement('div');
    actions.className = 'aistack-Job-actions';
    const button = (key: string, label: string, aria: string, fn: () => unknown, enabled = true) => {
      const b = document.createElement('button');
      b.className = `jp-Button jp-mod-styled jp-mod-reject aistack-Job-action aistack-Job-${key}`;
      b.textContent = label;
      b.setAttribute('aria-label', `${aria}: ${job.name}`);
      b.dataset.focusKey = `${job.id}-${key}`;
      b.disabled = !enabled;
      b.addEventListener('click', () => void Promise.resolve(fn()).catch(e => this.showError(e)));
      actions.appendChild(b);
    };
    const final = FINAL_STATES.includes(job.state);
    const started = job.state !== 'queued' && job.state !== 'admitted';
    button('logs', trans.__('Logs'), trans.__('Show logs'), () => this.actions.showLogs(job));
    button('open', trans.__('Open output'), trans.__('Open output notebook'), () => this.actions.openOutput(job), started);
    button('download', trans.__('Download'), trans.__('Download output notebook'), () => this.actions.download(job), started);
    if (!final) {
      button('cancel', trans.__('Cancel'), trans.__('Cancel job'), () => this.actions.cancel(job));
    } else {
      button('rerun', trans.__('Rerun'), trans.__('Rerun with the same parameters'), () => this.actions.rerun(job, false));
      button('rerun-edit', trans.__('Rerun…'), trans.__('Rerun with edited parameters'), () => this.actions.rerun(job, true));
    }
    li.appendChild(actions);
    if (this.metrics.get(job.id)?.length) {
      const line = document.createElement('div');
      line.className = 'aistack-Job-metrics';
      line.setAttribute('aria-label', trans.__('latest metrics'));
      line.textContent = metricsLine(this.metrics.get(job.id)!);
      li.insertBefore(line, actions);
    }
    return li;
  }

  showError(e: unknown): void {
    this.status.textContent = (e as Error).message ?? String(e);
  }

  private _finished = new Signal<this, IJob[]>(this);
  private _jobs: IJob[] = [];
  private _user: string | null = null;
  private lastStates = new Map<string, string>();
  private metrics = new Map<string, ILatestMetric[]>();
  private metricsStates = new Map<string, string>();
  private metricsUnavailable = false;
  private refreshing: Promise<void> | null = null;
  private list: HTMLUListElement;
  private status: HTMLElement;
  private scopeSelect: HTMLSelectElement;
}

/** A main-area view of a job's log that follows it while the job runs. */
export class JobLogView extends Widget {
  constructor(
    private job: IJob,
    private trans: TranslationBundle,
    private intervalMs: number
  ) {
    super();
    this.addClass('aistack-JobLog');
    this.id = `aistack-job-log-${job.id}`;
    this.title.label = trans.__('Log: %1', job.name);
    this.title.closable = true;
    this.pre = document.createElement('pre');
    this.pre.setAttribute('tabindex', '0');
    this.pre.setAttribute('aria-label', trans.__('Log of job %1', job.name));
    this.node.appendChild(this.pre);
    void this.poll();
  }

  /** Follow the log: only the bytes after what is shown are fetched (the service pages by byte offset). */
  private async poll(): Promise<void> {
    this.pre.textContent = this.trans.__('(no output yet)');
    while (!this.isDisposed) {
      let final = false;
      try {
        // the job's state first: a log read after it is final is then complete
        final = FINAL_STATES.includes(normalizeJob(await api.get(`jobs/${this.job.id}`)).state);
        let chunk: Uint8Array;
        do {
          chunk = await fetchLogBytes(this.job.id, this.offset);
          this.offset += chunk.byteLength;
          if (chunk.byteLength) {
            const atBottom = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 4;
            // stream: a multi-byte character split between two reads is decoded once whole
            this.text += this.decoder.decode(chunk, { stream: true });
            this.pre.textContent = this.text;
            if (atBottom) {
              this.node.scrollTop = this.node.scrollHeight;
            }
          }
        } while (chunk.byteLength >= 1 << 20 && !this.isDisposed);
        this.error = false;
      } catch (e) {
        if (!this.error) {
          this.pre.textContent = this.text + '\n' + this.trans.__('Cannot read the log: %1', (e as Error).message);
          this.error = true;
        }
      }
      if (final) {
        return;
      }
      await new Promise(r => setTimeout(r, this.intervalMs));
    }
  }

  private pre: HTMLPreElement;
  private offset = 0;
  private text = '';
  private error = false;
  private decoder = new TextDecoder();
}
