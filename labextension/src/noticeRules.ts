/** Which notices a visit shows and how a reminder is known (notices.ts shows them; kept apart to be tested
 * without JupyterLab). */
export interface INotice {
  id: number;
  kind: string;
  message: string;
  link: string | null;
  created_at: string;
}

export interface IReminder {
  kind: string;
  level: 'warning' | 'error';
  tenant: string;
  message: string;
}

/** A first visit shows at most this many notices, of the last FIRST_VISIT_DAYS days. */
export const FIRST_VISIT_MAX = 5;
export const FIRST_VISIT_DAYS = 7;

/** Which notices to show: all new ones after a cursor; on a first visit (no cursor) the newest few recent ones. */
export function noticesToShow(notices: INotice[], firstVisit: boolean, now: number = Date.now()): INotice[] {
  if (!firstVisit) {
    return notices;
  }
  const since = now - FIRST_VISIT_DAYS * 24 * 3600 * 1000;
  const recent = notices.filter(n => {
    const t = Date.parse(n.created_at.endsWith('Z') || n.created_at.includes('+') ? n.created_at : n.created_at + 'Z');
    return !Number.isNaN(t) && t >= since;
  });
  return recent.slice(-FIRST_VISIT_MAX);
}

/** The key one reminder is known by (its words may change: "2 of your workloads" -> "3 of ..."). */
export function reminderKey(r: IReminder): string {
  return `${r.kind}:${r.tenant}`;
}
