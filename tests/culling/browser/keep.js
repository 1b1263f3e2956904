// GPU idle culling's warning in a real Chromium: the user's lab (a server on a GPU slice whose GPU reads
// idle) shows the "will be stopped" notification with its "Keep for N h" buttons; "Keep for 1 h" is
// clicked and the lab confirms. Screenshots 01-warned, 02-kept; prints one JSON line of results.
// env: HUB_URL USER_NAME PASSWORD ARTIFACTS [CHROMIUM]
const { runInLab } = require('../../browser/lab_session');

runInLab({}, async (page, { step, shot, results }) => {
  const toast = page.locator('.Toastify__toast', { hasText: 'Keep for' }).first();
  await toast.waitFor({ timeout: 120000 });
  results.warning = (await toast.textContent()).replace(/\s+/g, ' ').trim();
  results.buttons = (await toast.locator('button').allTextContents()).map(t => t.trim()).filter(Boolean); // not the close (x)
  await shot(page, '01-warned');
  step('warned');
  await toast.locator('button', { hasText: 'Keep for 1 h' }).click();
  const kept = page.locator('.Toastify__toast', { hasText: 'Kept:' }).first();
  await kept.waitFor({ timeout: 30000 });
  results.kept = (await kept.textContent()).replace(/\s+/g, ' ').trim();
  await shot(page, '02-kept');
  step('kept');
});
