import { layoutDag, longestPathLayers, taskState, BOX } from '../src/pipelineGraph';

describe('pipeline graph layout', () => {
  const tasks = [
    { name: 'prep', depends: [] },
    { name: 'train', depends: ['prep'] },
    { name: 'eval', depends: ['prep'] },
    { name: 'report', depends: ['train', 'eval', 'prep'] },
    { name: 'late', depends: ['report'] }
  ];

  it('puts each task one layer after its deepest dependency', () => {
    expect(longestPathLayers(tasks)).toEqual({ prep: 0, train: 1, eval: 1, report: 2, late: 3 });
  });

  it('lays out boxes by layer and row, with one edge per dependency', () => {
    const l = layoutDag(tasks);
    expect(l.layers).toEqual([['prep'], ['train', 'eval'], ['report'], ['late']]);
    expect(l.pos.eval).toEqual({ layer: 1, row: 1, x: BOX.pad + BOX.w + BOX.gapX, y: BOX.pad + BOX.h + BOX.gapY });
    expect(l.edges).toContainEqual(['prep', 'report']);
    expect(l.edges).toHaveLength(6);
    expect(l.width).toBe(2 * BOX.pad + 4 * BOX.w + 3 * BOX.gapX);
    expect(l.height).toBe(2 * BOX.pad + 2 * BOX.h + BOX.gapY);
  });

  it('ignores unknown dependencies and does not loop on a cycle', () => {
    expect(longestPathLayers([{ name: 'a', depends: ['ghost'] }])).toEqual({ a: 0 });
    const c = longestPathLayers([
      { name: 'a', depends: ['b'] },
      { name: 'b', depends: ['a'] }
    ]);
    expect(Object.keys(c).sort()).toEqual(['a', 'b']);
  });

  it('summarises a fan-out task state', () => {
    expect(taskState([{ task: 't', state: 'succeeded' }, { task: 't', state: 'failed' }])).toEqual({ state: 'failed', done: 1, total: 2 });
    expect(taskState([{ task: 't', state: 'succeeded' }])).toEqual({ state: 'succeeded', done: 1, total: 1 });
    expect(taskState([]).state).toBe('pending');
  });
});
