// The experiment view in a real Chromium (playwright-core) against a real hub: sign in, open the view from the
// command palette, watch the curves grow, stop a running trial, resume it with more budget. Screenshots go
// to $ARTIFACTS; prints one JSON line of results. Then "Run as experiment" from the Run-as-job dialog on
// another notebook opens the new experiment's view.
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS EXPERIMENT_ID SWEEP_NOTEBOOK DIALOG_EXPERIMENT [CHROMIUM]
const { runInLab } = require('../../browser/lab_session');

async function lastSteps(page) {
  return page.$$eval('.aistack-ExperimentView-trials tbody tr', rows =>
    rows.map(r => [r.dataset.trial, r.cells[1].textContent, r.cells[r.cells.length - 2].textContent]));
}

runInLab({ command: 'Open experiment', input: process.env.EXPERIMENT_ID }, async (page, { step, shot, results }) => {
  await page.locator('.aistack-ExperimentView-chart[data-metric="accuracy"] canvas').waitFor();
  step('view open');
  // live: a running trial's last step grows while the view is open (it polls)
  await page.locator('.aistack-ExperimentView-stop').first().waitFor();
  const first = await lastSteps(page);
  await page.waitForFunction(before => {
    const rows = [...document.querySelectorAll('.aistack-ExperimentView-trials tbody tr')];
    return rows.some(r => {
      const b = before.find(x => x[0] === r.dataset.trial);
      const now = parseInt(r.cells[r.cells.length - 2].textContent) || 0;
      return b && now > (parseInt(b[2]) || 0);
    });
  }, first, { timeout: 60000 });
  results.grew = true;
  results.charts = await page.$$eval('.aistack-ExperimentView-chart', els => els.map(e => e.dataset.metric));
  results.summary = await page.locator('.aistack-ExperimentView-summary').textContent();
  await shot(page, '01-live-curves');
  step('curves live');
  // stop the first running trial
  const row = page.locator('.aistack-ExperimentView-trials tbody tr', { has: page.locator('.aistack-ExperimentView-stop') }).first();
  const trial = await row.getAttribute('data-trial');
  results.trial = trial;
  await row.locator('.aistack-ExperimentView-stop').click();
  const sel = `.aistack-ExperimentView-trials tbody tr[data-trial="${trial}"]`;
  await page.waitForFunction(s => /stopped/.test(document.querySelector(s)?.cells[1].textContent || ''), sel);
  results.stoppedText = await page.locator(sel).locator('td').nth(1).textContent();
  await shot(page, '02-stopped');
  step('stopped');
  await page.locator(sel).locator('.aistack-ExperimentView-resume').click();
  await page.waitForFunction(s => /queued|admitted|running/.test(document.querySelector(s)?.cells[1].textContent || ''), sel);
  results.resumedText = await page.locator(sel).locator('td').nth(1).textContent();
  await page.waitForFunction(s => /running/.test(document.querySelector(s)?.cells[1].textContent || ''), sel);
  await shot(page, '03-resumed');
  step('resumed');

  // Run as experiment from the Run-as-job dialog: a filled sweep reveals the experiment's fields; Submit
  // POSTs experiments and opens the new experiment's view
  await page.goto(process.env.HUB_URL + `user/${process.env.USER_NAME}/lab/tree/${process.env.SWEEP_NOTEBOOK}`);
  const button = page.locator('.jp-NotebookPanel-toolbar [data-jp-item-name="aistack-run-as-job"]:visible');
  await button.waitFor({ timeout: 120000 });
  await button.click();
  await page.locator('.aistack-RunJobForm').waitFor();
  await page.locator('.aistack-RunJobForm select[name="profile"] option[value="cpu"]').waitFor({ state: 'attached' });
  await page.selectOption('.aistack-RunJobForm select[name="profile"]', 'cpu');
  await page.fill('.aistack-RunJobForm input[name="name"]', process.env.DIALOG_EXPERIMENT);
  results.toggleHiddenBeforeSweep = !(await page.locator('input[name="as-experiment"]').isVisible());
  await page.check('input[name="sweep-lr"]');
  await page.fill('textarea[name="param-lr"]', '0.2, 0.4');
  await page.check('input[name="as-experiment"]');
  await page.fill('input[name="exp-metric"]', 'loss');
  await page.selectOption('select[name="exp-mode"]', 'min');
  await page.selectOption('select[name="exp-strategy"]', 'random');
  await page.fill('input[name="exp-parallelism"]', '1');
  results.experimentNote = await page.textContent('.aistack-RunJobForm-sweepNote');
  await shot(page, '04-run-as-experiment');
  await page.locator('.aistack-RunJobDialog .jp-Dialog-footer button.jp-mod-accept').click();
  await page.locator('.aistack-RunJobForm').waitFor({ state: 'detached' });
  const view = page.locator('.lm-DockPanel-widget[id^="aistack-experiment-tab-"]:visible', { has: page.locator('.aistack-ExperimentView-summary', { hasText: process.env.DIALOG_EXPERIMENT }) });
  await view.waitFor({ timeout: 60000 });
  results.dialogExperimentId = (await view.getAttribute('id')).replace('aistack-experiment-tab-', '');
  results.dialogSummary = await view.locator('.aistack-ExperimentView-summary').textContent();
  await shot(page, '05-experiment-from-dialog');
  step('experiment from the dialog');
});
