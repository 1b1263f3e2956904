/**
 * Pure layout of a pipeline's DAG for the pipeline view (issue 14): longest-path layers from `depends`
 * (a task sits one layer right of its deepest dependency), rows in file order within a layer, and box
 * positions in pixels. No layout library: a pipeline file is small and a layered layout reads well.
 */
export interface IGraphTask {
  name: string;
  depends: string[];
}

export interface ILayout {
  layers: string[][];
  pos: Record<string, { layer: number; row: number; x: number; y: number }>;
  edges: [string, string][];
  width: number;
  height: number;
}

export const BOX = { w: 180, h: 64, gapX: 70, gapY: 24, pad: 16 };

/** Layer of each task: 0 without (known) dependencies, else 1 + the deepest dependency's. Cycles (the
 * service refuses them) do not loop: a dependency met again while being resolved counts as layer 0. */
export function longestPathLayers(tasks: IGraphTask[]): Record<string, number> {
  const byName = new Map(tasks.map(t => [t.name, t]));
  const layer: Record<string, number> = {};
  const visiting = new Set<string>();
  const visit = (name: string): number => {
    if (layer[name] !== undefined) return layer[name];
    if (visiting.has(name)) return -1;
    visiting.add(name);
    let l = 0;
    for (const d of byName.get(name)?.depends ?? []) {
      if (byName.has(d) && d !== name) l = Math.max(l, visit(d) + 1);
    }
    visiting.delete(name);
    layer[name] = l;
    return l;
  };
  tasks.forEach(t => visit(t.name));
  return layer;
}

export function layoutDag(tasks: IGraphTask[]): ILayout {
  const layerOf = longestPathLayers(tasks);
  const layers: string[][] = [];
  for (const t of tasks) {
    (layers[layerOf[t.name]] ??= []).push(t.name);
  }
  for (let i = 0; i < layers.length; i++) layers[i] ??= [];
  const pos: ILayout['pos'] = {};
  layers.forEach((names, layer) =>
    names.forEach((name, row) => {
      pos[name] = { layer, row, x: BOX.pad + layer * (BOX.w + BOX.gapX), y: BOX.pad + row * (BOX.h + BOX.gapY) };
    })
  );
  const names = new Set(tasks.map(t => t.name));
  const edges: [string, string][] = [];
  for (const t of tasks) for (const d of t.depends) if (names.has(d) && d !== t.name) edges.push([d, t.name]);
  const rows = Math.max(0, ...layers.map(l => l.length));
  return {
    layers,
    pos,
    edges,
    width: 2 * BOX.pad + layers.length * BOX.w + Math.max(0, layers.length - 1) * BOX.gapX,
    height: 2 * BOX.pad + rows * BOX.h + Math.max(0, rows - 1) * BOX.gapY
  };
}

export interface INodeLike {
  task: string;
  state: string;
}

/** One state for a task from its nodes (a fan-out has several): failed > running > queued/submitting >
 * waiting > skipped/cancelled > succeeded when all succeeded; plus "done/total" for a fan-out. */
export function taskState(nodes: INodeLike[]): { state: string; done: number; total: number } {
  const total = nodes.length;
  const done = nodes.filter(n => n.state === 'succeeded').length;
  const order = ['failed', 'running', 'admitted', 'queued', 'submitting', 'waiting', 'cancelled', 'skipped'];
  const state = total === 0 ? 'pending' : done === total ? 'succeeded' : order.find(s => nodes.some(n => n.state === s)) ?? nodes[0].state;
  return { state, done, total };
}

export const STATE_COLORS: Record<string, string> = {
  pending: '#e0e0e0',
  waiting: '#e0e0e0',
  submitting: '#fff3c4',
  queued: '#fff3c4',
  admitted: '#fff3c4',
  running: '#bbdefb',
  succeeded: '#c8e6c9',
  failed: '#ffcdd2',
  skipped: '#eeeeee',
  cancelled: '#d7ccc8'
};
