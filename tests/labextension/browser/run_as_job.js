// The Run-as-job flow in a real Chromium (Debian's, driven by playwright-core) against a real hub:
// sign in, open a notebook with a parameters cell, Run as job, change parameters (an invalid value first),
// submit, watch the Jobs panel reach "succeeded", open the output and find the parameters' effect; then a
// failing notebook from the file browser's context menu shows its failing cell; the palette opens the
// dialog by keyboard. Screenshots go to $ARTIFACTS. Prints one JSON line of results (timings included).
//
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS [CHROMIUM=/usr/bin/chromium] [STEP_TIMEOUT_MS]
//      [PROFILE=cpu: the profile picked in the dialog] [CORE_ONLY=1: stop after the output and its log —
//      the in-cluster test, where each job is a pod and the rest is what the local test already covers]
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const HUB = process.env.HUB_URL;
const USER = process.env.USER_NAME;
const ART = process.env.ARTIFACTS;
const T = Number(process.env.STEP_TIMEOUT_MS || 60000);
const PROFILE = process.env.PROFILE || 'cpu';
const CORE_ONLY = process.env.CORE_ONLY === '1';
const results = { steps: [] };
const step = name => {
  results.steps.push(name);
  process.stderr.write(`[browser] ${name}\n`);
};

async function shot(page, name) {
  // JupyterLab asks once whether to fetch Jupyter news: answer No (keeps the screenshots clear)
  await page.locator('.Toastify__toast', { hasText: 'Jupyter news' }).getByRole('button', { name: 'No' }).click({ timeout: 300 }).catch(() => {});
  await page.screenshot({ path: path.join(ART, `${name}.png`) });
}

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aistack-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
    acceptDownloads: true
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(T);
  const consoleErrors = [];
  page.on('console', m => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  try {
    // --- sign in
    await page.goto(HUB + 'hub/login');
    await page.fill('input[name="username"]', USER);
    await page.fill('input[name="password"]', process.env.PASSWORD);
    await shot(page, '01-login');
    await Promise.all([page.waitForNavigation(), page.click('input[type="submit"], button[type="submit"]')]);
    step('signed in');

    // --- open the notebook in JupyterLab
    const t0 = Date.now();
    await page.goto(HUB + `user/${USER}/lab/tree/demo.ipynb`);
    const button = page.locator('.jp-NotebookPanel-toolbar [data-jp-item-name="aistack-run-as-job"]:visible');
    await button.waitFor({ state: 'visible', timeout: 120000 });
    await page.locator('.jp-Notebook .jp-Cell').nth(1).waitFor();
    results.labReadyMs = Date.now() - t0;
    await page.waitForTimeout(500);
    await shot(page, '02-notebook-with-run-as-job');
    step('notebook open, Run as job button present');

    // --- Run as job: the dialog with the typed parameter form
    await button.click();
    const form = page.locator('.aistack-RunJobForm');
    await form.waitFor();
    await page.locator(`.aistack-RunJobForm select[name="profile"] option[value="${PROFILE}"]`).waitFor({ state: 'attached' });
    await page.selectOption('.aistack-RunJobForm select[name="profile"]', PROFILE);
    const params = await page.$$eval('.aistack-RunJobForm [data-param]', els => els.map(e => [e.getAttribute('data-param'), e.getAttribute('data-type'), e.value]));
    results.formParams = params;
    results.profileSummary = await page.textContent('.aistack-RunJobForm-profileSummary');
    results.priorities = await page.$$eval('.aistack-RunJobForm select[name="priority"] option', os => os.map(o => o.value));
    // an invalid value is refused before submission: message shown, Submit disabled
    await page.fill('input[name="param-repeat"]', 'four');
    const submit = page.locator('.aistack-RunJobDialog .jp-Dialog-footer button.jp-mod-accept');
    await page.waitForTimeout(200);
    results.invalidMessage = await page.locator('.aistack-RunJobForm-param:has(input[name="param-repeat"]) .aistack-RunJobForm-error').textContent();
    results.submitDisabledWhenInvalid = await submit.isDisabled();
    await shot(page, '03-dialog-invalid-parameter');
    await page.fill('input[name="param-repeat"]', '4');
    await page.fill('input[name="param-greeting"]', 'bonjour');
    await page.fill('input[name="name"]', 'browser-demo');
    await page.waitForTimeout(200);
    results.submitDisabledWhenValid = await submit.isDisabled();
    await shot(page, '04-dialog-filled');
    step('dialog filled');

    // --- submit; time until the panel shows it running
    const clickAt = Date.now();
    await submit.click();
    const row = page.locator('.aistack-Job', { hasText: 'browser-demo' }).first();
    await row.waitFor();
    const jobId = await row.getAttribute('data-job-id');
    results.jobId = jobId;
    const notification = page.locator('.Toastify__toast', { hasText: 'browser-demo' }).first();
    await notification.waitFor({ timeout: 15000 }).catch(() => {});
    results.submitNotification = await notification.textContent().catch(() => null);
    await page.waitForSelector(`.aistack-Job[data-job-id="${jobId}"][data-state="running"], .aistack-Job[data-job-id="${jobId}"][data-state="succeeded"]`, { timeout: 120000 });
    results.submitToRunningMs = Date.now() - clickAt;
    results.sawRunning = (await page.getAttribute(`.aistack-Job[data-job-id="${jobId}"]`, 'data-state')) === 'running';
    await shot(page, '05-panel-running');
    step('job running in the panel');
    await page.waitForSelector(`.aistack-Job[data-job-id="${jobId}"][data-state="succeeded"], .aistack-Job[data-job-id="${jobId}"][data-state="failed"]`, { timeout: 180000 });
    results.finalState = await page.getAttribute(`.aistack-Job[data-job-id="${jobId}"]`, 'data-state');
    results.progressNow = await page.getAttribute(`.aistack-Job[data-job-id="${jobId}"] [role="progressbar"]`, 'aria-valuenow').catch(() => null);
    await page.waitForTimeout(500);
    await shot(page, '06-panel-succeeded');
    step(`job ${results.finalState}`);

    // --- open the output in JupyterLab and find the parameters' effect
    await page.click(`.aistack-Job[data-job-id="${jobId}"] .aistack-Job-open`);
    const expected = 'RESULT ' + 'bonjour'.repeat(4) + ' 2.0';
    const outputText = page.locator('.jp-NotebookPanel:visible .jp-OutputArea-output', { hasText: expected }).first();
    await outputText.waitFor({ timeout: 60000 });
    results.outputHasEffect = true;
    results.outputTab = await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current').first().textContent();
    await shot(page, '07-output-notebook');
    step('output opened with the new parameters');

    // --- logs
    await page.click(`.aistack-Job[data-job-id="${jobId}"] .aistack-Job-logs`);
    const log = page.locator('.aistack-JobLog pre', { hasText: 'Input Notebook' });
    await log.waitFor({ timeout: 30000 });
    results.logShown = true;
    await shot(page, '08-logs');
    step('log shown');
    if (CORE_ONLY) return;

    // --- download the output notebook
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`.aistack-Job[data-job-id="${jobId}"] .aistack-Job-download`)
    ]);
    results.downloadName = download.suggestedFilename();
    const downloaded = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
    results.downloadHasEffect = JSON.stringify(downloaded.cells).includes(expected);

    // --- rerun with edited parameters: the dialog starts from the job's own values
    await page.click(`.aistack-Job[data-job-id="${jobId}"] .aistack-Job-rerun-edit`);
    await form.waitFor();
    results.rerunPrefill = await page.inputValue('input[name="param-greeting"]');
    await page.keyboard.press('Escape');
    await form.waitFor({ state: 'detached' });

    // --- a sweep: two values of repeat -> a group of two jobs; cancel one while it waits or runs
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tabLabel', { hasText: /^demo\.ipynb$/ }).first().click();
    await button.first().click();
    await form.waitFor();
    await page.locator(`.aistack-RunJobForm select[name="profile"] option[value="${PROFILE}"]`).waitFor({ state: 'attached' });
    await page.selectOption('.aistack-RunJobForm select[name="profile"]', PROFILE);
    await page.fill('input[name="name"]', 'sweepy');
    await page.check('input[name="sweep-repeat"]');
    await page.fill('textarea[name="param-repeat"]', '1, 3');
    await page.waitForTimeout(200);
    results.sweepNote = await page.textContent('.aistack-RunJobForm-sweepNote');
    await shot(page, '08b-dialog-sweep');
    await submit.click();
    const group = page.locator('.aistack-JobGroup', { hasText: 'sweepy' }).first();
    await group.waitFor();
    results.sweepGroupSize = await group.locator('.aistack-Job').count();
    const cancelButton = group.locator('.aistack-Job-cancel').first();
    await cancelButton.waitFor();
    results.cancelledId = await cancelButton.evaluate(b => b.closest('.aistack-Job').dataset.jobId);
    await cancelButton.click();
    await page.waitForFunction(() => {
      const g = document.querySelector('.aistack-JobGroup');
      return g && [...g.querySelectorAll('.aistack-Job')].every(j => ['succeeded', 'failed', 'cancelled'].includes(j.dataset.state));
    }, null, { timeout: 120000 });
    results.sweepStates = await group.locator('.aistack-Job').evaluateAll(els => els.map(e => e.dataset.state));
    results.cancelledState = await page.getAttribute(`.aistack-Job[data-job-id="${results.cancelledId}"]`, 'data-state');
    results.sweepTitle = await group.locator('.aistack-JobGroup-title').textContent();
    await shot(page, '08c-panel-sweep-group');
    step('sweep group');

    // --- a failing notebook, from the file browser's context menu
    await page.click('.lm-TabBar-tab[data-id="filebrowser"]');
    const item = page.locator('.jp-DirListing-item', { hasText: 'fails.ipynb' }).first();
    await item.waitFor();
    // select it first and wait for the selection: the listing re-renders when files change (the output
    // saved above), and a right-click landing during a re-render leaves the old selection (demo.ipynb)
    await item.click();
    await page.locator('.jp-DirListing-item.jp-mod-selected', { hasText: 'fails.ipynb' }).first().waitFor();
    await item.click({ button: 'right' });
    await page.click('.lm-Menu-item[data-command="aistack:run-as-job"]');
    await form.waitFor();
    await page.locator(`.aistack-RunJobForm select[name="profile"] option[value="${PROFILE}"]`).waitFor({ state: 'attached' });
    await page.selectOption('.aistack-RunJobForm select[name="profile"]', PROFILE);
    await page.fill('input[name="name"]', 'browser-fails');
    await submit.click();
    const failRow = page.locator('.aistack-Job', { hasText: 'browser-fails' }).first();
    await failRow.waitFor();
    const failId = await failRow.getAttribute('data-job-id');
    await page.waitForSelector(`.aistack-Job[data-job-id="${failId}"][data-state="failed"]`, { timeout: 180000, state: 'attached' });
    if (!(await page.locator('#aistack-jobs-panel').isVisible())) {
      await page.click('.lm-TabBar-tab[data-id="aistack-jobs-panel"]');
    }
    await page.locator(`.aistack-Job[data-job-id="${failId}"]`).waitFor();
    results.failureText = await page.textContent(`.aistack-Job[data-job-id="${failId}"] .aistack-Job-failure`);
    await shot(page, '09-panel-failed');
    await page.click(`.aistack-Job[data-job-id="${failId}"] .aistack-Job-open`);
    const errorCell = page.locator('.jp-NotebookPanel:visible .jp-Cell', { has: page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]', { hasText: 'ValueError' }) }).first();
    await errorCell.waitFor({ timeout: 60000 });
    await page.waitForTimeout(500);
    results.failingCellActive = await errorCell.evaluate(e => e.classList.contains('jp-mod-active'));
    await errorCell.scrollIntoViewIfNeeded();
    results.failingCellSource = (await errorCell.locator('.jp-InputArea .cm-content').textContent()) || '';
    await shot(page, '10-failing-cell');
    step('failing cell shown');

    // --- keyboard: palette -> Run as job -> dialog; Escape closes it
    await page.locator('.jp-NotebookPanel:visible .jp-Cell').first().click();
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+Shift+C');
    await page.keyboard.type('Run as job');
    await page.waitForTimeout(300);
    await page.keyboard.press('Enter');
    await form.waitFor();
    results.focusInDialog = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('name'));
    await shot(page, '11-dialog-by-keyboard');
    await page.keyboard.press('Escape');
    await form.waitFor({ state: 'detached' });
    step('keyboard palette flow');
  } catch (e) {
    results.error = String(e && e.stack ? e.stack : e);
    await shot(page, '99-failure').catch(() => {});
  } finally {
    results.consoleErrors = consoleErrors.slice(0, 20);
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.stdout.write(JSON.stringify(results) + '\n');
  }
}

main().catch(e => {
  process.stdout.write(JSON.stringify({ error: String(e) }) + '\n');
  process.exit(1);
});
