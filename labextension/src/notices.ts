/**
 * What the service has to tell the user while nobody asked (issues 14 and 15), as JupyterLab notifications:
 * - notices (`GET api/notifications?after=<id>`): a pipeline run or a schedule of theirs failed (written by
 *   the service, which runs schedules while no server is up, so they are read when the lab next opens);
 * - reminders (`GET api/accounting/reminders`): a tenant of theirs near or over its budget, their work
 *   waiting because a quota is used up. One notification per reminder (kind + tenant), updated when its
 *   words change, dismissed when it no longer holds.
 * Checked at start and every `noticeIntervalSeconds`. The last notice shown is remembered in this browser
 * per hub user, so a notice is shown once; a first visit shows the newest few of the last week only.
 */
import { Notification } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';

import { api } from './api';
import { INotice, IReminder, noticesToShow, reminderKey } from './noticeRules';

const PAGE = 200; // the service's largest page of notifications

function cursorKey(): string {
  return `aistack_lab:notices-after:${PageConfig.getOption('hubUser') || 'me'}`;
}

function readCursor(): number | null {
  const v = window.localStorage.getItem(cursorKey());
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) ? n : null;
}

export class Notices {
  private timer = 0;
  private reminders = new Map<string, { id: string; message: string }>();
  private busy = false;

  /** (Re)start the checks every `seconds`. */
  start(seconds: number): void {
    this.stop();
    void this.check();
    this.timer = window.setInterval(() => void this.check(), Math.max(1, seconds) * 1000);
  }

  stop(): void {
    if (this.timer) {
      window.clearInterval(this.timer);
      this.timer = 0;
    }
  }

  async check(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      await this.checkNotices();
      await this.checkReminders();
    } finally {
      this.busy = false;
    }
  }

  private async checkNotices(): Promise<void> {
    const after = readCursor();
    const got: INotice[] = [];
    let at = after ?? 0;
    try {
      for (;;) {
        const page = await api.get<{ notifications: INotice[] }>(`notifications?after=${at}&limit=${PAGE}`);
        const items = page.notifications || [];
        got.push(...items);
        if (items.length < PAGE) {
          break;
        }
        at = items[items.length - 1].id;
      }
    } catch {
      return; // an older service, or the hub is restarting: next time
    }
    for (const n of noticesToShow(got, after === null)) {
      Notification.error(n.message, { autoClose: false });
    }
    const last = got.length ? got[got.length - 1].id : at;
    window.localStorage.setItem(cursorKey(), String(last));
  }

  private async checkReminders(): Promise<void> {
    let items: IReminder[];
    try {
      items = (await api.get<{ reminders: IReminder[] }>('accounting/reminders')).reminders || [];
    } catch {
      return;
    }
    const now = new Set<string>();
    for (const r of items) {
      const key = reminderKey(r);
      now.add(key);
      const shown = this.reminders.get(key);
      const type = r.level === 'error' ? 'error' : 'warning';
      if (!shown) {
        const id = Notification.emit(r.message, type, { autoClose: false });
        this.reminders.set(key, { id, message: r.message });
      } else if (shown.message !== r.message) {
        Notification.update({ id: shown.id, message: r.message, type, autoClose: false });
        shown.message = r.message;
      }
    }
    for (const [key, shown] of this.reminders) {
      if (!now.has(key)) {
        Notification.dismiss(shown.id);
        this.reminders.delete(key);
      }
    }
  }
}
