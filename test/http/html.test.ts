import { escapeHtml, html, Html, trusted } from '../../lib/http/pages/html';
import {
  errorPage,
  flyConsentPage,
  landingPage,
  loginPage,
  logoutPage,
  type PageContext,
} from '../../lib/http/pages';

const hostile = `"><script>alert('x')</script>&`;
const ctx: PageContext = { nonce: 'n0nce', base: 'https://ci.example' };

test('escapeHtml: the five characters that matter, as numeric references', () => {
  expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe(
    '&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;&#60;/a&#62;',
  );
});

test('html escapes every value; Html, lists of Html and trusted markup go in as they are', () => {
  const inner = html`<b>${'<i>'}</b>`;
  expect(inner).toBeInstanceOf(Html);
  expect(html`<p title="${hostile}">${hostile}</p>`.text).toBe(
    `<p title="${escapeHtml(hostile)}">${escapeHtml(hostile)}</p>`,
  );
  expect(html`<div>${inner}${[inner, 'a&b']}</div>`.text).toBe(
    '<div><b>&#60;i&#62;</b><b>&#60;i&#62;</b>a&#38;b</div>',
  );
  expect(html`${trusted('<svg/>')}`.text).toBe('<svg/>');
  expect(html`[${null}${undefined}${false}${0}${true}]`.text).toBe('[0true]');
  // A string that looks like markup is still data.
  expect(html`${inner.text}`.text).toBe('&#60;b&#62;&#38;#60;i&#38;#62;&#60;/b&#62;');
});

test.each([
  [
    'error',
    errorPage({
      status: 502,
      title: hostile,
      message: hostile,
      hint: hostile,
      requestId: hostile,
      retryUrl: hostile,
    }),
  ],
  [
    'login',
    loginPage({
      choices: [{ name: hostile, login: 'password', url: hostile }],
      carry: { [hostile]: hostile },
      problem: hostile,
    }),
  ],
  [
    'landing',
    landingPage({
      name: hostile,
      userName: hostile,
      userId: hostile,
      email: hostile,
      isAdmin: false,
      teams: { [hostile]: [hostile] },
      expiresAt: 2_000_000_000,
      logoutUrl: hostile,
      csrf: hostile,
    }),
  ],
  [
    'fly consent',
    flyConsentPage({
      name: hostile,
      account: hostile,
      flyPort: 4444,
      csrf: hostile,
      actionUrl: hostile,
      cli: { challenge: hostile, nonce: hostile, confirmation: hostile },
    }),
  ],
  ['logout', logoutPage({ name: hostile, actionUrl: hostile, csrf: hostile })],
])('the %s page: hostile input never leaves the text or the attribute it was put in', (_name, page) => {
  const body = page.body(ctx).text;
  expect(body).not.toContain(hostile);
  expect(body).not.toContain('<script>alert');
  expect(body).not.toMatch(/"><script/);
  expect(body).toContain(escapeHtml(hostile));
});
