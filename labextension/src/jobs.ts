/**
 * The Jobs panel's model: normalising the service's job objects, grouping sweeps, and the words and
 * numbers the panel shows (elapsed time, estimated start, progress). Pure functions, unit tested.
 */

export type JobState = 'queued' | 'admitted' | 'running' | 'succeeded' | 'failed' | 'cancelled' | string;

export const FINAL_STATES = ['succeeded', 'failed', 'cancelled'];

export interface IFailure {
  kind: string;
  message: string;
  /** The cell in the output notebook (papermill's injected cells shift it): where "Open output" goes. */
  cellIndex?: number;
  /** The cell as the user knows it, "In [3]": the 3rd code cell of their notebook. */
  cellLabel?: string;
  ename?: string;
  evalue?: string;
  link?: string;
}

export interface IJob {
  id: string;
  name: string;
  user: string;
  tenant: string;
  profile: string;
  priority: string;
  state: JobState;
  groupId: string | null;
  parameters: Record<string, unknown>;
  position: number | null;
  /** The expected start and the likely range around it; null when nothing tells (the panel says so). */
  estimatedStart: Date | null;
  earliestStart: Date | null;
  latestStart: Date | null;
  createdAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  cellsDone: number;
  cellsTotal: number;
  currentCell: number | null;
  failure: IFailure | null;
  attempt: number;
  notebookPath: string | null;
  raw: any;
}

/** Timestamps from the service: ISO strings (naive ones are UTC) or epoch seconds. */
export function parseTime(v: unknown): Date | null {
  if (v === null || v === undefined || v === '') {
    return null;
  }
  if (typeof v === 'number') {
    return new Date(v * 1000);
  }
  let s = String(v);
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(s)) {
    s += 'Z';
  }
  const d = new Date(s);
  return isNaN(d.getTime()) ? null : d;
}

export function normalizeJob(raw: any): IJob {
  const progress = raw.progress || {};
  const f = raw.failure;
  return {
    id: String(raw.id),
    name: String(raw.name ?? `job ${raw.id}`),
    user: String(raw.user ?? ''),
    tenant: String(raw.tenant ?? ''),
    profile: String(raw.profile ?? ''),
    priority: String(raw.priority ?? 'normal'),
    state: String(raw.state ?? raw.status ?? 'queued'),
    groupId: raw.group_id ?? raw.group ?? null,
    parameters: raw.parameters ?? {},
    position: typeof raw.position === 'number' ? raw.position : (raw.queue_position ?? null),
    estimatedStart: parseTime(raw.estimated_start),
    earliestStart: parseTime(raw.estimated_start_earliest ?? raw.estimated_start),
    latestStart: parseTime(raw.estimated_start_latest ?? raw.estimated_start),
    createdAt: parseTime(raw.created_at ?? raw.submitted_at),
    startedAt: parseTime(raw.started_at),
    finishedAt: parseTime(raw.finished_at),
    cellsDone: Number(progress.cells_done ?? 0),
    cellsTotal: Number(progress.cells_total ?? 0),
    currentCell: progress.current_cell ?? null,
    failure: f
      ? {
          kind: String(f.class ?? f.kind ?? 'failed'),
          message: String(f.message ?? ''),
          cellIndex: typeof f.cell_index === 'number' ? f.cell_index : undefined,
          cellLabel: typeof f.cell_label === 'string' ? f.cell_label : undefined,
          ename: f.ename,
          evalue: f.evalue,
          link: f.link
        }
      : null,
    attempt: Number(raw.attempt ?? 0),
    notebookPath: raw.notebook_path ?? raw.path ?? null,
    raw
  };
}

/** Jobs of one sweep stay together, in the order of their first member; other jobs stand alone. */
export interface IJobGroup {
  groupId: string | null;
  jobs: IJob[];
}

export function groupJobs(jobs: IJob[]): IJobGroup[] {
  const groups: IJobGroup[] = [];
  const byId = new Map<string, IJobGroup>();
  for (const job of jobs) {
    if (job.groupId) {
      let g = byId.get(job.groupId);
      if (!g) {
        g = { groupId: job.groupId, jobs: [] };
        byId.set(job.groupId, g);
        groups.push(g);
      }
      g.jobs.push(job);
    } else {
      groups.push({ groupId: null, jobs: [job] });
    }
  }
  return groups;
}

/** A group's overall state: running while any member runs, failed if any failed once all ended. */
export function groupState(group: IJobGroup): string {
  const states = group.jobs.map(j => j.state);
  if (states.some(s => s === 'running' || s === 'admitted')) {
    return 'running';
  }
  if (states.some(s => s === 'queued')) {
    return 'queued';
  }
  if (states.some(s => s === 'failed')) {
    return 'failed';
  }
  if (states.every(s => s === 'cancelled')) {
    return 'cancelled';
  }
  return states.every(s => s === 'succeeded') ? 'succeeded' : 'ended';
}

/** "42s", "3m 05s", "2h 07m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Seconds the job has run (or ran), or waited when it has not started. */
export function elapsedSeconds(job: IJob, now: Date): number | null {
  const start = job.startedAt ?? job.createdAt;
  if (!start) {
    return null;
  }
  const end = job.finishedAt ?? now;
  return (end.getTime() - start.getTime()) / 1000;
}

