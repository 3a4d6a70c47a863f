import { createHash } from 'node:crypto';
import { html, trusted, type Html } from '../http/pages/html';
import type { FakeUser } from './fixtures';

/**
 * The fake's HTML: the consent page and its error pages. Plain HTML, no script, written with sky's
 * `html` template (every value escaped).
 * It looks like its own site (Bitbucket blue) with sky's layout, and says plainly that it is a fake.
 */

/** Text colours are chosen for WCAG AA contrast on their backgrounds (checked by the browser test). */
const STYLE =
  ':root{color-scheme:light}*{box-sizing:border-box}' +
  'body{margin:0;min-height:100vh;display:flex;flex-direction:column;color:#172b4d;background:#f4f5f7;' +
  'font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}' +
  'header{background:#0747a6;color:#fff}header div{max-width:34rem;margin:0 auto;padding:.75rem 1.25rem;' +
  'display:flex;align-items:center;gap:.75rem;font-weight:700}' +
  '.badge{font-size:.75rem;font-weight:700;letter-spacing:.04em;text-transform:uppercase;background:#fff;color:#0747a6;' +
  'border-radius:4px;padding:0 .4rem}' +
  'main{flex:1;width:100%;max-width:34rem;margin:2.5rem auto;padding:0 1rem}' +
  '.card{background:#fff;border:1px solid #dfe1e6;border-radius:8px;padding:2rem;box-shadow:0 1px 3px rgb(9 30 66 / 10%)}' +
  '.card.error{border-top:6px solid #ae2a19}' +
  'h1{font-size:1.5rem;line-height:1.25;margin:0 0 .75rem}p{margin:.5rem 0}ul{margin:.5rem 0;padding-left:1.25rem}' +
  '.muted{color:#44546f}' +
  'label{display:block;margin:1.25rem 0 .35rem;font-weight:600}' +
  'select{font:inherit;padding:.45rem .5rem;min-width:16rem;max-width:100%;color:#172b4d;background:#fff;' +
  'border:1px solid #738496;border-radius:4px}' +
  '.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.5rem}' +
  'button{padding:.6rem 1.15rem;border:1px solid transparent;border-radius:4px;font:inherit;font-weight:600;cursor:pointer}' +
  '.grant{background:#0052cc;color:#fff}.grant:hover{background:#0747a6}' +
  '.deny{background:#fff;color:#172b4d;border-color:#738496}.deny:hover{background:#f1f2f4}' +
  ':focus-visible{outline:3px solid #0052cc;outline-offset:2px}' +
  'code{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f1f2f4;padding:.1rem .3rem;border-radius:4px}';

/**
 * Styles allowed by hash: no 'unsafe-inline', and no per-response nonce to wire through the fake.
 * form-action must allow the redirect back to any client's callback; nothing may frame the consent.
 */
export const PAGE_CSP =
  `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; ` +
  "form-action *; frame-ancestors 'none'; base-uri 'none'";

/** A whole page. */
function htmlPage(title: string, body: Html, tone: 'error' | '' = ''): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Fake Bitbucket Cloud</title><style>${trusted(STYLE)}</style></head>
<body><header><div>Bitbucket Cloud <span class="badge">fake</span></div></header>
<main><div class="card${tone ? ` ${tone}` : ''}"><h1>${title}</h1>${body}</div></main></body></html>`.text;
}

export function errorPage(title: string, message: string): string {
  return htmlPage(title, html`<p>${message}</p>`, 'error');
}

function userOption(user: FakeUser): Html {
  const login = user.username ?? `nickname ${user.nickname}`;
  return html`<option value="${user.key}">${user.display_name} (${login})</option>`;
}

/** The authorize page: pick a fixture user, then grant or deny; the query travels in hidden fields. */
export function consentPage(query: URLSearchParams, users: FakeUser[]): string {
  const hidden = [...query]
    .filter(([name]) => name !== 'user' && name !== 'decision')
    .map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`);
  const client = query.get('client_id') ?? 'An application';
  return htmlPage(
    'Grant access',
    html`<p><code>${client}</code> wants to:</p>
<ul><li>read your account information</li><li>read your email addresses</li></ul>
<p class="muted">This is the bundled fake Bitbucket Cloud, for development and tests: choose which fixture user you are.</p>
<form method="post" action="/site/oauth2/authorize">${hidden}
<label for="user">Log in as</label><select id="user" name="user">${users.map(userOption)}</select>
<div class="actions"><button class="grant" type="submit" name="decision" value="grant">Grant access</button><button class="deny" type="submit" name="decision" value="deny">Deny</button></div></form>`,
  );
}
