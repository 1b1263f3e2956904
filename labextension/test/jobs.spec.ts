import {
  elapsedSeconds,
  estimatedStartText,
  failureText,
  formatDuration,
  waitText,
  groupJobs,
  groupState,
  newlyFinished,
  normalizeJob,
  parseTime,
  progressFraction
} from '../src/jobs';

const NOW = new Date('2026-11-26T06:00:00Z');

const running = normalizeJob({
  id: 7, name: 'train', user: 'ana', tenant: 'vision', profile: 'cpu', state: 'running',
  created_at: '2026-11-26T05:58:00', started_at: '2026-11-26T05:59:00.500000',
  progress: { cells_total: 8, cells_done: 2, current_cell: 2 }
});
const failed = normalizeJob({
  id: 8, name: 'bad', state: 'failed', group_id: 'g1', created_at: '2026-11-26T05:50:00',
  started_at: '2026-11-26T05:50:10', finished_at: '2026-11-26T05:51:10',
  failure: { class: 'cell_error', message: 'In [2] raised ValueError: boom', cell_index: 4, cell_label: 'In [2]', ename: 'ValueError', evalue: 'boom' }
});
const queued = normalizeJob({ id: 9, name: 'q', state: 'queued', group_id: 'g1', position: 2, estimated_start: '2026-11-26T06:03:05Z' });

describe('jobs model', () => {
  it('reads naive timestamps as UTC', () => {
    expect(parseTime('2026-11-26T05:59:00')!.toISOString()).toBe('2026-11-26T05:59:00.000Z');
    expect(parseTime(null)).toBeNull();
    expect(parseTime('nonsense')).toBeNull();
  });

  it('normalises a job', () => {
    expect(running.id).toBe('7');
    expect(running.cellsTotal).toBe(8);
    expect(progressFraction(running)).toBe(0.25);
    expect(progressFraction(failed)).toBe(0);
    expect(queued.position).toBe(2);
  });

  it('formats durations, elapsed time and the estimated start', () => {
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(7620)).toBe('2h 07m');
    expect(Math.round(elapsedSeconds(running, NOW)!)).toBe(60);
    expect(elapsedSeconds(failed, NOW)).toBe(60);
    expect(estimatedStartText(queued, NOW)).toBe('starts in about 3 min');
    expect(estimatedStartText(running, NOW)).toBeNull();
  });

  it('names the failing cell', () => {
    // Closes: failure messages name the output notebook's cell index ("Cell 4"), not the user's cell ("In [2]")
    expect(failureText(failed)).toBe('In [2] raised ValueError: boom');
    expect(failed.failure!.cellIndex).toBe(4); // "Open output" still selects the cell in the output notebook
    expect(failureText(normalizeJob({ id: 1, failure: { class: 'timeout', message: 'a cell timed out' } }))).toBe('a cell timed out');
    expect(failureText(running)).toBeNull();
  });

  it('rounds estimates, shows ranges, and says when nothing is known', () => {
    // Closes: estimates shown to the second or as a raw ISO timestamp ("estimated start 2026-12-02T04:48:22Z")
    const at = (s: number) => new Date(NOW.getTime() + s * 1000).toISOString();
    const q = (extra: Record<string, unknown>) => normalizeJob({ id: 3, name: 'w', state: 'queued', position: 1, ...extra });
    expect(estimatedStartText(q({ estimated_start: at(577) }), NOW)).toBe('starts in about 10 min');
    expect(estimatedStartText(q({ estimated_start: at(900), estimated_start_earliest: at(600), estimated_start_latest: at(1200) }), NOW)).toBe('starts in 10–20 min');
    expect(estimatedStartText(q({ estimated_start: at(12) }), NOW)).toBe('starts within a minute');
    expect(estimatedStartText(q({ estimated_start: at(0), estimated_start_latest: at(300) }), NOW)).toBe('starts within 5 min');
    expect(estimatedStartText(q({ estimated_start: at(34620) }), NOW)).toBe('starts in about 10 h');
    expect(estimatedStartText(q({ estimated_start: at(2400), estimated_start_latest: at(7200) }), NOW)).toBe('starts in 40 min–2 h');
    expect(estimatedStartText(q({ estimated_start: null }), NOW)).toBe('start time unknown');
    expect(waitText(3 * 86400, 3 * 86400)).toBe('about 3 days');
    for (const s of [1, 12, 59, 61, 577, 3599, 3601, 34620, 200000]) {
      const text = estimatedStartText(q({ estimated_start: at(s), estimated_start_latest: at(s * 1.5) }), NOW)!;
      expect(text).not.toMatch(/\d{4}-\d\d-\d\dT|\d+s\b|\d+m \d/);
    }
  });

  it('keeps sweep groups together', () => {
    const groups = groupJobs([failed, running, queued]);
    expect(groups.map(g => g.jobs.map(j => j.id))).toEqual([['8', '9'], ['7']]);
    expect(groupState(groups[0])).toBe('queued');
    expect(groupState({ groupId: 'x', jobs: [failed] })).toBe('failed');
    const ok = normalizeJob({ id: 10, state: 'succeeded' });
    const cancelled = normalizeJob({ id: 11, state: 'cancelled' });
    expect(groupState({ groupId: 'x', jobs: [ok, ok] })).toBe('succeeded');
    expect(groupState({ groupId: 'x', jobs: [ok, cancelled] })).toBe('ended');
    expect(groupState({ groupId: 'x', jobs: [cancelled] })).toBe('cancelled');
  });

  it('finds the jobs that just ended', () => {
    const before = new Map([['7', 'running'], ['8', 'running']]);
    const done = normalizeJob({ id: 7, state: 'succeeded' });
    expect(newlyFinished(before, [done, failed, queued]).map(j => j.id)).toEqual(['7', '8']);
    expect(newlyFinished(new Map([['8', 'failed']]), [failed])).toEqual([]);
  });
});
