// The pipeline view in a real Chromium (playwright-core) against a real hub: sign in, open the pipeline file
// from the command palette as a graph, run it from the toolbar, wait for the states, open the failed task,
// read its log, retry it; then Schedule… it (a refused cron, then a valid one) and find it in the Schedules
// list. Screenshots go to $ARTIFACTS; prints one JSON line of results.
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS PIPELINE_PATH SCHEDULE_NAME SCHEDULE_CRON SCHEDULE_TZ [CHROMIUM]
const { runInLab } = require('../../browser/lab_session');

const task = name => `.aistack-PipelineView-task[data-task="${name}"]`;

runInLab({ command: 'Open pipeline', input: process.env.PIPELINE_PATH }, async (page, { step, shot, results }) => {
  await page.locator(task('train')).waitFor();
  step('graph drawn');
  await page.locator('.aistack-PipelineView-run').click();
  await page.waitForFunction(s => document.querySelector(s)?.dataset.state === 'failed', task('train'), { timeout: 180000 });
  step('train failed');
  results.tasks = Object.fromEntries(await page.$$eval('.aistack-PipelineView-task', els => els.map(e => [e.dataset.task, e.dataset.state])));
  results.edges = await page.locator('.aistack-PipelineView-edge').count();
  await page.waitForFunction(() => /failed/.test(document.querySelector('.aistack-PipelineView-summary')?.textContent || ''));
  results.summary = await page.locator('.aistack-PipelineView-summary').textContent();
  await page.locator(task('prep')).click();
  await page.locator('.aistack-PipelineView-details[data-task="prep"] .aistack-PipelineView-output').waitFor();
  results.retryOnPrep = await page.locator('.aistack-PipelineView-retry').count();
  await page.locator(task('train')).click();
  await page.locator('.aistack-PipelineView-details[data-task="train"] .aistack-PipelineView-output').waitFor();
  results.retryOnTrain = await page.locator('.aistack-PipelineView-retry').count();
  await page.waitForFunction(() => /broke on purpose/.test(document.querySelector('.aistack-PipelineView-log')?.textContent || ''), null, { timeout: 30000 }).catch(() => {});
  results.log = await page.locator('.aistack-PipelineView-log').first().textContent();
  await shot(page, '01-failed');
  step('details shown');
  await page.locator('.aistack-PipelineView-retry').click();
  await page.waitForFunction(() => /attempt 2\//.test(document.querySelector('.aistack-PipelineView-details')?.textContent || ''), null, { timeout: 120000 });
  await page.waitForFunction(s => document.querySelector(s)?.dataset.state === 'failed', task('train'), { timeout: 180000 });
  await shot(page, '02-retried');
  step('retried');

  // Schedule… on the pipeline view (palette): an invalid cron first (the API refuses it: its message is
  // shown, the typed fields stay), then a valid one; then the Schedules list shows the new row
  const palette = async command => {
    await page.keyboard.press('Control+Shift+C');
    await page.locator('.lm-CommandPalette-input').fill(command === 'aistack:schedule' ? 'Schedule' : 'Schedules');
    await page.locator(`.lm-CommandPalette-item[data-command="${command}"]`).first().click();
  };
  const row = label => page.locator('.jp-Dialog .aistack-ScheduleForm-row', { has: page.locator('span', { hasText: new RegExp(`^${label}\\s*$`) }) });
  const submit = () => page.locator('.jp-Dialog .jp-Dialog-footer button.jp-mod-accept').click();
  await palette('aistack:schedule');
  await page.locator('.jp-Dialog .aistack-ScheduleForm').waitFor();
  await row('Name').locator('input').fill(process.env.SCHEDULE_NAME);
  await row('Cron').locator('input').fill('not a cron at all');
  await row('Time zone').locator('input').fill(process.env.SCHEDULE_TZ);
  await submit();
  await page.locator('.jp-Dialog .aistack-ScheduleForm-error').waitFor();
  results.scheduleError = await page.locator('.jp-Dialog .aistack-ScheduleForm-error').textContent();
  results.keptName = await row('Name').locator('input').inputValue();
  results.keptCron = await row('Cron').locator('input').inputValue();
  results.keptTz = await row('Time zone').locator('input').inputValue();
  await shot(page, '03-schedule-refused');
  step('bad cron refused');
  await row('Cron').locator('input').fill(process.env.SCHEDULE_CRON);
  await submit();
  await page.locator('.jp-Dialog .aistack-ScheduleForm').waitFor({ state: 'detached' });
  step('schedule created');
  await palette('aistack:open-schedules');
  const item = page.locator('.aistack-Schedules-item', { hasText: process.env.SCHEDULE_NAME }).first();
  await item.waitFor();
  results.scheduleRow = await item.textContent();
  results.scheduleId = await item.getAttribute('data-id');
  await shot(page, '04-schedules-list');
  step('schedules list');
});
