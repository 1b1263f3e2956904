/**
 * AIStack Hub's JupyterLab extension: "Run as job" (notebook toolbar, file browser context menu and
 * the command palette) and the Jobs panel. It talks only to its server extension (aistack_lab),
 * which forwards to the hub's aistack service with the user's own token.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';

import { api, requestAPI } from './api';
import { IJobRequest, IProfileInfo, ITenantInfo, showRunJobDialog } from './dialog';
import { estimatedStartText, IJob, normalizeJob } from './jobs';
import { normalizeParameters, ParamValue } from './params';
import { JobLogView, JobsPanel } from './panel';
import { openExperimentCommand } from './experimentCommand'; // experiments (issue 13)
import { openPipelineCommand } from './pipeline'; // pipelines view (issue 14)
import { scheduleCommands } from './schedule'; // schedules UI (issue 14)
import { startIdleWatch } from './idle'; // GPU idle culling (issue 15 B)
import { Notices } from './notices'; // failed pipelines/schedules, budget and quota reminders (issues 14, 15)

const PLUGIN_ID = 'aistack_lab:plugin';

export namespace CommandIDs {
  export const runAsJob = 'aistack:run-as-job';
  export const openPanel = 'aistack:open-jobs-panel';
}

const jobsIconSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M4 5h16v3H4zM4 10.5h16v3H4zM4 16h10v3H4z"/><path d="M17 15l5 2.5-5 2.5z"/></g></svg>';
export const jobsIcon = new LabIcon({ name: 'aistack:jobs', svgstr: jobsIconSvg });
const runJobIconSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M3 4h12v2H3zM3 9h9v2H3zM3 14h7v2H3z"/><path d="M13 12l9 5-9 5z"/></g></svg>';
export const runJobIcon = new LabIcon({ name: 'aistack:run-job', svgstr: runJobIconSvg });

interface ISettings {
  defaultProfile: string;
  outputLocation: string;
  timeoutMinutes: number;
  retries: number;
  notifyOnFinish: boolean;
  saveOutputOnFinish: boolean;
  pollIntervalSeconds: number;
  maxSweepJobs: number;
  noticeIntervalSeconds: number;
}

const DEFAULTS: ISettings = {
  defaultProfile: '',
  outputLocation: 'aistack-jobs',
  timeoutMinutes: 0,
  retries: 0,
  notifyOnFinish: true,
  saveOutputOnFinish: true,
  pollIntervalSeconds: 3,
  maxSweepJobs: 64,
  noticeIntervalSeconds: 30
};

interface IMe {
  name: string | null;
  admin: boolean;
  tenants: ITenantInfo[];
}

async function loadMe(): Promise<IMe> {
  try {
    const me = await api.get('me');
    const tenants: ITenantInfo[] = (me.tenants ?? []).map((t: any) => (typeof t === 'string' ? { name: t } : t));
    return { name: me.name ?? null, admin: !!me.admin, tenants };
  } catch {
    // a service without `GET me`: the default tenant is the one `GET profiles` picks
    const info = await requestAPI('info').catch(() => ({}));
    const profiles = await api.get('profiles').catch(() => null);
    return { name: info.user ?? null, admin: false, tenants: profiles?.tenant ? [{ name: profiles.tenant }] : [] };
  }
}

async function loadProfiles(tenant: string): Promise<IProfileInfo[]> {
  const raw = await api.get(tenant ? `profiles?tenant=${encodeURIComponent(tenant)}` : 'profiles');
  return Array.isArray(raw) ? raw : (raw?.profiles ?? []);
}

function describeSubmission(res: any, trans: TranslationBundle): { jobs: IJob[]; text: string } {
  const items: any[] = Array.isArray(res) ? res : res?.jobs ? res.jobs : [res];
  const jobs = items.filter(Boolean).map(normalizeJob);
  const first = jobs[0];
  if (!first) {
    return { jobs, text: trans.__('Job submitted') };
  }
  const where = (j: IJob) => {
    if (j.state !== 'queued') {
      return trans.__(j.state);
    }
    const eta = estimatedStartText(j, new Date());
    const pos = j.position !== null ? trans.__('position %1 in the queue', j.position) : trans.__('queued');
    return eta ? trans.__('%1, %2', pos, trans.__(eta)) : pos;
  };
  if (jobs.length > 1) {
    return { jobs, text: trans.__('Sweep of %1 jobs submitted; first at %2', jobs.length, where(first)) };
  }
  return { jobs, text: trans.__('Job "%1" submitted: %2', first.name, where(first)) };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Run a notebook as a queued job on a GPU slice, and follow it in the Jobs panel.',
  autoStart: true,
  requires: [IDocumentManager],
  optional: [INotebookTracker, IDefaultFileBrowser, ICommandPalette, ISettingRegistry, ITranslator, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    tracker: INotebookTracker | null,
    fileBrowser: IDefaultFileBrowser | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null,
    labShell: ILabShell | null
  ) => {
    const trans = (translator ?? nullTranslator).load('aistack_lab');
    startIdleWatch(); // GPU idle culling (issue 15 B): the "keep for N hours" notification
    let settings: ISettings = { ...DEFAULTS };
    const notices = new Notices();
    let noticeEvery = 0;
    const startNotices = () => {
      if (settings.noticeIntervalSeconds !== noticeEvery) {
        noticeEvery = settings.noticeIntervalSeconds;
        notices.start(noticeEvery);
      }
    };
    let me: IMe = { name: null, admin: false, tenants: [] };

    /** Output folder chosen in the dialog, per job id (kept in this browser). */
    const outputFolders = {
      key: 'aistack_lab:output-folders',
      get(id: string): string | undefined {
        try {
          return JSON.parse(window.localStorage.getItem(this.key) || '{}')[id];
        } catch {
          return undefined;
        }
      },
      set(id: string, folder: string): void {
        try {
          const all = JSON.parse(window.localStorage.getItem(this.key) || '{}');
          all[id] = folder;
          window.localStorage.setItem(this.key, JSON.stringify(all));
        } catch {
          // storage full or disabled: the settings' folder is used instead
        }
      }
    };

    async function saveOutput(job: IJob): Promise<string> {
      const dir = outputFolders.get(job.id) || settings.outputLocation;
      const { path } = await api.openOutput(job.id, dir);
      return path;
    }

    const actions = {
      openOutput: async (job: IJob) => {
        const path = await saveOutput(job);
        // reload when already open: the output of a running job grows
        await docManager.services.contents.get(path, { content: false });
        let widget = docManager.findWidget(path);
        if (widget) {
          await widget.context.revert();
          app.shell.activateById(widget.id);
        } else {
          // an output is for reading: no kernel until the user picks one
          widget = docManager.openOrReveal(path, 'default', undefined, undefined, { shouldStart: false });
        }
        // a failed job: select and show the cell that raised
        const index = job.failure?.cellIndex;
        const notebook = (widget as any)?.content;
        if (widget && index !== undefined && notebook && 'activeCellIndex' in notebook) {
          await widget.context.ready;
          notebook.activeCellIndex = index;
          if (notebook.activeCell) {
            await notebook.scrollToCell(notebook.activeCell).catch(() => undefined);
          }
        }
      },
      download: async (job: IJob) => {
        const nb = await api.get(`jobs/${job.id}/output`);
        const blob = new Blob([JSON.stringify(nb.cells ? nb : (nb.notebook ?? nb), null, 1)], { type: 'application/x-ipynb+json' });
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = `${job.name.replace(/[^\w.-]+/g, '-')}-${job.id}.ipynb`;
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      },
      showLogs: (job: IJob) => {
        const id = `aistack-job-log-${job.id}`;
        const existing = Array.from(app.shell.widgets('main')).find(w => w.id === id);
        if (existing) {
          app.shell.activateById(id);
          return;
        }
        const content = new JobLogView(job, trans, settings.pollIntervalSeconds * 1000);
        const widget = new MainAreaWidget({ content });
        widget.id = id;
        widget.title.label = content.title.label;
        widget.title.icon = jobsIcon;
        app.shell.add(widget, 'main', { mode: 'split-right' });
      },
      cancel: async (job: IJob) => {
        await api.post(`jobs/${job.id}/cancel`);
        await panel.refresh();
      },
      rerun: async (job: IJob, edit: boolean) => {
        if (!edit) {
          const res = await api.post(`jobs/${job.id}/rerun`, {});
          notifySubmitted(res);
          return;
        }
        await runAsJob(job.notebookPath ?? undefined, job);
      }
    };

    const panel = new JobsPanel(actions, trans);
    panel.title.icon = jobsIcon;
    app.shell.add(panel, 'left', { rank: 650 });

    function notifySubmitted(res: any): void {
      const { jobs, text } = describeSubmission(res, trans);
      for (const j of jobs) {
        panel.track(j.id, j.state);
      }
      const actions = [{ label: trans.__('Show jobs'), callback: () => app.shell.activateById(panel.id) }];
      const id = Notification.info(text, { autoClose: 8000, actions });
      void panel.refresh();
      // follow a new job closely until it starts (the panel's own refresh is slower)
      let polls = 0;
      const quick = window.setInterval(() => {
        const state = panel.jobs.find(j => j.id === jobs[0]?.id)?.state;
        if (++polls > 40 || (state && state !== 'queued' && state !== 'admitted')) {
          window.clearInterval(quick);
          return;
        }
        void panel.refresh();
      }, 500);
      // the scheduler places a new job within its next pass: then say where it stands in the queue
      if (jobs.length) {
        window.setTimeout(() => {
          void api
            .get(`jobs/${jobs[0].id}`)
            .then(raw => {
              const again = describeSubmission(jobs.length > 1 ? { jobs: [raw, ...jobs.slice(1).map(j => j.raw)] } : raw, trans);
              Notification.update({ id, message: again.text, type: 'info', autoClose: 8000, actions });
            })
            .catch(() => undefined);
        }, 1500);
      }
    }

    panel.finished.connect((_, jobs) => {
      for (const job of jobs) {
        // the output goes where the dialog said, as soon as the job ends
        if (settings.saveOutputOnFinish && job.user === me.name && job.startedAt) {
          void saveOutput(job).catch(e => console.warn(`aistack_lab: output of job ${job.id} not saved`, e));
        }
      }
      if (!settings.notifyOnFinish) {
        return;
      }
      for (const job of jobs) {
        const msg =
          job.state === 'succeeded'
            ? trans.__('Job "%1" succeeded', job.name)
            : job.state === 'failed'
              ? trans.__('Job "%1" failed: %2', job.name, job.failure?.message ?? '')
              : trans.__('Job "%1" was cancelled', job.name);
        const notify = job.state === 'succeeded' ? Notification.success : job.state === 'failed' ? Notification.error : Notification.warning;
        notify(msg, {
          autoClose: job.state === 'succeeded' ? 8000 : false,
          actions: [
            { label: trans.__('Open output'), callback: () => void actions.openOutput(job).catch(e => panel.showError(e)) },
            { label: trans.__('Logs'), callback: () => actions.showLogs(job) }
          ]
        });
      }
    });

    /** The notebook path the command applies to: an explicit arg, the file browser or the current notebook. */
    function targetPath(args: any): string | null {
      if (args?.path) {
        return String(args.path);
      }
      if (args?.fromBrowser && fileBrowser) {
        const item = fileBrowser.selectedItems().next();
        const model = item && !(item as any).done ? ((item as any).value ?? item) : null;
        return model && model.path && model.path.endsWith('.ipynb') ? model.path : null;
      }
      const current = tracker?.currentWidget;
      return current ? current.context.path : null;
    }

    async function runAsJob(path?: string, rerunOf?: IJob): Promise<void> {
      // a rerun with edits resubmits the job's own snapshot: its output notebook keeps the parameters cell
      // (papermill replaces the injected-parameters cell on the next run)
      let rerunContent: any = undefined;
      if (rerunOf) {
        rerunContent = await api.get(`jobs/${rerunOf.id}/output`);
        path = rerunOf.notebookPath || `${rerunOf.name}.ipynb`;
      }
      if (!path) {
        throw new Error(trans.__('Open a notebook, or pick one in the file browser'));
      }
      // the open notebook's unsaved state is what the user sees: send it when it differs from disk
      const open = rerunOf ? null : (tracker?.find(w => w.context.path === path) ?? null);
      const content = open && open.context.model.dirty ? open.context.model.toJSON() : undefined;
      let kernel = '';
      if (rerunOf) {
        kernel = rerunOf.raw?.kernel_name ?? '';
      } else if (open) {
        kernel = open.sessionContext.kernelPreference.name || (open.context.model.getMetadata('kernelspec') as any)?.name || '';
      } else {
        const model = await docManager.services.contents.get(path, { content: true, type: 'notebook' });
        kernel = model.content?.metadata?.kernelspec?.name ?? '';
      }
      const [inspected, who] = await Promise.all([api.inspect(path, rerunContent ?? content), loadMe()]);
      me = who;
      panel.user = me.name;
      const specs = app.serviceManager.kernelspecs.specs;
      const kernels = Object.values(specs?.kernelspecs ?? {})
        .filter(Boolean)
        .map(s => ({ name: s!.name, display: s!.display_name }));
      if (kernel && !kernels.some(k => k.name === kernel)) {
        kernels.unshift({ name: kernel, display: kernel });
      }
      const request: IJobRequest | null = await showRunJobDialog({
        notebookName: PathExt.basename(path),
        // a filled sweep may run as an experiment (issue 13): the dialog posts it and opens its view
        notebookPath: path,
        notebookContent: rerunContent ?? content,
        openExperiment: (id: string) => app.commands.execute('aistack:open-experiment', { id }),
        params: normalizeParameters(inspected),
        tenants: me.tenants.length ? me.tenants : [{ name: '' }],
        loadProfiles,
        kernels,
        kernel: rerunOf?.raw?.kernel_name || kernel || specs?.default || '',
        defaults: {
          profile: settings.defaultProfile,
          outputLocation: settings.outputLocation,
          timeoutMinutes: settings.timeoutMinutes,
          retries: settings.retries,
          maxSweepJobs: settings.maxSweepJobs
        },
        initial: rerunOf
          ? {
              name: rerunOf.name,
              tenant: rerunOf.tenant,
              profile: rerunOf.profile,
              parameters: rerunOf.parameters as Record<string, ParamValue>,
              priority: rerunOf.priority
            }
          : undefined,
        trans
      });
      if (!request) {
        return;
      }
      const { count, sweep, output_location, ...job } = request;
      // the server extension reads `path` (or uses the unsaved `content`) and sends the notebook itself
      const body: Record<string, unknown> = { ...job, path, content: rerunContent ?? content };
      if (!job.tenant) {
        delete body.tenant;
      }
      if (sweep) {
        body.sweep = sweep;
      }
      const started = performance.now();
      const res = await api.submit(body);
      (window as any).__aistackLastSubmitMs = performance.now() - started;
      for (const j of describeSubmission(res, trans).jobs) {
        outputFolders.set(j.id, output_location);
      }
      notifySubmitted(res);
      app.shell.activateById(panel.id);
      void count;
    }

    app.commands.addCommand(CommandIDs.runAsJob, {
      label: trans.__('Run as job'),
      caption: trans.__('Run this notebook as a queued job on a GPU slice'),
      icon: runJobIcon,
      isEnabled: args => !!targetPath(args),
      execute: async args => {
        try {
          await runAsJob(targetPath(args) ?? undefined);
        } catch (e) {
          await showErrorMessage(trans.__('Run as job'), e as Error);
        }
      }
    });
    app.commands.addCommand(CommandIDs.openPanel, {
      label: trans.__('Show Jobs panel'),
      caption: trans.__('Your notebook jobs: status, progress, logs and output'),
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.runAsJob, category: trans.__('AIStack') });
      palette.addItem({ command: CommandIDs.openPanel, category: trans.__('AIStack') });
    }
    tracker?.currentChanged.connect(() => app.commands.notifyCommandChanged(CommandIDs.runAsJob));
    // --- experiments (issue 13): the experiment view (aistack:open-experiment {id}) ---
    openExperimentCommand(app, palette);
    // --- pipelines view (issue 14): a *.pipeline.yaml as a live graph (aistack:open-pipeline {path, run?}) ---
    openPipelineCommand(app, palette);
    // --- schedules UI (issue 14): aistack:schedule (dialog), aistack:open-schedules (list), file browser menu ---
    scheduleCommands(app, palette, fileBrowser);

    // refresh on a timer; the clock text ticks every second
    let timer: number | undefined;
    const schedule = () => {
      window.clearInterval(timer);
      timer = window.setInterval(() => void panel.refresh(), Math.max(1, settings.pollIntervalSeconds) * 1000);
    };
    window.setInterval(() => panel.tick(), 1000);
    schedule();
    void loadMe().then(m => {
      me = m;
      panel.user = m.name;
      void panel.refresh();
    });

    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(s => {
          const apply = () => {
            settings = { ...DEFAULTS, ...(s.composite as any) };
            schedule();
            startNotices();
          };
          apply();
          s.changed.connect(apply);
        })
        .catch(e => {
          console.warn('aistack_lab: settings not loaded', e);
          startNotices();
        });
    } else {
      startNotices();
    }
    void labShell;
  }
};

export default plugin;
