// Browser side of the lab extension benchmarks (Debian's Chromium via playwright-core). Prints one JSON line.
//   MODE=load   URLS='["http://.../lab?token=..", ...]' ROUNDS=N : JupyterLab load times per URL, alternating
//   MODE=submit HUB_URL USER_NAME PASSWORD ROUNDS=N          : click Submit -> job shown running in the panel
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function launch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aistack-bench-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
    viewport: { width: 1400, height: 900 }
  });
  return { context, dir };
}

async function loadMode() {
  const urls = JSON.parse(process.env.URLS);
  const rounds = Number(process.env.ROUNDS || 5);
  const times = urls.map(() => []);
  const jobsPanel = urls.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < urls.length; i++) {
      // a fresh profile per load: no HTTP cache, no saved workspace
      const { context, dir } = await launch();
      const page = context.pages()[0] || (await context.newPage());
      const t0 = Date.now();
      await page.goto(urls[i]);
      await page.locator('.jp-Launcher').first().waitFor({ timeout: 120000 });
      await page.locator('.jp-DirListing-item').first().waitFor({ timeout: 120000 }).catch(() => {});
      times[i].push(Date.now() - t0);
      jobsPanel[i].push(await page.locator('.lm-TabBar-tab[data-id="aistack-jobs-panel"]').count());
      await context.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return { times, jobsPanel };
}

async function submitMode() {
  const HUB = process.env.HUB_URL;
  const USER = process.env.USER_NAME;
  const rounds = Number(process.env.ROUNDS || 5);
  const { context, dir } = await launch();
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(120000);
  const out = { submitToRunningMs: [], submitToListedMs: [] };
  try {
    await page.goto(HUB + 'hub/login');
    await page.fill('input[name="username"]', USER);
    await page.fill('input[name="password"]', process.env.PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('input[type="submit"], button[type="submit"]')]);
    await page.goto(HUB + `user/${USER}/lab/tree/bench.ipynb`);
    const button = page.locator('.jp-NotebookPanel-toolbar [data-jp-item-name="aistack-run-as-job"]').first();
    await button.waitFor({ state: 'visible' });
    for (let r = 0; r < rounds; r++) {
      await button.click();
      await page.locator('.aistack-RunJobForm select[name="profile"] option[value="cpu"]').waitFor({ state: 'attached' });
      await page.selectOption('.aistack-RunJobForm select[name="profile"]', 'cpu');
      const name = `bench-${process.pid}-${r}`;
      await page.fill('input[name="name"]', name);
      const t0 = Date.now();
      await page.click('.aistack-RunJobDialog .jp-Dialog-footer button.jp-mod-accept');
      const row = page.locator('.aistack-Job', { hasText: name }).first();
      await row.waitFor({ state: 'attached' });
      out.submitToListedMs.push(Date.now() - t0);
      const id = await row.getAttribute('data-job-id');
      await page.waitForSelector(`.aistack-Job[data-job-id="${id}"]:is([data-state="running"],[data-state="succeeded"])`, { state: 'attached' });
      out.submitToRunningMs.push(Date.now() - t0);
      await page.waitForSelector(`.aistack-Job[data-job-id="${id}"]:is([data-state="succeeded"],[data-state="failed"])`, { state: 'attached' });
    }
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

(process.env.MODE === 'submit' ? submitMode() : loadMode())
  .then(r => process.stdout.write(JSON.stringify(r) + '\n'))
  .catch(e => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }) + '\n');
    process.exit(1);
  });
