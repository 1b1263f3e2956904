/**
 * The pipeline view (issue 14): a `*.pipeline.yaml` drawn as its DAG (pipelineGraph.ts: longest-path
 * layers, HTML boxes, SVG connectors), run from the toolbar (`POST pipelines/runs {path}`), each task
 * colored by its state with a fan-out's count and progress, polled while the run goes. Clicking a task
 * shows its nodes' attempts, the log tail, "Open output" (the job's output notebook) and, when failed,
 * "Retry" (`POST pipelines/runs/{id}/tasks/{task}/retry`).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, MainAreaWidget } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { api, fetchLogBytes } from './api';
import { BOX, IGraphTask, layoutDag, STATE_COLORS, taskState } from './pipelineGraph';

export const OPEN_PIPELINE = 'aistack:open-pipeline';

interface INode {
  key: string;
  task: string;
  index: number | null;
  state: string;
  attempts: number;
  budget: number;
  job_id: number | null;
  job_ids: number[];
  message: string | null;
  failure: string | null;
}

interface IRun {
  id: number;
  name: string;
  state: string;
  message: string | null;
  tasks: (IGraphTask & { fan_out: any })[];
  nodes: INode[];
}

const h = (tag: string, cls: string, text = ''): HTMLElement => {
  const e = document.createElement(tag);
  e.className = cls;
  e.textContent = text;
  return e;
};

export class PipelineView extends Widget {
  private tasks: IGraphTask[] = [];
  private run: IRun | null = null;
  private selected: string | null = null;
  private progress: Record<number, string> = {};
  private timer: number | undefined;
  private header = h('div', 'aistack-PipelineView-header');
  private graph = h('div', 'aistack-PipelineView-graph');
  private details = h('div', 'aistack-PipelineView-details');

  constructor(
    private app: JupyterFrontEnd,
    readonly path: string,
    runId: string | null = null,
    private pollMs = 1500
  ) {
    super();
    this.addClass('aistack-PipelineView');
    this.title.label = PathExt.basename(path) || `Pipeline run ${runId}`;
    this.title.closable = true;
    this.node.style.overflow = 'auto';
    this.node.style.padding = '8px';
    this.graph.style.position = 'relative';
    this.node.append(this.header, this.graph, this.details);
    void this.load(runId);
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  private async load(runId: string | null): Promise<void> {
    try {
      if (this.path) {
        const file = await this.app.serviceManager.contents.get(this.path, { content: true, format: 'text' });
        const v = await api.post<{ tasks: IGraphTask[] }>('pipelines/validate', { spec: file.content });
        this.tasks = v.tasks;
      }
      if (runId) await this.poll(runId);
      else this.render();
    } catch (e) {
      this.error(`Could not load ${this.path || 'the run'}: ${(e as Error).message}`);
    }
  }

  private error(message: string): void {
    this.header.querySelector('.aistack-PipelineView-error')?.remove();
    const err = h('div', 'aistack-PipelineView-error', message);
    err.style.color = 'var(--jp-error-color1)';
    this.header.append(err);
  }

  private async start(): Promise<void> {
    try {
      const run = await api.post<IRun>('pipelines/runs', { path: this.path });
      this.selected = null;
      await this.poll(String(run.id));
    } catch (e) {
      this.error((e as Error).message);
    }
  }

  private async poll(runId: string): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      this.run = await api.get<IRun>(`pipelines/runs/${runId}`);
      this.tasks = this.run.tasks;
      for (const n of this.run.nodes) {
        if (n.job_id !== null && n.state === 'running') {
          const job = await api.get<any>(`jobs/${n.job_id}`).catch(() => null);
          const p = job?.progress;
          if (p && p.cells_total) this.progress[n.job_id] = `${p.cells_done}/${p.cells_total} cells`;
        }
      }
      this.render();
    } catch (e) {
      this.error((e as Error).message);
    }
    if (!this.isDisposed && this.run && this.run.state === 'running') {
      this.timer = window.setTimeout(() => void this.poll(runId), this.pollMs);
    }
  }

  private button(label: string, cls: string, onClick: () => unknown): HTMLButtonElement {
    const b = document.createElement('button');
    b.className = `jp-mod-styled jp-mod-accept ${cls}`;
    b.textContent = label;
    b.style.marginRight = '6px';
    b.onclick = () => void onClick();
    return b;
  }

  private render(): void {
    const run = this.run;
    this.header.innerHTML = '';
    const bar = h('div', 'aistack-PipelineView-toolbar');
    const runButton = this.button('Run', 'aistack-PipelineView-run', () => this.start());
    runButton.disabled = !this.path || run?.state === 'running';
    bar.append(runButton);
    if (run?.state === 'running') {
      bar.append(this.button('Cancel', 'aistack-PipelineView-cancel', async () => {
        await api.post(`pipelines/runs/${run.id}/cancel`).catch(e => this.error(e.message));
        await this.poll(String(run.id));
      }));
    }
    const summary = h('span', 'aistack-PipelineView-summary',
      run ? `run ${run.id} of ${run.name}: ${run.state}${run.message ? ` — ${run.message}` : ''}` : `${this.path}: not run yet`);
    bar.append(summary);
    this.header.append(bar);
    this.renderGraph();
    this.renderDetails();
  }

  private renderGraph(): void {
    const layout = layoutDag(this.tasks);
    this.graph.innerHTML = '';
    this.graph.style.width = `${layout.width}px`;
    this.graph.style.height = `${layout.height}px`;
    const svgNS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(svgNS, 'svg');
    svg.setAttribute('width', String(layout.width));
    svg.setAttribute('height', String(layout.height));
    svg.style.position = 'absolute';
    svg.style.left = svg.style.top = '0';
    for (const [from, to] of layout.edges) {
      const a = layout.pos[from];
      const b = layout.pos[to];
      const path = document.createElementNS(svgNS, 'path');
      const x1 = a.x + BOX.w, y1 = a.y + BOX.h / 2, x2 = b.x, y2 = b.y + BOX.h / 2, mx = (x1 + x2) / 2;
      path.setAttribute('d', `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`);
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', '#888');
      path.setAttribute('stroke-width', '1.5');
      path.setAttribute('class', 'aistack-PipelineView-edge');
      svg.append(path);
    }
    this.graph.append(svg);
    for (const t of this.tasks) {
      const p = layout.pos[t.name];
      const nodes = this.run ? this.run.nodes.filter(n => n.task === t.name) : [];
      const st = taskState(nodes);
      const box = h('div', 'aistack-PipelineView-task');
      box.dataset.task = t.name;
      box.dataset.state = st.state;
      Object.assign(box.style, {
        position: 'absolute', left: `${p.x}px`, top: `${p.y}px`, width: `${BOX.w}px`, height: `${BOX.h}px`,
        boxSizing: 'border-box', border: `2px solid ${this.selected === t.name ? '#1565c0' : '#999'}`,
        borderRadius: '6px', padding: '4px 8px', cursor: 'pointer', background: STATE_COLORS[st.state] ?? '#fff',
        fontSize: '12px', overflow: 'hidden'
      });
      box.append(h('div', 'aistack-PipelineView-taskName', t.name));
      (box.lastChild as HTMLElement).style.fontWeight = 'bold';
      const fan = (t as any).fan_out;
      const count = st.total > 1 || fan ? ` ${st.done}/${st.total || (Array.isArray(fan?.values) ? fan.values.length : fan) || '?'} done` : '';
      const prog = nodes.map(n => (n.job_id !== null && n.state === 'running' ? this.progress[n.job_id] : '')).filter(Boolean)[0];
      box.append(h('div', 'aistack-PipelineView-taskState', `${st.state}${count}${prog ? ` · ${prog}` : ''}`));
      box.onclick = () => {
        this.selected = t.name;
        this.render();
      };
      this.graph.append(box);
    }
  }

  private renderDetails(): void {
    this.details.innerHTML = '';
    const name = this.selected;
    if (!name) return;
    this.details.style.marginTop = '12px';
    this.details.dataset.task = name;
    this.details.append(h('h3', 'aistack-PipelineView-detailsTitle', `Task ${name}`));
    const nodes = this.run ? this.run.nodes.filter(n => n.task === name) : [];
    if (!nodes.length) {
      this.details.append(h('div', '', 'Not run yet: press Run.'));
      return;
    }
    if (nodes.some(n => n.state === 'failed') && this.run) {
      const run = this.run;
      this.details.append(this.button('Retry', 'aistack-PipelineView-retry', async () => {
        await api.post(`pipelines/runs/${run.id}/tasks/${encodeURIComponent(name)}/retry`).catch(e => this.error(e.message));
        await this.poll(String(run.id));
      }));
    }
    for (const n of nodes) {
      const row = h('div', 'aistack-PipelineView-node');
      row.dataset.key = n.key;
      row.append(h('div', '', `${n.key}: ${n.state}, attempt ${n.attempts}/${n.budget}, jobs ${n.job_ids.join(', ') || '—'}` +
        (n.message ? ` — ${n.message}` : '')));
      if (n.job_id !== null) {
        const jobId = String(n.job_id);
        row.append(this.button('Open output', 'aistack-PipelineView-output', async () => {
          try {
            const out = await api.openOutput(jobId, PathExt.dirname(this.path));
            await this.app.commands.execute('docmanager:open', { path: out.path });
          } catch (e) {
            this.error((e as Error).message);
          }
        }));
        const log = h('pre', 'aistack-PipelineView-log');
        Object.assign(log.style, { maxHeight: '160px', overflow: 'auto', background: 'var(--jp-layout-color2)', padding: '4px' });
        row.append(log);
        void fetchLogBytes(jobId, 0)
          .then(b => {
            log.textContent = new TextDecoder().decode(b).split('\n').slice(-20).join('\n') || '(empty log)';
            log.scrollTop = log.scrollHeight;
          })
          .catch(e => (log.textContent = `log: ${e.message}`));
      }
      this.details.append(row);
    }
  }
}

/** `aistack:open-pipeline` with `{path}` (a `*.pipeline.yaml` relative to the server root) and optional `{run}`. */
export function openPipelineCommand(app: JupyterFrontEnd, palette: ICommandPalette | null): void {
  app.commands.addCommand(OPEN_PIPELINE, {
    label: args => (args.path ? 'Open as pipeline graph' : 'Open pipeline'),
    caption: 'A pipeline file as its graph: run it, watch its tasks, open outputs, retry a failed task',
    execute: async args => {
      let path = args.path !== undefined ? String(args.path) : '';
      const run = args.run !== undefined ? String(args.run) : null;
      const current = (app.shell.currentWidget as any)?.context?.path as string | undefined;
      if (!path && !run && current && /\.pipeline\.ya?ml$/.test(current)) path = current;
      if (!path && !run) {
        const got = await InputDialog.getText({ title: 'Open pipeline', label: 'Pipeline file (*.pipeline.yaml)' });
        if (!got.button.accept || !got.value) return;
        path = got.value.trim();
      }
      const content = new PipelineView(app, path, run);
      const widget = new MainAreaWidget({ content });
      widget.id = `aistack-pipeline-${path || run}`.replace(/[^A-Za-z0-9_-]/g, '_');
      widget.title.label = content.title.label;
      widget.title.closable = true;
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    }
  });
  palette?.addItem({ command: OPEN_PIPELINE, category: 'AIStack' });
}