/** The fraction of cells done, 0..1 (1 for a job that succeeded). */
export function progressFraction(job: IJob): number {
  if (job.state === 'succeeded') {
    return 1;
  }
  if (!job.cellsTotal) {
    return 0;
  }
  return Math.min(1, job.cellsDone / job.cellsTotal);
}

/** A duration rounded as people say it: [value, unit], "about 10 min" rather than "9m 37s". */
function rough(seconds: number): [number, string] {
  const m = seconds / 60;
  if (m < 55) {
    const step = m < 10 ? 1 : m < 30 ? 5 : 10;
    return [Math.max(1, Math.round(m / step) * step), 'min'];
  }
  const h = seconds / 3600;
  if (h < 23.5) {
    const step = h < 5 ? 0.5 : 1;
    return [Math.max(1, Math.round(h / step) * step), 'h'];
  }
  const d = Math.round(h / 24);
  return [d, d === 1 ? 'day' : 'days'];
}

/** How long a wait of ``low``..``high`` seconds is, rounded: "about 10 min", "10–20 min", "45 min–2 h",
 * "within 5 min" (when it may be now). Never a timestamp, never seconds. */
export function waitText(low: number, high: number): string {
  const hi = Math.max(low, high);
  if (hi < 60) {
    return 'within a minute';
  }
  const [b, ub] = rough(hi);
  if (low < 60) {
    return `within ${b} ${ub}`;
  }
  const [a, ua] = rough(low);
  if (ua === ub) {
    return a === b ? `about ${a} ${ua}` : `${a}–${b} ${ua}`;
  }
  return `${a} ${ua}–${b} ${ub}`;
}

/** When a queued job should start, as a phrase: "starts now", "starts in about 10 min", "starts in 10–20 min",
 * or "start time unknown" when no duration it waits on is known; null for a job that is not queued. */
export function estimatedStartText(job: IJob, now: Date): string | null {
  if (job.state !== 'queued') {
    return null;
  }
  if (!job.estimatedStart) {
    return 'start time unknown';
  }
  const low = ((job.earliestStart ?? job.estimatedStart).getTime() - now.getTime()) / 1000;
  const high = ((job.latestStart ?? job.estimatedStart).getTime() - now.getTime()) / 1000;
  if (high <= 1) {
    return 'starts now';
  }
  return `starts ${low < 60 ? '' : 'in '}${waitText(low, high)}`;
}

/** One line that says why a job failed, naming the failing cell as the user sees it ("In [3]"). */
export function failureText(job: IJob): string | null {
  const f = job.failure;
  if (!f) {
    return null;
  }
  if (f.kind === 'cell_error' && f.cellLabel) {
    return `${f.cellLabel} raised ${f.ename ?? 'an error'}${f.evalue ? `: ${f.evalue}` : ''}`;
  }
  return f.message || f.kind;
}

/** Jobs that reached a final state since the previous poll (for the "job ended" notification). */
export function newlyFinished(previous: Map<string, string>, jobs: IJob[]): IJob[] {
  return jobs.filter(j => FINAL_STATES.includes(j.state) && previous.has(j.id) && !FINAL_STATES.includes(previous.get(j.id)!));
}

// --- live metrics of a job (GET jobs/{id}/metrics: {job_id, state, metrics: {name: [[step, value], ...]}}) ---

export interface ILatestMetric {
  name: string;
  step: number;
  value: number;
  /** the values by step, for a sparkline */
  values: number[];
}

/** The latest value (highest step) of each reported metric, by name. */
export function latestMetrics(raw: any): ILatestMetric[] {
  const metrics = raw?.metrics;
  if (!metrics || typeof metrics !== 'object') {
    return [];
  }
  const out: ILatestMetric[] = [];
  for (const name of Object.keys(metrics).sort()) {
    const points = (Array.isArray(metrics[name]) ? metrics[name] : []).filter(
      (p: any) => Array.isArray(p) && p.length >= 2 && typeof p[1] === 'number' && Number.isFinite(p[1])
    ) as [number, number][];
    if (!points.length) {
      continue;
    }
    const sorted = [...points].sort((a, b) => Number(a[0]) - Number(b[0]));
    const last = sorted[sorted.length - 1];
    out.push({ name, step: Number(last[0]), value: last[1], values: sorted.map(p => p[1]) });
  }
  return out;
}

/** A metric value in at most 4 significant digits (1234567 -> "1.235e+6", 0.91234 -> "0.9123"). */
export function formatMetric(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e6) {
    return String(v);
  }
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}

/** "loss 0.312 · val_acc 0.91 (step 12)": one line for a job's row. */
export function metricsLine(latest: ILatestMetric[]): string {
  if (!latest.length) {
    return '';
  }
  const step = Math.max(...latest.map(m => m.step));
  return `${latest.map(m => `${m.name} ${formatMetric(m.value)}`).join(' · ')} (step ${step})`;
}

/** Which jobs' metrics to (re)read: the running ones each time, a finished one once more after it ended. */
export function jobsNeedingMetrics(jobs: IJob[], known: Map<string, string>, max = 20): IJob[] {
  const out = jobs.filter(j => {
    if (j.state === 'queued' || j.state === 'admitted') {
      return false;
    }
    const seen = known.get(j.id);
    return !FINAL_STATES.includes(j.state) || seen === undefined || !FINAL_STATES.includes(seen);
  });
  return out.slice(0, max);
}
