/**
 * GPU idle culling, the lab side (issue 15 B): every minute, ask the aistack service (through the server
 * extension's forwarder, `api/monitoring/idle`) whether one of the user's GPU servers is about to be
 * stopped for GPU idleness; if so, a JupyterLab notification says when, with "keep for N hours" buttons
 * (`POST api/monitoring/idle/{allocation}/keep`). The service decides; this only shows and asks.
 */
import { Notification } from '@jupyterlab/apputils';

import { api } from './api';

interface IIdleItem {
  allocation_id: number;
  server_name: string;
  action: 'ok' | 'warn' | 'stop';
  stop_at: number | null;
  message: string;
}

interface IIdleAnswer {
  items: IIdleItem[];
  max_keep_hours: number;
}

/** The "keep" choices offered, in hours, capped at what the tenant allows. */
export function keepChoices(maxHours: number): number[] {
  const choices = [1, 2, 8].filter(h => h <= maxHours);
  return choices.length ? choices : [maxHours];
}

async function keep(item: IIdleItem, hours: number): Promise<void> {
  try {
    await api.post(`monitoring/idle/${item.allocation_id}/keep`, { hours });
    Notification.success(`Kept: your ${item.server_name || 'default'} server will not be stopped for ${hours} h.`, {
      autoClose: 5000
    });
  } catch (error) {
    Notification.error(`Could not keep the server: ${(error as Error).message}`, { autoClose: false });
  }
}

/** Start the watch; returns a function that stops it. */
export function startIdleWatch(intervalMs = 60000): () => void {
  const shown = new Map<number, string>(); // allocation -> notification id
  const check = async () => {
    let answer: IIdleAnswer;
    try {
      answer = await api.get<IIdleAnswer>('monitoring/idle');
    } catch {
      return; // an older service, or the hub is restarting: try again next time
    }
    for (const item of answer.items || []) {
      const id = shown.get(item.allocation_id);
      if (item.action !== 'warn') {
        if (id) {
          Notification.dismiss(id);
          shown.delete(item.allocation_id);
        }
        continue;
      }
      if (id) {
        continue;
      }
      const actions = keepChoices(answer.max_keep_hours || 2).map(h => ({
        label: `Keep for ${h} h`,
        caption: `Do not stop this server for ${h} hour(s)`,
        callback: () => {
          shown.delete(item.allocation_id);
          void keep(item, h);
        }
      }));
      shown.set(item.allocation_id, Notification.warning(item.message, { autoClose: false, actions }));
    }
  };
  void check();
  const timer = window.setInterval(() => void check(), intervalMs);
  return () => window.clearInterval(timer);
}
