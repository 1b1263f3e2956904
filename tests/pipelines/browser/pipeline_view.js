// The pipeline view in a real Chromium (playwright-core) against a real hub: sign in, open the pipeline file
// from the command palette as a graph, run it from the toolbar, wait for the states, open the failed task,
// read its log, retry it. Screenshots go to $ARTIFACTS; prints one JSON line of results.
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS PIPELINE_PATH [CHROMIUM]
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
});
