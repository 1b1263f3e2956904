import {
  browserTimeZone,
  buildScheduleBody,
  defaultForm,
  defaultScheduleName,
  describeWhen,
  NAME_RE,
  scheduleKind,
  validateScheduleForm
} from '../src/scheduleForm';

describe('schedule form', () => {
  it('tells a pipeline file from a notebook', () => {
    expect(scheduleKind('work/train.pipeline.yaml')).toBe('pipeline');
    expect(scheduleKind('train.pipeline.yml')).toBe('pipeline');
    expect(scheduleKind('nb.ipynb')).toBe('notebook');
    expect(scheduleKind('plain.yaml')).toBeNull();
    expect(scheduleKind('')).toBeNull();
  });

  it('derives a valid name from the file name', () => {
    expect(defaultScheduleName('dir/Train Model.pipeline.yaml')).toBe('train-model');
    expect(defaultScheduleName('_x_.ipynb')).toBe('x');
    expect(defaultScheduleName('???.ipynb')).toBe('schedule');
    const long = defaultScheduleName('a'.repeat(39) + '-b.ipynb');
    expect(long.length).toBeLessThanOrEqual(40);
    expect(NAME_RE.test(long)).toBe(true);
  });

  it("defaults the time zone to the browser's", () => {
    expect(browserTimeZone()).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
    expect(defaultForm('a.ipynb').timezone).toBe(browserTimeZone());
    expect(defaultForm('a.ipynb', 'Asia/Shanghai').timezone).toBe('Asia/Shanghai');
  });

  it('builds a cron body for a pipeline (path relative, no profile)', () => {
    const f = { ...defaultForm('/work/train.pipeline.yaml', 'Europe/Berlin'), cron: ' 0  3 * * 1-5 ' };
    expect(validateScheduleForm(f)).toBeNull();
    expect(buildScheduleBody(f)).toEqual({
      name: 'train',
      kind: 'pipeline',
      target: { path: 'work/train.pipeline.yaml' },
      cron: '0 3 * * 1-5',
      timezone: 'Europe/Berlin',
      concurrency_policy: 'Forbid',
      catch_up: 'none',
      catch_up_max: 10
    });
  });

  it('builds a tenant-window body for a notebook with its profile and tenant', () => {
    const f = {
      ...defaultForm('nb.ipynb', 'UTC'),
      when: 'window' as const,
      profile: 'gpu-1g',
      tenant: 'team-a',
      concurrencyPolicy: 'Replace',
      catchUp: 'latest',
      catchUpMax: 3
    };
    expect(validateScheduleForm(f)).toBeNull();
    const body = buildScheduleBody(f);
    expect(body).toEqual({
      name: 'nb',
      kind: 'notebook',
      target: { path: 'nb.ipynb', profile: 'gpu-1g' },
      on_window: true,
      concurrency_policy: 'Replace',
      catch_up: 'latest',
      catch_up_max: 3,
      tenant: 'team-a'
    });
    expect(body).not.toHaveProperty('cron');
  });

  it('names the first problem', () => {
    const ok = { ...defaultForm('nb.ipynb', 'UTC'), profile: 'cpu' };
    expect(validateScheduleForm(ok)).toBeNull();
    expect(validateScheduleForm({ ...ok, path: 'x.txt' })).toMatch(/neither a notebook/);
    expect(validateScheduleForm({ ...ok, name: 'Bad Name' })).toMatch(/^Name/);
    expect(validateScheduleForm({ ...ok, cron: '* * *' })).toMatch(/^Cron: 5 fields/);
    expect(validateScheduleForm({ ...ok, cron: '* * * * * * *' })).toMatch(/^Cron/);
    expect(validateScheduleForm({ ...ok, timezone: ' ' })).toMatch(/^Time zone/);
    expect(validateScheduleForm({ ...ok, when: 'window', cron: '', timezone: '' })).toBeNull();
    expect(validateScheduleForm({ ...ok, concurrencyPolicy: 'Sometimes' })).toMatch(/Allow, Forbid, Replace/);
    expect(validateScheduleForm({ ...ok, catchUp: 'some' })).toMatch(/none, latest, all/);
    expect(validateScheduleForm({ ...ok, catchUpMax: 0 })).toMatch(/1\.\.100/);
    expect(validateScheduleForm({ ...ok, catchUpMax: 2.5 })).toMatch(/whole number/);
    expect(validateScheduleForm({ ...ok, catchUpMax: 20 }, 10)).toMatch(/1\.\.10/);
    expect(validateScheduleForm({ ...ok, profile: '' })).toMatch(/^Profile/);
  });

  it('describes when a schedule runs', () => {
    expect(describeWhen({ cron: '0 2 * * *', timezone: 'Europe/Berlin' })).toBe('0 2 * * * (Europe/Berlin)');
    expect(describeWhen({ on_window: true })).toBe("when the tenant's window opens");
  });
});
