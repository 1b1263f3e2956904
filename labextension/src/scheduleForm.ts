/**
 * Schedules (issue 14), the pure part: what the "Schedule…" dialog's fields turn into (`POST schedules`'s
 * body, aistack_hub/services/schedules.py) and the checks made before sending it. The service checks
 * again (croniter, zoneinfo) and its 4xx message is shown in the dialog.
 */

export const CONCURRENCY_POLICIES = ['Allow', 'Forbid', 'Replace'] as const;
export const CATCH_UP_POLICIES = ['none', 'latest', 'all'] as const;
export const NAME_RE = /^[a-z0-9]([-a-z0-9_]{0,38}[a-z0-9])?$/;

export type ScheduleKind = 'notebook' | 'pipeline';

export interface IScheduleForm {
  name: string;
  path: string;
  /** 'cron': `cron` in `timezone`; 'window': whenever the tenant's night/weekend window opens */
  when: 'cron' | 'window';
  cron: string;
  timezone: string;
  concurrencyPolicy: string;
  catchUp: string;
  catchUpMax: number;
  /** notebooks only: the profile (GPU slice) each run asks for */
  profile: string;
  tenant: string;
}

/** What a file is scheduled as: a `*.pipeline.yaml|yml` is a pipeline, an `*.ipynb` a notebook. */
export function scheduleKind(path: string): ScheduleKind | null {
  if (/\.pipeline\.ya?ml$/i.test(path)) {
    return 'pipeline';
  }
  return /\.ipynb$/i.test(path) ? 'notebook' : null;
}

/** A valid schedule name from a file path (`Train Model.pipeline.yaml` -> `train-model`). */
export function defaultScheduleName(path: string): string {
  const base = (path.split('/').pop() || '').replace(/\.pipeline\.ya?ml$|\.ipynb$/i, '');
  const name = base
    .toLowerCase()
    .replace(/[^-a-z0-9_]+/g, '-')
    .replace(/^[-_]+/, '')
    .slice(0, 40)
    .replace(/[-_]+$/, '');
  return name || 'schedule';
}

/** The browser's IANA time zone (Intl), 'UTC' when it has none. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

export function defaultForm(path: string, timezone = browserTimeZone()): IScheduleForm {
  return {
    name: defaultScheduleName(path),
    path,
    when: 'cron',
    cron: '0 2 * * *',
    timezone,
    concurrencyPolicy: 'Forbid',
    catchUp: 'none',
    catchUpMax: 10,
    profile: '',
    tenant: ''
  };
}

/** The first problem with the form (a message for the dialog), or null when it may be sent. */
export function validateScheduleForm(f: IScheduleForm, maxCatchUp = 100): string | null {
  if (!scheduleKind(f.path)) {
    return `${f.path || 'this file'} is neither a notebook (.ipynb) nor a pipeline (.pipeline.yaml)`;
  }
  if (!NAME_RE.test(f.name)) {
    return 'Name: lower-case letters, digits, "-" or "_" (1-40), starting and ending with a letter or digit';
  }
  if (f.when === 'cron') {
    const fields = f.cron.trim().split(/\s+/).filter(Boolean);
    if (fields.length < 5 || fields.length > 6) {
      return 'Cron: 5 fields (minute hour day month weekday), or 6 with seconds last';
    }
    if (!f.timezone.trim()) {
      return 'Time zone: an IANA name such as Europe/Berlin';
    }
  }
  if (!(CONCURRENCY_POLICIES as readonly string[]).includes(f.concurrencyPolicy)) {
    return `Concurrency policy: one of ${CONCURRENCY_POLICIES.join(', ')}`;
  }
  if (!(CATCH_UP_POLICIES as readonly string[]).includes(f.catchUp)) {
    return `Catch-up: one of ${CATCH_UP_POLICIES.join(', ')}`;
  }
  if (!Number.isInteger(f.catchUpMax) || f.catchUpMax < 1 || f.catchUpMax > maxCatchUp) {
    return `Catch-up at most: a whole number 1..${maxCatchUp}`;
  }
  if (scheduleKind(f.path) === 'notebook' && !f.profile) {
    return 'Profile: pick the slice each run asks for';
  }
  return null;
}

/** The path as the service takes it: relative to the user's home, no leading or trailing '/'. */
const relative = (p: string) => p.replace(/^\/+|\/+$/g, '');

/** `POST schedules`'s body for a valid form. */
export function buildScheduleBody(f: IScheduleForm): Record<string, unknown> {
  const kind = scheduleKind(f.path) as ScheduleKind;
  const target: Record<string, unknown> = { path: relative(f.path) };
  if (kind === 'notebook') {
    target.profile = f.profile;
  }
  const body: Record<string, unknown> = {
    name: f.name,
    kind,
    target,
    concurrency_policy: f.concurrencyPolicy,
    catch_up: f.catchUp,
    catch_up_max: f.catchUpMax
  };
  if (f.when === 'window') {
    body.on_window = true;
  } else {
    body.cron = f.cron.trim().split(/\s+/).join(' ');
    body.timezone = f.timezone.trim();
  }
  if (f.tenant) {
    body.tenant = f.tenant;
  }
  return body;
}

/** One line for a schedule in the list: when it runs. */
export function describeWhen(s: { cron?: string | null; timezone?: string; on_window?: boolean }): string {
  return s.on_window ? "when the tenant's window opens" : `${s.cron} (${s.timezone || 'UTC'})`;
}
