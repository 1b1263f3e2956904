// Onboarding in a real Chromium (Debian's, driven by playwright-core) against a real hub: a newcomer signs
// up; the admin sees the pending sign-up on the GPU admin page, follows its link and approves; adds the
// newcomer to a tenant before their first login, makes them tenant admin; creates, renames and deletes a
// tenant, and makes a JupyterHub group a tenant; a user in no tenant sees what to do instead of Start; the
// newcomer signs in for the first time, sees the server limits before Start and starts a server; at the
// limit, Start is replaced by what to do. Prints one JSON line of results; screenshots go to $ARTIFACTS.
//
// env: HUB_URL PASSWORD ARTIFACTS [CHROMIUM=/usr/bin/chromium] [STEP_TIMEOUT_MS]
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const HUB = process.env.HUB_URL;
const PASSWORD = process.env.PASSWORD;
const ART = process.env.ARTIFACTS;
const T = Number(process.env.STEP_TIMEOUT_MS || 30000);
const ADMIN = HUB + 'services/aistack/admin/';
const results = { steps: [] };
const step = name => {
  results.steps.push(name);
  process.stderr.write(`[browser] ${name}\n`);
};
const text = async (page, sel) => ((await page.locator(sel).first().textContent({ timeout: T })) || '').replace(/\s+/g, ' ').trim();

async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1300, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  return page;
}

async function signup(page, name) {
  await page.goto(HUB + 'hub/signup');
  await page.fill('input[name="username"]', name);
  await page.fill('input[name="signup_password"]', PASSWORD);
  await page.fill('input[name="signup_password_confirmation"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#signup_submit')]);
  return text(page, '.alert');
}

async function login(page, name) {
  await page.goto(HUB + 'hub/login');
  await page.fill('input[name="username"]', name);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('input[type="submit"], button[type="submit"]')]);
}

