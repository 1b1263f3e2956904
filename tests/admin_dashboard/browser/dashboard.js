// The admin dashboard in a real Chromium (Debian's, driven by playwright-core): charts with real axes in
// light and dark mode (prefers-color-scheme), and an invalid quota edit that keeps the input and says
// what is wrong. Prints one JSON line of results; screenshots go to $ARTIFACTS.
// env: HUB_URL PASSWORD ARTIFACTS [CHROMIUM]
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const HUB = process.env.HUB_URL;
const ART = process.env.ARTIFACTS;
const ADMIN = HUB + 'services/aistack/admin/';
const T = 30000;
const results = { steps: [] };
const step = name => { results.steps.push(name); process.stderr.write(`[browser] ${name}\n`); };

async function login(page) {
  await page.goto(HUB + 'hub/login');
  await page.fill('input[name="username"]', 'admin');
  await page.fill('input[name="password"]', process.env.PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('input[type="submit"], button[type="submit"]')]);
}

async function charts(page) {
  await page.waitForSelector('html[data-charts]', { timeout: T });
  return page.evaluate(() => {
    const out = { state: document.documentElement.getAttribute('data-charts'),
                  theme: document.documentElement.getAttribute('data-bs-theme'),
                  bodyBg: getComputedStyle(document.body).backgroundColor, charts: {} };
    for (const [k, c] of Object.entries(window.aistackCharts || {})) {
      const scales = {};
      for (const [id, s] of Object.entries(c.scales)) {
        scales[id] = { title: s.options.title && s.options.title.text, ticks: s.ticks.length,
                       min: s.min, max: s.max, width: Math.round(s.width), height: Math.round(s.height),
                       tickColor: s.options.ticks.color };
      }
      const meta0 = c.getDatasetMeta(0);
      out.charts[k] = { scales, datasets: c.data.datasets.map(d => ({ label: d.label, colour: d.backgroundColor || d.borderColor, n: d.data.length })),
                        labels: c.data.labels || null, width: c.width, height: c.height,
                        firstBarWidth: meta0 && meta0.data[0] && meta0.data[0].width ? Math.round(meta0.data[0].width) : null };
    }
    return out;
  });
}

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  try {
    for (const scheme of ['light', 'dark']) {
      const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme: scheme });
      const page = await ctx.newPage();
      page.setDefaultTimeout(T);
      await login(page);
      const resp = await page.goto(ADMIN);
      results[scheme + 'Status'] = resp.status();
      await page.uncheck('#live');
      results[scheme] = await charts(page);
      await page.locator('#dashboard').screenshot({ path: path.join(ART, `dashboard-${scheme}.png`) });
      await page.screenshot({ path: path.join(ART, `page-${scheme}.png`) }); // the top: JupyterHub's navbar
      step(`dashboard ${scheme}`);
      if (scheme === 'light') {
        // accounting, storage and environments: filled through the page's api-proxy (the viewer's token)
        for (const id of ['accounting', 'storage', 'environments']) {
          await page.waitForSelector(`#${id}[data-loaded="1"]`, { timeout: T });
        }
        results.partials = await page.evaluate(() => {
          const text = id => { const e = document.getElementById(id); return e ? e.textContent.trim() : null; };
          const rows = sel => document.querySelectorAll(sel).length;
          const err = document.getElementById('acc-report-error');
          return { accError: err && !err.classList.contains('d-none') ? err.textContent.trim() : '',
                   accRows: rows('#acc-report tbody tr'), accCsv: (document.getElementById('acc-csv') || {}).href || null,
                   stMore: text('st-more'), stRows: rows('#st-usage tbody tr'), envError: text('env-error'),
                   envRows: rows('#env-list tbody tr') };
        });
        await page.locator('#accounting').screenshot({ path: path.join(ART, 'accounting.png') });
        await page.locator('#storage').screenshot({ path: path.join(ART, 'storage.png') });
        await page.locator('#environments').screenshot({ path: path.join(ART, 'environments.png') });
        step('accounting, storage, environments loaded');
        // an invalid quota edit: the page again, the input kept, the message next to it
        const gpus = page.locator('#tenant-team-a input[name="gpus"]').first();
        await gpus.fill('lots');
        const [r] = await Promise.all([page.waitForNavigation(),
          page.click('#tenant-team-a form[id^="quota-team-a-"] button[type="submit"]')]);
        results.invalidStatus = r.status();
        results.invalidUrl = page.url();
        results.pageError = (await page.locator('#page-error').textContent()).replace(/\s+/g, ' ').trim();
        results.fieldError = (await page.locator('#quota-error-team-a').textContent()).trim();
        results.keptValue = await page.locator('#tenant-team-a input[name="gpus"]').first().inputValue();
        results.keptInvalid = await page.locator('#tenant-team-a input[name="gpus"]').first().getAttribute('class');
        results.otherFieldClass = await page.locator('#tenant-team-a input[name="cpus"]').first().getAttribute('class');
        results.afterInvalidCharts = (await charts(page)).state;
        await page.locator('#tenant-team-a').screenshot({ path: path.join(ART, 'quota-invalid.png') });
        step('invalid quota kept');
        // corrected: saved
        await page.locator('#tenant-team-a input[name="gpus"]').first().fill('3');
        await Promise.all([page.waitForURL(u => u.toString().includes('notice='), { timeout: T }),
          page.click('#tenant-team-a form[id^="quota-team-a-"] button[type="submit"]')]);
        results.savedNotice = (await page.locator('.notice').textContent()).trim();
        step('corrected quota saved');
        // the tenant's GPU idle policy: a warning longer than the idle time is refused, the input kept
        await page.uncheck('#live');
        await page.locator('#gpu-idle-team-a input[name="idle_min"]').fill('20');
        await page.locator('#gpu-idle-team-a input[name="warn_min"]').fill('45');
        const [pr] = await Promise.all([page.waitForNavigation(), page.click('#gpu-idle-team-a button[type="submit"]')]);
        results.policyStatus = pr.status();
        results.policyError = (await page.locator('#gpu-idle-error-team-a').textContent()).trim();
        results.policyKept = await page.locator('#gpu-idle-team-a input[name="warn_min"]').inputValue();
        await page.locator('#gpu-idle-team-a').screenshot({ path: path.join(ART, 'gpu-idle-policy-invalid.png') });
        await page.locator('#gpu-idle-team-a input[name="warn_min"]').fill('5');
        await Promise.all([page.waitForURL(u => u.toString().includes('notice='), { timeout: T }),
          page.click('#gpu-idle-team-a button[type="submit"]')]);
        results.policySaved = (await page.locator('[data-gpu-idle="team-a"]').textContent()).replace(/\s+/g, ' ').trim();
        step('gpu idle policy');
        // prices and budgets, edited in place through the api-proxy: refused with the API's reason, the
        // input kept; then saved, and the table shows it
        await page.waitForSelector('#accounting[data-loaded="1"]', { timeout: T });
        const accText = id => page.locator(id).textContent().then(t => t.replace(/\s+/g, ' ').trim());
        await page.fill('#acc-b-tenant', 'no-such-tenant');
        await page.fill('#acc-b-amount', '100');
        await page.click('#acc-budget-form button[type="submit"]');
        await page.waitForFunction(() => document.getElementById('acc-budget-error').textContent.trim() !== '', null, { timeout: T });
        results.budgetRefused = await accText('#acc-budget-error');
        results.budgetKept = await page.locator('#acc-b-tenant').inputValue();
        await page.locator('#acc-budget-form').screenshot({ path: path.join(ART, 'budget-refused.png') });
        await page.fill('#acc-b-tenant', 'team-a');
        await page.fill('#acc-b-amount', '250');
        await page.click('#acc-budget-form button[type="submit"]');
        await page.waitForFunction(() => /team-a/.test(document.querySelector('#acc-budgets tbody')?.textContent || ''), null, { timeout: T });
        results.budgetRow = await accText('#acc-budgets tbody');
        results.budgetErrorAfter = await accText('#acc-budget-error');
        const future = new Date(Date.now() + 40 * 86400000).toISOString().slice(0, 10);
        await page.selectOption('#acc-p-res', 'gpu');
        await page.fill('#acc-p-model', 'A100-80GB');
        await page.fill('#acc-p-price', '-1');
        await page.fill('#acc-p-from', future);
        await page.click('#acc-price-form button[type="submit"]');
        await page.waitForFunction(() => document.getElementById('acc-price-error').textContent.trim() !== '', null, { timeout: T });
        results.priceRefused = await accText('#acc-price-error');
        results.priceKept = await page.locator('#acc-p-price').inputValue();
        await page.fill('#acc-p-price', '2.75');
        await page.click('#acc-price-form button[type="submit"]');
        await page.waitForFunction(f => (document.querySelector('#acc-prices tbody')?.textContent || '').includes(f), future, { timeout: T });
        results.priceRows = await page.$$eval('#acc-prices tbody tr', rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()).join(' | ')));
        results.priceFrom = future;
        await page.locator('#accounting').screenshot({ path: path.join(ART, 'accounting-edited.png') });
        step('price and budget edited');
      }
      await ctx.close();
    }
  } catch (e) {
    results.error = String(e && e.stack || e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(results));
}
main();
