/**
 * Schedules in JupyterLab (issue 14): "Schedule…" (aistack:schedule) schedules the current notebook or
 * pipeline file (`POST schedules`; a 4xx answer is shown in the dialog, which opens again with what the
 * user typed), and "Schedules" (aistack:open-schedules) lists them with pause / resume / run now / delete
 * and each one's last runs. The fields' logic is in scheduleForm.ts (jest: test/schedule.spec.ts).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, ICommandPalette, MainAreaWidget, Notification, showDialog } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { Widget } from '@lumino/widgets';

import { api, requestAPI } from './api';
import { OPEN_PIPELINE } from './pipeline';
import {
  buildScheduleBody,
  CATCH_UP_POLICIES,
  CONCURRENCY_POLICIES,
  defaultForm,
  describeWhen,
  IScheduleForm,
  scheduleKind,
  validateScheduleForm
} from './scheduleForm';

export const SCHEDULE = 'aistack:schedule';
export const OPEN_SCHEDULES = 'aistack:open-schedules';
const SCHEDULE_SELECTED = 'aistack:schedule-selected';
const OPEN_SELECTED_PIPELINE = 'aistack:open-selected-pipeline';

const el = (tag: string, text = '', cls = ''): HTMLElement => {
  const e = document.createElement(tag);
  e.textContent = text;
  if (cls) {
    e.className = cls;
  }
  return e;
};

function field(label: string, input: HTMLElement): HTMLElement {
  const row = el('label', '', 'aistack-ScheduleForm-row');
  row.style.display = 'block';
  row.style.margin = '6px 0';
  row.append(el('span', label + ' '), input);
  return row;
}

function select(values: readonly string[], value: string): HTMLSelectElement {
  const s = document.createElement('select');
  for (const v of values) {
    s.append(new Option(v, v, false, v === value));
  }
  return s;
}

/** The dialog's body: fields filled from `form`, an error line above them when the last try failed. */
class ScheduleFormBody extends Widget implements Dialog.IBodyWidget<IScheduleForm> {
  private get: () => IScheduleForm;

  constructor(form: IScheduleForm, profiles: string[], error: string | null) {
    super();
    this.addClass('aistack-ScheduleForm');
    if (error) {
      const e = el('div', error, 'aistack-ScheduleForm-error');
      e.style.color = 'var(--jp-error-color1)';
      e.setAttribute('role', 'alert');
      this.node.append(e);
    }
    const input = (v: string) => Object.assign(document.createElement('input'), { value: v });
    const name = input(form.name);
    const when = select(['cron', 'window'], form.when);
    when.options[1].text = "tenant's night/weekend window";
    const cron = input(form.cron);
    const tz = input(form.timezone);
    const policy = select(CONCURRENCY_POLICIES, form.concurrencyPolicy);
    const catchUp = select(CATCH_UP_POLICIES, form.catchUp);
    const catchUpMax = Object.assign(input(String(form.catchUpMax)), { type: 'number', min: '1' });
    const profile = profiles.length ? select(profiles, form.profile || profiles[0]) : input(form.profile);
    const cronRows = [field('Cron', cron), field('Time zone', tz)];
    const sync = () => cronRows.forEach(r => (r.style.display = when.value === 'cron' ? 'block' : 'none'));
    when.onchange = sync;
    sync();
    this.node.append(el('div', `${scheduleKind(form.path) ?? 'file'}: ${form.path}`), field('Name', name), field('Runs', when));
    this.node.append(...cronRows, field('Concurrency policy', policy), field('Catch-up', catchUp));
    this.node.append(field('Catch-up at most', catchUpMax));
    if (scheduleKind(form.path) === 'notebook') {
      this.node.append(field('Profile', profile));
    }
    this.get = () => ({
      ...form,
      name: name.value.trim(),
      when: when.value as IScheduleForm['when'],
      cron: cron.value,
      timezone: tz.value,
      concurrencyPolicy: policy.value,
      catchUp: catchUp.value,
      catchUpMax: Number(catchUpMax.value),
      profile: (profile as HTMLInputElement | HTMLSelectElement).value
    });
  }

  getValue(): IScheduleForm {
    return this.get();
  }
}

