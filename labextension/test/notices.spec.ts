// Notices and reminders (issues 14, 15): which notices a visit shows, how a reminder is known.
import { FIRST_VISIT_MAX, INotice, noticesToShow, reminderKey } from '../src/noticeRules';

const DAY = 24 * 3600 * 1000;
const NOW = Date.parse('2026-12-04T12:00:00Z');

function notice(id: number, daysAgo: number): INotice {
  return { id, kind: 'schedule_failed', message: `n${id}`, link: null,
           created_at: new Date(NOW - daysAgo * DAY).toISOString().replace(/\.\d+Z$/, 'Z') };
}

describe('noticesToShow', () => {
  it('shows every new notice after the cursor, however old', () => {
    const got = [notice(3, 30), notice(4, 0)];
    expect(noticesToShow(got, false, NOW).map(n => n.id)).toEqual([3, 4]);
  });

  it('on a first visit shows only the newest few of the last week', () => {
    const got = [notice(1, 30), notice(2, 8), ...[3, 4, 5, 6, 7, 8, 9].map(i => notice(i, 1))];
    const shown = noticesToShow(got, true, NOW).map(n => n.id);
    expect(shown).toEqual([5, 6, 7, 8, 9]);
    expect(shown.length).toBe(FIRST_VISIT_MAX);
  });

  it('reads the service timestamps without a zone as UTC', () => {
    const n = { ...notice(1, 0), created_at: '2026-12-04T11:00:00' };
    expect(noticesToShow([n], true, NOW).map(x => x.id)).toEqual([1]);
  });
});

describe('reminderKey', () => {
  it('is the kind and tenant, not the words (counts change)', () => {
    const a = { kind: 'over_quota', level: 'warning' as const, tenant: 'team-a', message: '1 of your workloads' };
    expect(reminderKey(a)).toBe(reminderKey({ ...a, message: '3 of your workloads' }));
    expect(reminderKey(a)).not.toBe(reminderKey({ ...a, tenant: 'team-b' }));
  });
});