// submit a form on the admin page and wait for the page it redirects to
async function submit(page, buttonSel) {
  await Promise.all([page.waitForURL(u => u.toString().includes('notice='), { timeout: T }), page.click(buttonSel)]);
  return text(page, '.notice');
}

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  });
  try {
    const newbie = await newPage(browser);
    const loner = await newPage(browser);
    const admin = await newPage(browser);

    // --- sign-ups
    results.signupMessage = await signup(newbie, 'newbie');
    await signup(loner, 'loner');
    step('signed up');

    // --- the admin sees who waits, with a link to approve
    await login(admin, 'admin');
    await admin.goto(HUB + 'hub/home'); // every hub page tells an admin that someone waits
    results.hubBanner = await text(admin, '#aistack-pending-signups');
    results.hubBannerLink = await admin.getAttribute('#aistack-pending-signups a', 'href');
    await admin.goto(ADMIN);
    await admin.uncheck('#live'); // no reload under the test's clicks
    results.pendingText = await text(admin, '#signups');
    results.pendingNames = await admin.locator('[data-signup]').evaluateAll(els => els.map(e => e.dataset.signup));
    results.authorizeHref = await admin.getAttribute('#authorize-link', 'href');
    await admin.screenshot({ path: path.join(ART, '01-admin-pending-signups.png'), fullPage: true });
    await Promise.all([admin.waitForNavigation(), admin.click('#authorize-link')]);
    results.authorizeUrl = admin.url();
    for (const name of ['newbie', 'loner']) {
      await Promise.all([admin.waitForNavigation(), admin.click(`a[href$="authorize/${name}"]`)]);
    }
    step('approved');
    await admin.goto(ADMIN);
    await admin.uncheck('#live');
    results.pendingAfter = await text(admin, '#signups');
    results.withoutTenant = await admin.locator('[data-without-tenant]').evaluateAll(els => els.map(e => e.dataset.withoutTenant));

    // --- add the newcomer (never logged in) to team-a, make them tenant admin
    await admin.fill('#tenant-team-a form.add-member input[name="user"]', 'newbie');
    results.addNotice = await submit(admin, '#tenant-team-a form.add-member button[type="submit"]');
    await admin.uncheck('#live');
    results.adminButtonBefore = await text(admin, 'tr[data-member="team-a:newbie"] button[data-action$="-admin"]');
    results.addNoticeGrant = await submit(admin, 'tr[data-member="team-a:newbie"] button[data-action="grant-admin"]');
    await admin.uncheck('#live');
    results.newbieRoles = await text(admin, 'tr[data-member="team-a:newbie"] td.roles');
    await admin.screenshot({ path: path.join(ART, '02-admin-member-added.png'), fullPage: true });
    step('added to a tenant, made tenant admin');

    // --- tenants from the UI: create, rename, delete; a JupyterHub group made a tenant
    await admin.fill('#create-tenant input[name="name"]', 'team-new');
    results.createNotice = await submit(admin, '#create-tenant button[type="submit"]');
    await admin.uncheck('#live');
    results.createdShown = await admin.locator('#tenant-team-new').count();
    await admin.fill('#tenant-team-new .rename-tenant input[name="new_name"]', 'team-renamed');
    results.renameNotice = await submit(admin, '#tenant-team-new .rename-tenant button[type="submit"]');
    await admin.uncheck('#live');
    results.renamedShown = await admin.locator('#tenant-team-renamed').count();
    results.oldNameShown = await admin.locator('#tenant-team-new').count();
    admin.once('dialog', d => d.accept());
    results.deleteNotice = await submit(admin, '#tenant-team-renamed .delete-tenant button[type="submit"]');
    await admin.uncheck('#live');
    results.deletedShown = await admin.locator('#tenant-team-renamed').count();
    results.notTenantRow = await text(admin, 'tr[data-group="made-in-hub"]');
    results.makeTenantNotice = await submit(admin, 'tr[data-group="made-in-hub"] button[type="submit"]');
    await admin.uncheck('#live');
    results.madeTenantShown = await admin.locator('#tenant-made-in-hub').count();
    results.madeTenantMembers = await admin.locator('#tenant-made-in-hub tr.member').evaluateAll(els => els.map(e => e.dataset.member));
    await admin.screenshot({ path: path.join(ART, '03-admin-tenants.png'), fullPage: true });
    step('tenants created, renamed, deleted, made from a group');

    // --- a user in no tenant: guidance, no Start button
    await login(loner, 'loner');
    await loner.goto(HUB + 'hub/home');
    results.lonerHome = await text(loner, '#aistack-no-tenant');
    results.lonerStartButtons = await loner.locator('#start').count();
    await loner.screenshot({ path: path.join(ART, '04-no-tenant-home.png'), fullPage: true });
    await loner.goto(HUB + 'hub/spawn');
    results.lonerSpawn = await text(loner, '#aistack-cannot-start');
    results.lonerSpawnSubmit = await loner.locator('#spawn_form [type="submit"]').count();
    step('no-tenant guidance');

    // --- the newcomer's first login: limits before Start, then a server
    await login(newbie, 'newbie');
    await newbie.goto(HUB + 'hub/home');
    results.newbieLimits = await text(newbie, '#aistack-server-limits');
    results.newbieStartButtons = await newbie.locator('#start').count();
    await newbie.screenshot({ path: path.join(ART, '05-newbie-home.png'), fullPage: true });
    await Promise.all([newbie.waitForNavigation(), newbie.click('#start')]);
    results.formLimit = await text(newbie, '[data-server-limit="team-a"]');
    await newbie.check('input[name="profile"][value="team-a/cpu"]');
    await newbie.screenshot({ path: path.join(ART, '06-newbie-spawn-form.png'), fullPage: true });
    await Promise.all([newbie.waitForNavigation(), newbie.click('#spawn_form [type="submit"]')]);
    await newbie.waitForURL(u => /\/user\/newbie\/(lab|tree)/.test(u.toString()), { timeout: 150000 });
    results.serverUrl = newbie.url();
    step('server started');

    // --- at the tenant's limit: Start is replaced by what to do
    await newbie.goto(HUB + 'hub/home');
    results.limitReached = await text(newbie, '#aistack-limit-reached');
    results.addServerDisabled = await newbie.locator('.new-server-btn').isDisabled();
    await newbie.screenshot({ path: path.join(ART, '07-newbie-at-limit.png'), fullPage: true });
    await newbie.goto(HUB + 'hub/spawn/newbie/second');
    results.secondSpawn = await text(newbie, '#aistack-cannot-start');
    step('limit shown before Start');
  } catch (e) {
    results.error = String((e && e.stack) || e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(results) + '\n');
}

main();