/** The dialog until the schedule is created or the user cancels; a refusal keeps the fields. */
export async function scheduleFile(path: string): Promise<any | null> {
  let form = defaultForm(path);
  const profiles = await api
    .get('profiles')
    .then((r: any) => (Array.isArray(r) ? r : (r?.profiles ?? [])).map((p: any) => String(p.slug)))
    .catch(() => [] as string[]);
  let error: string | null = null;
  for (;;) {
    const got = await showDialog({
      title: 'Schedule',
      body: new ScheduleFormBody(form, profiles, error),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Schedule' })]
    });
    if (!got.button.accept || !got.value) {
      return null;
    }
    form = got.value;
    error = validateScheduleForm(form);
    if (error) {
      continue;
    }
    try {
      const out = await api.post('schedules', buildScheduleBody(form));
      Notification.success(`Scheduled ${form.name}: next run ${out.next_at ?? 'when the window opens'}`, {
        autoClose: 5000
      });
      return out;
    } catch (e: any) {
      error = e?.message || String(e);
    }
  }
}

/** The Schedules list: one row per schedule, its actions, its last runs when opened. */
export class SchedulesView extends Widget {
  private list = el('div', '', 'aistack-Schedules-list');
  private status = el('div', '', 'aistack-Schedules-status');
  private next: string | null = null;

  constructor(private app: JupyterFrontEnd) {
    super();
    this.addClass('aistack-Schedules');
    this.title.label = 'Schedules';
    this.title.closable = true;
    this.node.style.overflow = 'auto';
    this.node.style.padding = '8px';
    const refresh = el('button', 'Refresh', 'jp-mod-styled');
    refresh.onclick = () => void this.refresh();
    this.node.append(refresh, this.status, this.list);
    void this.refresh();
  }

  async refresh(more = false): Promise<void> {
    try {
      const page = await api.get(`schedules${more && this.next ? '?' + this.next : ''}`);
      if (!more) {
        this.list.replaceChildren();
      }
      for (const s of page.schedules ?? []) {
        this.list.append(this.row(s));
      }
      this.next = page.next ?? null;
      this.status.textContent = (page.schedules ?? []).length || more ? '' : 'No schedules yet: "Schedule…" on a notebook or pipeline.';
      if (this.next) {
        const b = el('button', 'More', 'jp-mod-styled');
        b.onclick = () => {
          b.remove();
          void this.refresh(true);
        };
        this.list.append(b);
      }
    } catch (e: any) {
      this.status.textContent = `Schedules not loaded: ${e?.message ?? e}`;
    }
  }

  private row(s: any): HTMLElement {
    const box = el('div', '', 'aistack-Schedules-item');
    box.dataset.id = String(s.id);
    box.style.borderBottom = '1px solid var(--jp-border-color2)';
    box.style.padding = '4px 0';
    const head = el('div');
    head.append(el('b', s.name), ` ${s.kind} ${s.target?.path ?? ''} · ${describeWhen(s)} · ${s.concurrency_policy}`);
    head.append(` · ${s.paused ? 'paused' : `next ${s.next_at ?? '-'}`}`);
    const runs = el('div', '', 'aistack-Schedules-runs');
    const act = (label: string, fn: () => Promise<unknown>) => {
      const b = el('button', label, 'jp-mod-styled');
      b.onclick = async () => {
        try {
          await fn();
          await this.refresh();
        } catch (e: any) {
          this.status.textContent = `${label} ${s.name}: ${e?.message ?? e}`;
        }
      };
      return b;
    };
    const bar = el('div');
    bar.append(
      s.paused ? act('Resume', () => api.post(`schedules/${s.id}/resume`)) : act('Pause', () => api.post(`schedules/${s.id}/pause`)),
      act('Run now', () => api.post(`schedules/${s.id}/run`)),
      act('Delete', async () => {
        const ok = await showDialog({ title: `Delete schedule ${s.name}?`, buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })] });
        if (ok.button.accept) {
          await requestAPI(`api/schedules/${s.id}`, { method: 'DELETE' });
        }
      })
    );
    const last = el('button', 'Last runs', 'jp-mod-styled');
    last.onclick = async () => {
      const full = await api.get(`schedules/${s.id}`).catch((e: any) => ({ history: [], error: e?.message }));
      runs.replaceChildren(...(full.error ? [el('div', full.error)] : []));
      for (const f of (full.history ?? []).slice(0, 10)) {
        const what = f.job_id ? `job ${f.job_id}` : f.run_id ? `pipeline run ${f.run_id}` : '';
        runs.append(el('div', `${f.slot} ${f.state}${f.manual ? ' (run now)' : ''} ${what} ${f.reason ?? ''}`));
      }
      if (!(full.history ?? []).length && !full.error) {
        runs.append(el('div', 'No runs yet.'));
      }
    };
    bar.append(last);
    if (s.kind === 'pipeline' && s.target?.path) {
      const open = el('button', 'Open pipeline', 'jp-mod-styled');
      open.onclick = () => void this.app.commands.execute(OPEN_PIPELINE, { path: s.target.path });
      bar.append(open);
    }
    box.append(head, bar, runs);
    return box;
  }
}

