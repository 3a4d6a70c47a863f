import { randomBytes } from 'node:crypto';
import type { Response } from 'express';

/** Server-rendered pages (SPEC §4.6): plain HTML, one look, no framework, no inline script without a nonce. */

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
:root { color-scheme: light; --ink: #1b1f24; --muted: #4a5563; --accent: #0b4fa8; --line: #d0d7de; --bad: #a4161a; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #f6f8fa; }
main { max-width: 40rem; margin: 4rem auto; padding: 2rem; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
p, dd { color: var(--muted); }
a { color: var(--accent); }
.button, button { display: inline-block; padding: 0.6rem 1.1rem; border: 0; border-radius: 6px; background: var(--accent); color: #fff; font: inherit; text-decoration: none; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); border: 1px solid var(--accent); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.4rem 0.5rem; border-bottom: 1px solid var(--line); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
.error h1 { color: var(--bad); }
.reference { font-size: 0.85rem; }
textarea { width: 100%; font: 0.85rem/1.4 ui-monospace, monospace; }
`;

export interface Page {
  title: string;
  /** HTML, already escaped where it carries data. Receives the nonce for any inline script. */
  body: (nonce: string) => string;
  className?: string;
  /** Extra CSP sources for connect-src (the fly success page talks to the CLI's local port). */
  connectSrc?: string;
}

function contentSecurityPolicy(nonce: string, page: Page): string {
  return [
    "default-src 'none'",
    `style-src 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
    `connect-src ${page.connectSrc ?? "'self'"}`,
    "img-src 'self' data:",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

/** Every page goes out through here: one set of safe headers, never cached (pages may show a token). */
export function sendPage(res: Response, status: number, page: Page): void {
  const nonce = randomBytes(16).toString('base64');
  res.status(status);
  res.set({
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': contentSecurityPolicy(nonce, page),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
  });
  res.send(
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
      `<meta name="viewport" content="width=device-width, initial-scale=1">` +
      `<title>${escapeHtml(page.title)} · sky</title><style nonce="${nonce}">${STYLE}</style></head>` +
      `<body><main${page.className ? ` class="${page.className}"` : ''}>${page.body(nonce)}</main></body></html>`,
  );
}

export interface ErrorPageInput {
  status: number;
  title: string;
  message: string;
  /** What the person can do next. */
  hint: string;
  requestId?: string;
  /** Where "try again" leads (the login route). */
  retryUrl?: string;
}

export function errorPage(input: ErrorPageInput): Page {
  return {
    title: input.title,
    className: 'error',
    body: () =>
      `<h1>${escapeHtml(input.title)}</h1><p>${escapeHtml(input.message)}</p><p>${escapeHtml(input.hint)}</p>` +
      (input.retryUrl ? `<p><a class="button" href="${escapeHtml(input.retryUrl)}">Try again</a></p>` : '') +
      (input.requestId
        ? `<p class="reference">Reference for your administrator: <code>${escapeHtml(input.requestId)}</code> (HTTP ${input.status})</p>`
        : ''),
  };
}

export function loginPage(loginUrl: string, connectorName: string): Page {
  return {
    title: 'Log in',
    body: () =>
      `<h1>Log in to the CI web node</h1><p>Sign in with your ${escapeHtml(connectorName)} account to see your teams.</p>` +
      `<p><a class="button" href="${escapeHtml(loginUrl)}">Log in with ${escapeHtml(connectorName)}</a></p>`,
  };
}

export interface LandingInput {
  name: string;
  userName: string;
  userId: string;
  email: string;
  isAdmin: boolean;
  teams: Record<string, string[]>;
  logoutUrl: string;
  csrf: string;
}

export function landingPage(input: LandingInput): Page {
  const teams = Object.entries(input.teams).sort(([a], [b]) => a.localeCompare(b));
  const rows = teams
    .map(([team, roles]) => `<tr><td>${escapeHtml(team)}</td><td>${escapeHtml(roles.join(', '))}</td></tr>`)
    .join('');
  return {
    title: 'Your teams',
    body: () =>
      `<h1>Hello, ${escapeHtml(input.name || input.userName || input.userId)}</h1>` +
      `<dl><dt>User</dt><dd>${escapeHtml(input.userName || '—')}</dd><dt>User id</dt><dd>${escapeHtml(input.userId)}</dd>` +
      `<dt>Email</dt><dd>${escapeHtml(input.email || 'none confirmed')}</dd>` +
      `<dt>Admin</dt><dd>${input.isAdmin ? 'yes (owner of main)' : 'no'}</dd></dl>` +
      `<h2>Teams</h2>` +
      (rows
        ? `<table><caption class="reference">Your role on each team</caption><thead><tr><th scope="col">Team</th><th scope="col">Roles</th></tr></thead><tbody>${rows}</tbody></table>`
        : '<p>You are not a member of any team.</p>') +
      `<form method="post" action="${escapeHtml(input.logoutUrl)}"><input type="hidden" name="csrf_token" value="${escapeHtml(input.csrf)}">` +
      `<p><button type="submit" class="secondary">Log out</button></p></form>`,
  };
}

/**
 * The fly success page (SPEC §4.6): hands the token to the CLI on its local port; when the browser
 * blocks that, shows the token with a copy button (Concourse #8529, #9447).
 */
export function flySuccessPage(token: string, flyPort: number): Page {
  const target = `http://127.0.0.1:${flyPort}`;
  return {
    title: 'Logged in',
    connectSrc: target,
    body: (nonce) =>
      `<h1 id="status">Sending your token to sky…</h1>` +
      `<p id="detail">Your CLI is waiting on port ${flyPort}.</p>` +
      `<div id="manual" hidden><p>Your browser did not let this page reach the CLI. Copy the token and paste it into the CLI prompt.</p>` +
      `<label for="token">Token</label><textarea id="token" rows="6" readonly>bearer ${escapeHtml(token)}</textarea>` +
      `<p><button type="button" id="copy">Copy token</button></p></div>` +
      `<script nonce="${nonce}">(function(){` +
      `var token=document.getElementById('token').value;` +
      `function manual(){document.getElementById('status').textContent='Almost done';document.getElementById('detail').textContent='';document.getElementById('manual').hidden=false;}` +
      `document.getElementById('copy').addEventListener('click',function(){navigator.clipboard.writeText(token).then(function(){document.getElementById('copy').textContent='Copied';});});` +
      `fetch(${JSON.stringify(target + '/?token=')}+encodeURIComponent(token),{mode:'no-cors'})` +
      `.then(function(){document.getElementById('status').textContent='You are logged in';document.getElementById('detail').textContent='Return to your terminal; you may close this window.';})` +
      `.catch(manual);})();</script>`,
  };
}
