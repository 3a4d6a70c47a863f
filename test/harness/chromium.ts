import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { AxeResults, Result } from 'axe-core';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';

/**
 * A real browser for the browser tests: Debian's Chromium driven by playwright-core, headless, one per
 * test file. There is no silent skip: without Chromium the tests fail and say how to install it.
 */

export const CHROMIUM_PATH = process.env['SKY_CHROMIUM'] ?? '/usr/bin/chromium';

const HOW_TO_INSTALL =
  `The browser tests need Chromium at ${CHROMIUM_PATH}. Install Debian's package ` +
  '(apt-get update && apt-get install -y chromium; .ci/run does this), or set SKY_CHROMIUM to a Chromium binary. ' +
  '`npx playwright install` is not used here.';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`${HOW_TO_INSTALL} (${CHROMIUM_PATH} does not exist)`);
  try {
    return await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      // No sandbox in containers; no network chatter of Chrome's own, so only the test's traffic exists.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
      timeout: 30_000,
    });
  } catch (err) {
    throw new Error(
      `${HOW_TO_INSTALL}\nLaunching it failed: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** Collects CSP violations in every document; init scripts run through DevTools, outside the page's CSP. */
const RECORD_CSP_VIOLATIONS = `
window.__skyCspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__skyCspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
});`;

/** A fresh profile per scenario (no cookies, no storage), at a size that makes readable screenshots. */
export async function freshContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 960, height: 760 }, locale: 'en-US' });
  await context.addInitScript(RECORD_CSP_VIOLATIONS);
  return context;
}

export async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate<string[]>('window.__skyCspViolations || []');
}

const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** WCAG 2 A and AA (labels, contrast, lang, titles, …) plus the heading and landmark checks axe files as best practice. */
const STRUCTURE_RULES = ['page-has-heading-one', 'heading-order', 'landmark-one-main', 'region', 'bypass'];

function describe(violations: Result[]): string {
  return violations
    .map(
      (v) =>
        `${v.id} (${v.impact ?? 'n/a'}): ${v.help}\n` +
        v.nodes.map((n) => `    ${n.target.join(' ')}: ${n.failureSummary ?? ''}`).join('\n'),
    )
    .join('\n');
}

/**
 * Runs axe-core in the page as it is, CSP included: axe is evaluated through DevTools (not a script
 * tag), so the page needs no bypassCSP and its real styles are what the contrast check sees.
 */
export async function accessibilityViolations(page: Page): Promise<string> {
  if (!(await page.evaluate<boolean>('typeof window.axe === "object"'))) await page.evaluate(AXE_SOURCE);
  const wcag = await page.evaluate<AxeResults>(
    `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] }, resultTypes: ['violations'] })`,
  );
  const structure = await page.evaluate<AxeResults>(
    `axe.run(document, { runOnly: { type: 'rule', values: ${JSON.stringify(STRUCTURE_RULES)} }, resultTypes: ['violations'] })`,
  );
  return describe([...wcag.violations, ...structure.violations]);
}

/** Asserts the basics of accessibility and of the page's own CSP; one h1 per page. */
export async function expectAccessible(page: Page): Promise<void> {
  expect(await accessibilityViolations(page)).toBe('');
  expect(await page.locator('h1').count()).toBe(1);
  expect(await page.getAttribute('html', 'lang')).toBe('en');
  expect(await cspViolations(page)).toEqual([]);
}

const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts', 'screenshots');
const README_SHOTS = path.join(__dirname, '..', '..', 'docs', 'screenshots');
/** Pages whose screenshots the README shows; rewritten only on request (SKY_UPDATE_SCREENSHOTS=1). */
const README_PAGES = new Set(['login', 'landing']);

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  if (process.env['SKY_UPDATE_SCREENSHOTS'] === '1' && README_PAGES.has(name)) {
    mkdirSync(README_SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(README_SHOTS, `${name}.png`), fullPage: true });
  }
}

/**
 * The headers every sky page must carry: a CSP whose scripts need the response's nonce (never
 * 'unsafe-inline'), no framing, and no caching (pages may show a token).
 */
export async function expectSafePage(response: Response | null, status = 200): Promise<void> {
  if (!response) throw new Error('the page has no response');
  expect(response.status()).toBe(status);
  const headers = await response.allHeaders();
  expect(headers['content-type']).toMatch(/^text\/html/);
  const csp = headers['content-security-policy'] ?? '';
  const directives = new Map(
    csp.split(';').map((d) => {
      const [name = '', ...values] = d.trim().split(/\s+/);
      return [name, values] as const;
    }),
  );
  expect(directives.get('default-src')).toEqual(["'none'"]);
  expect(directives.get('script-src')).toEqual([expect.stringMatching(/^'nonce-[A-Za-z0-9+/]{22}==?'$/)]);
  expect(csp).not.toContain('unsafe-inline');
  expect(csp).not.toContain('unsafe-eval');
  expect(directives.get('frame-ancestors')).toEqual(["'none'"]);
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['referrer-policy']).toBe('no-referrer');
  // The nonce of the header is the one on the page's script and style tags: each response has its own.
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1] ?? '';
  const body = await response.text();
  for (const tag of body.match(/<(script|style)\b[^>]*>/g) ?? []) expect(tag).toContain(`nonce="${nonce}"`);
}
