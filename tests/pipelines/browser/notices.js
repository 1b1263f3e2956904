// Notices in a real Chromium: a fresh browser opens the user's lab; the lab extension's notices
// (labextension/src/notices.ts) show the pipeline run that failed while this browser was away, and the
// reminder that a workload waits for the tenant's quota, as JupyterLab notifications (toasts).
// Screenshot 05-notices; prints one JSON line of results (the toasts' texts).
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS [CHROMIUM]
const { runInLab } = require('../../browser/lab_session');

runInLab({}, async (page, { step, shot, results }) => {
  const toasts = () => page.$$eval('.Toastify__toast', els => els.map(e => e.textContent || ''));
  await page.waitForFunction(() => {
    const texts = [...document.querySelectorAll('.Toastify__toast')].map(e => e.textContent || '');
    return texts.some(t => /pipeline 'view-demo' \(run \d+\) failed/.test(t)) &&
      texts.some(t => /wait because its quota is used up/.test(t));
  }, null, { timeout: 120000 }).catch(() => {});
  results.toasts = await toasts();
  await shot(page, '05-notices');
  step('notices shown');
});
