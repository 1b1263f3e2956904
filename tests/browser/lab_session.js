// One real Chromium (playwright-core) session in JupyterLab for the view tests: sign in to the hub, open the
// user's lab, run a command from the palette that asks for one value (if given), then the test's own steps.
// Screenshots go to $ARTIFACTS; prints one JSON line of results (steps, error, console errors).
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS [CHROMIUM]
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

async function runInLab({ command, input }, steps) {
  const HUB = process.env.HUB_URL;
  const USER = process.env.USER_NAME;
  const ART = process.env.ARTIFACTS;
  const results = { steps: [] };
  const step = s => {
    results.steps.push(s);
    process.stderr.write(`[browser] ${s}\n`);
  };
  const shot = (page, name) => page.screenshot({ path: path.join(ART, `${name}.png`) });
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
    // ?reset: the default layout (the launcher), not the workspace an earlier run left in the user's home
    // (homes outlive a test's hub: Isolation.home_root)
    await page.goto(HUB + `user/${USER}/lab?reset`);
    await page.locator('.jp-LauncherCard').first().waitFor({ timeout: 120000 });
    step('lab open');
    if (command) {
      await page.keyboard.press('Control+Shift+C');
      await page.keyboard.type(command);
      await page.locator('.lm-CommandPalette-item', { hasText: command }).first().click();
      await page.locator('.jp-Dialog input').fill(input);
      await page.keyboard.press('Enter');
    }
    await steps(page, { step, shot, results });
  } catch (e) {
    results.error = String(e && e.stack ? e.stack : e);
    await shot(page, '99-error').catch(() => {});
  }
  results.consoleErrors = errors;
  await context.close();
  console.log(JSON.stringify(results));
}

module.exports = { runInLab };