/** The path "Schedule…" acts on: its `path` argument, else the current document, else the browser's selection. */
function currentPath(app: JupyterFrontEnd, browser: IDefaultFileBrowser | null, args: any): string {
  if (typeof args?.path === 'string' && args.path) {
    return args.path;
  }
  const w: any = app.shell.currentWidget;
  // a document's context path, or a view's own path (the pipeline view is a MainAreaWidget around it)
  const ctxPath = w?.context?.path ?? w?.path ?? w?.content?.path;
  if (typeof ctxPath === 'string' && scheduleKind(ctxPath)) {
    return ctxPath;
  }
  return selectedPath(browser);
}

/** The file browser's first selected item's path ('' when none). */
function selectedPath(browser: IDefaultFileBrowser | null): string {
  const first = browser?.selectedItems().next();
  return first && !first.done && first.value ? first.value.path : '';
}

export function scheduleCommands(app: JupyterFrontEnd, palette: ICommandPalette | null, browser: IDefaultFileBrowser | null): void {
  let view: MainAreaWidget<SchedulesView> | null = null;
  app.commands.addCommand(SCHEDULE, {
    label: 'Schedule…',
    caption: 'Run this notebook or pipeline on a cron or in the tenant window, without your server',
    execute: async args => {
      const path = currentPath(app, browser, args);
      if (!scheduleKind(path)) {
        Notification.warning('Open or select a notebook (.ipynb) or a pipeline (.pipeline.yaml) to schedule it');
        return;
      }
      const out = await scheduleFile(path);
      if (out && view && !view.isDisposed) {
        void view.content.refresh();
      }
    }
  });
  app.commands.addCommand(OPEN_SCHEDULES, {
    label: 'Schedules',
    caption: 'Your schedules: pause, resume, run now, delete, last runs',
    execute: () => {
      if (!view || view.isDisposed) {
        view = new MainAreaWidget({ content: new SchedulesView(app) });
        view.id = 'aistack-schedules';
        view.title.label = 'Schedules';
        app.shell.add(view, 'main');
      }
      app.shell.activateById(view.id);
      void view.content.refresh();
    }
  });
  // the file browser's context menu: "Schedule…" on notebooks and pipeline files, "Open as pipeline" on
  // *.pipeline.yaml (it runs aistack:open-pipeline with the selected path)
  app.commands.addCommand(SCHEDULE_SELECTED, {
    label: 'Schedule…',
    isVisible: () => scheduleKind(selectedPath(browser)) !== null,
    execute: () => app.commands.execute(SCHEDULE, { path: selectedPath(browser) })
  });
  app.commands.addCommand(OPEN_SELECTED_PIPELINE, {
    label: 'Open as pipeline',
    isVisible: () => scheduleKind(selectedPath(browser)) === 'pipeline',
    execute: () => app.commands.execute(OPEN_PIPELINE, { path: selectedPath(browser) })
  });
  const selector = '.jp-DirListing-item[data-file-type]';
  app.contextMenu.addItem({ command: OPEN_SELECTED_PIPELINE, selector, rank: 3 });
  app.contextMenu.addItem({ command: SCHEDULE_SELECTED, selector, rank: 4 });
  palette?.addItem({ command: SCHEDULE, category: 'AIStack' });
  palette?.addItem({ command: OPEN_SCHEDULES, category: 'AIStack' });
}
