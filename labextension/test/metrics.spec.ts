// The Jobs panel's live metrics line (GET jobs/{id}/metrics answers {job_id, state, metrics: {name: [[step, value]]}}).
import { formatMetric, jobsNeedingMetrics, latestMetrics, metricsLine, normalizeJob } from '../src/jobs';

describe('latestMetrics', () => {
  it('takes the value at the highest step of each metric, by name', () => {
    const latest = latestMetrics({ job_id: '7', state: 'running', metrics: { val_acc: [[2, 0.8], [0, 0.5], [1, 0.7]], loss: [[0, 2.5], [1, 1.25]] } });
    expect(latest.map(m => [m.name, m.step, m.value])).toEqual([
      ['loss', 1, 1.25],
      ['val_acc', 2, 0.8]
    ]);
    expect(latest[1].values).toEqual([0.5, 0.7, 0.8]);
    expect(metricsLine(latest)).toBe('loss 1.25 · val_acc 0.8 (step 2)');
  });

  it('shows nothing without metrics, and skips points that are not numbers', () => {
    expect(latestMetrics({ job_id: '7', state: 'queued', metrics: {} })).toEqual([]);
    expect(latestMetrics(null)).toEqual([]);
    expect(latestMetrics({ metrics: { x: [[0, 'nan'], [1]] } })).toEqual([]);
    expect(metricsLine([])).toBe('');
  });

  it('formats values short', () => {
    expect(formatMetric(12)).toBe('12');
    expect(formatMetric(0.912345)).toBe('0.9123');
    expect(formatMetric(0.0000123)).toBe('1.230e-5');
    expect(formatMetric(12345678.5)).toBe('1.235e+7');
  });
});

describe('jobsNeedingMetrics', () => {
  const job = (id: string, state: string) => normalizeJob({ id, name: id, state, created_at: '2026-11-26T05:58:00' });

  it('reads running jobs every time, a finished job until read after it ended, never a queued one', () => {
    const jobs = [job('1', 'running'), job('2', 'succeeded'), job('3', 'queued'), job('4', 'failed')];
    const known = new Map([
      ['1', 'running'],
      ['2', 'succeeded'],
      ['4', 'running']
    ]);
    expect(jobsNeedingMetrics(jobs, known).map(j => j.id)).toEqual(['1', '4']);
    expect(jobsNeedingMetrics(jobs, new Map()).map(j => j.id)).toEqual(['1', '2', '4']);
    expect(jobsNeedingMetrics([job('1', 'running'), job('5', 'running')], new Map(), 1).map(j => j.id)).toEqual(['1']);
  });
});
