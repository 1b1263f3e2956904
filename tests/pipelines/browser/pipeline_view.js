// The pipeline view in a real Chromium (playwright-core) against a real hub: sign in, open the pipeline file
// from the command palette as a graph, run it from the toolbar, wait for the states, open the failed task,
// read its log, retry it. Screenshots go to $ARTIFACTS; prints one JSON line of results.
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS PIPELINE_PATH [CHROMIUM]
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const HUB = process.env.HUB_URL;
const USER = process.env.USER_NAME;
const ART = process.env.ARTIFACTS;
const results = { steps: [] };
const step = s => {
  results.steps.push(s);
  process.stderr.write(`[browser] ${s}\n`);
};
const shot = (page, name) => page.screenshot({ path: path.join(ART, `${name}.png`) });
const task = name => `.aistack-PipelineView-task[data-task="${name}"]`;

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aistack-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    viewport: { width: 1400, height: 1000 }
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(90000);
  const errors = [];
  page.on('console', m => m.type() === 'error' && errors.push(m.text()));
  try {
    await page.goto(HUB + 'hub/login');
    await page.fill('input[name="username"]', USER);
    await page.fill('input[name="password"]', process.env.PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('input[type="submit"], button[type="submit"]')]);
    await page.goto(HUB + `user/${USER}/lab`);
    await page.locator('.jp-LauncherCard').first().waitFor({ timeout: 120000 });
    step('lab open');
    await page.keyboard.press('Control+Shift+C');
    await page.keyboard.type('Open pipeline');
    await page.locator('.lm-CommandPalette-item', { hasText: 'Open pipeline' }).first().click();
    await page.locator('.jp-Dialog input').fill(process.env.PIPELINE_PATH);
    await page.keyboard.press('Enter');
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
  } catch (e) {
    results.error = String(e && e.stack ? e.stack : e);
    await shot(page, '99-error').catch(() => {});
  }
  results.consoleErrors = errors;
  await context.close();
  console.log(JSON.stringify(results));
}
main();
