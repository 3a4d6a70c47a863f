import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Response } from 'express';
import { skyContextOf } from '../context';
import { html, trusted, type Html } from './html';

export { escapeHtml, html, Html, trusted } from './html';

/**
 * Server-rendered pages (SPEC §4.6): plain HTML, one look, no framework, written with the `html`
 * template (every value escaped unless it is markup). The style sheet and the page scripts are files
 * of their own (./assets, linted like the rest); they go inline with a per-response nonce, so the CSP
 * needs neither 'unsafe-inline' nor any external source. Scripts read their data from data-* attributes.
 */

/** Read once, at load: `npm run build` copies ./assets next to the compiled pages. */
const asset = (name: string): Html => trusted(readFileSync(join(__dirname, 'assets', name), 'utf8'));
/** Text colours are chosen for WCAG AA contrast on their backgrounds (checked by the browser test). */
const STYLE = asset('style.css');
const LANDING_SCRIPT = asset('landing.js');
const FLY_SCRIPT = asset('fly.js');

/** A small cloud: sky's mark in the page band. Decorative, so hidden from assistive technology. */
const MARK = trusted(
  '<svg width="28" height="28" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
    '<path fill="#8cc8ff" d="M6.5 19a4.5 4.5 0 0 1-.9-8.91A6.5 6.5 0 0 1 18.2 8.6 5.2 5.2 0 0 1 17.5 19z"/></svg>',
);

const ICON = {
  error: trusted(
    '<svg width="32" height="32" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
      '<circle cx="12" cy="12" r="11" fill="#a4161a"/><path fill="#fff" d="M11 6h2v8h-2zm0 10h2v2h-2z"/></svg>',
  ),
  done: trusted(
    '<svg width="32" height="32" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
      '<circle cx="12" cy="12" r="11" fill="#1a6b34"/><path fill="#fff" d="m10 15.6-3.6-3.6L5 13.4l5 5 9-9L17.6 8z"/></svg>',
  ),
};

/** What every page body gets to render with. */
export interface PageContext {
  /** The nonce of this response: the only way an inline script or style runs (CSP). */
  nonce: string;
  /** The node's external URL without a trailing slash, or '' when the page is sent outside sky(). */
  base: string;
}

export interface Page {
  title: string;
  body: (ctx: PageContext) => Html;
  /** The look of the card: an error, or a finished step. */
  tone?: 'error' | 'done';
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

/** The heading of a page, with the tone's icon before it; every page has exactly one h1. */
function heading(title: string | Html, tone?: Page['tone']): Html {
  return html`<div class="heading">
    ${tone ? ICON[tone] : ''}
    <h1>${title}</h1>
  </div>`;
}

/**
 * Every page goes out through here: one set of safe headers, never cached (pages may show a token). A
 * page starts `<!doctype html><html lang="en">`, on one line (the fuzz battery tells sky's pages so).
 */
export function sendPage(res: Response, status: number, page: Page): void {
  const nonce = randomBytes(16).toString('base64');
  const ctx = skyContextOf(res.req);
  const base = ctx?.config.externalUrl.replace(/\/+$/, '') ?? '';
  const footer = ctx
    ? `Logins through ${ctx.connectors.map((c) => c.displayName).join(' or ')} · teams and roles by sky`
    : 'Teams and roles by sky';
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
    html`<!doctype html><html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${page.title} · sky</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<a class="skip" href="#content">Skip to content</a>
<header class="band"><div class="bar"><a class="brand" href="${base}/">${MARK}sky</a><span class="tagline">CI login</span></div></header>
<main id="content"><div id="card" class="card${page.tone ? ` ${page.tone}` : ''}">${page.body({ nonce, base })}</div></main>
<footer class="band"><div class="bar">${footer}</div></footer>
</body>
</html>
`.text,
  );
}

export interface ErrorPageInput {
  status: number;
  title: string;
  /** What happened. */
  message: string;
  /** What the person can do next. */
  hint: string;
  requestId?: string;
  /** Where "Log in again" leads; default: the node's login route. */
  retryUrl?: string;
  /** false: the page offers no "Log in again" (a login would not help: a missing page, a server fault). */
  offerLogin?: boolean;
}

export function errorPage(input: ErrorPageInput): Page {
  const reference = input.requestId
    ? html`<p class="reference">Reference for your administrator: <code>${input.requestId}</code> (HTTP ${input.status})</p>`
    : html`<p class="reference">HTTP ${input.status}</p>`;
  return {
    title: input.title,
    tone: 'error',
    body: ({ base }) => html`${heading(input.title, 'error')}
<p class="lead">${input.message}</p>
<h2>What to do next</h2><p>${input.hint}</p>
<div class="actions">${input.offerLogin === false ? html`<a class="button" href="${base}/">Go to the start page</a>` : html`<a class="button" href="${input.retryUrl ?? `${base}/sky/login`}">Log in again</a><a href="${base}/">Go to the start page</a>`}</div>
${reference}`,
  };
}

/** A way to log in, as the login page offers it. */
export interface LoginChoice {
  name: string;
  /** 'redirect': a button to `url`; 'password': a username/password form posted to `url`. */
  login: 'redirect' | 'password';
  /** Absolute, on the external origin (the login's cookies live there). */
  url: string;
}

export interface LoginPageInput {
  choices: LoginChoice[];
  /** What the login carries (redirect_uri, fly_port, the CLI's challenge): hidden fields of each form. */
  carry?: Record<string, string>;
  /** Shown above the choices (a refused password, say). */
  problem?: string;
  /** Shown above the choices, not as an error (you are logged out). */
  notice?: string;
}

const hidden = (name: string, value: string): Html =>
  html`<input type="hidden" name="${name}" value="${value}">`;

function passwordForm(choice: LoginChoice, carry: Record<string, string>, id: string): Html {
  return html`<form class="password" method="post" action="${choice.url}">${Object.entries(carry).map(([name, value]) => hidden(name, value))}
<p><label for="${id}-username">Username</label><br><input id="${id}-username" name="username" autocomplete="username" required maxlength="256"></p>
<p><label for="${id}-password">Password</label><br><input id="${id}-password" name="password" type="password" autocomplete="current-password" required maxlength="1024"></p>
<div class="actions"><button type="submit" class="button">Log in with ${choice.name}</button></div></form>`;
}

/** The login page: every configured connector (SPEC §4.6), a button or a username/password form each. */
export function loginPage(input: LoginPageInput): Page {
  const carry = input.carry ?? {};
  const accounts = input.choices.map((c) => c.name).join(' or ');
  const choices = input.choices.map((choice, i) =>
    choice.login === 'password'
      ? passwordForm(choice, carry, `login-${i}`)
      : html`<div class="actions"><a class="button" href="${choice.url}">Log in with ${choice.name}</a></div>`,
  );
  return {
    title: 'Log in',
    ...(input.problem ? { tone: 'error' as const } : {}),
    body: ({ base }) => html`${heading('Log in')}
${input.problem ? html`<p class="lead" role="alert">${input.problem}</p>` : ''}
${input.notice ? html`<p class="lead" role="status">${input.notice}</p>` : ''}
<p class="lead">This CI server signs you in with ${accounts}. Your teams and roles come from the team configurations its owners set.</p>
${choices}
<h2>From a terminal</h2>
<p>Run <code>sky login -c ${base || 'URL'} -t TARGET</code>: it opens this login in your browser and receives its token when you are done.</p>`,
  };
}

export interface LandingInput {
  name: string;
  userName: string;
  userId: string;
  email: string;
  isAdmin: boolean;
  teams: Record<string, string[]>;
  /** When the login ends (seconds since the epoch, the token's `exp`). */
  expiresAt: number;
  logoutUrl: string;
  csrf: string;
}

/** The path part of the external URL: scripts call the API on the page's own origin, whatever host it was opened by. */
function mountPath(base: string): string {
  return base ? new URL(base).pathname.replace(/\/+$/, '') : '';
}

function teamsTable(teams: [string, string[]][]): Html {
  if (teams.length === 0) return html`<p>You are not a member of any team.</p>`;
  const rows = teams.map(
    ([team, roles]) =>
      html`<tr><th scope="row">${team}</th><td>${roles.map((role) => html`<span class="role ${role}">${role}</span>`)}</td></tr>`,
  );
  return html`<table><caption>Your role on each team, from its current configuration</caption>
<thead><tr><th scope="col">Team</th><th scope="col">Role</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function landingPage(input: LandingInput): Page {
  const teams = Object.entries(input.teams).sort(([a], [b]) => a.localeCompare(b));
  const until = new Date(input.expiresAt * 1000).toISOString();
  return {
    title: 'Your teams',
    body: ({ nonce, base }) => html`${heading(`Hello, ${input.name || input.userName || input.userId}`)}
<p class="lead">You are logged in until <time datetime="${until}">${until.slice(0, 16).replace('T', ' ')} UTC</time>.</p>
<h2>Your account</h2>
<dl><dt>User</dt><dd>${input.userName || '—'}</dd><dt>User id</dt><dd>${input.userId}</dd><dt>Email</dt><dd>${input.email || 'none confirmed'}</dd><dt>Admin</dt><dd>${input.isAdmin ? 'yes (owner of main)' : 'no'}</dd></dl>
<h2>Your teams</h2>
${teamsTable(teams)}
<h2>API</h2>
<p>Scripts on this page call the guarded API with your login cookie; changes also send its CSRF token.</p>
<p><button type="button" class="button secondary" id="check-api">Check my access with the API</button></p>
<p id="api-result" class="status" role="status"></p>
<form id="logout" class="signoff" method="post" action="${input.logoutUrl}">${hidden('csrf_token', input.csrf)}
<p class="muted">Logging out ends this login on every node of this CI server.</p>
<p><button type="submit" class="button">Log out</button></p></form>
<script nonce="${nonce}" data-api="${mountPath(base)}/api/v1/user">${LANDING_SCRIPT}</script>`,
  };
}

/** Gives up on the CLI's port after this long: a listener that never answers must not hide the code. */
const FLY_HANDOVER_TIMEOUT_MS = 10_000;

export interface FlyConsentInput {
  /** Who is logged in, as Bitbucket names them. */
  name: string;
  account: string;
  flyPort: number;
  csrf: string;
  /** POST /sky/fly, absolute on the external origin. */
  actionUrl: string;
  /** The sky CLI's login; absent for Concourse's own fly. */
  cli?: { challenge: string; nonce: string; confirmation: string };
}

/**
 * The fly page (SPEC §4.6): says who is logging in and, for the sky CLI, the confirmation code its
 * terminal shows. Nothing is sent anywhere until the person clicks: the button posts a form with the
 * CSRF field, so a page on another site that sends a browser here gets nothing out of it.
 */
export function flyConsentPage(input: FlyConsentInput): Page {
  const who = input.name && input.account ? `${input.name} (${input.account})` : input.name || input.account;
  const { cli } = input;
  const check = cli
    ? html`<p>Confirmation code: <code id="confirmation">${cli.confirmation}</code></p>
<p>Continue only if your terminal shows the same code and you just ran <code>sky login</code>.</p>`
    : html`<p>Continue only if you just ran <code>fly login</code> or <code>sky login</code> in a terminal on this computer.</p>`;
  const fields = [
    hidden('csrf_token', input.csrf),
    hidden('fly_port', String(input.flyPort)),
    ...(cli ? [hidden('code_challenge', cli.challenge), hidden('nonce', cli.nonce)] : []),
  ];
  return {
    title: 'Log in the CLI',
    body: () => html`${heading('Log in the sky CLI?')}
<p class="lead">A command-line client on this computer, waiting on port ${input.flyPort}, asks to log in to this CI server as <strong>${who}</strong>.</p>
${check}
<form method="post" action="${input.actionUrl}" class="actions">${fields}<button type="submit" class="button" id="approve">Log in the sky CLI</button></form>
<p class="muted">If you did not start a login in a terminal, close this page: nothing has been sent.</p>`,
  };
}

export interface FlyDeliveryInput {
  flyPort: number;
  /** The sky CLI's single-use authorization code, and the nonce its listener expects with it. */
  code?: string;
  nonce?: string;
  /** A bare token, for Concourse's own fly (`?token=bearer%20…`). */
  token?: string;
}

/**
 * After the click: hands the CLI its login on its local port (a code with the CLI's nonce, or fly's
 * `?token=`). When the browser blocks that, shows what to paste (Concourse #8529, #9447). The sky CLI's
 * listener answers with CORS headers (a refusal is seen); Concourse's fly gets a no-cors request.
 */
export function flyDeliveryPage(input: FlyDeliveryInput): Page {
  const target = `http://127.0.0.1:${input.flyPort}`;
  const code = input.code !== undefined;
  const handover = code ? (input.code ?? '') : `bearer ${input.token ?? ''}`;
  const query = code
    ? new URLSearchParams({ code: input.code ?? '', nonce: input.nonce ?? '' }).toString()
    : `token=${encodeURIComponent(handover)}`;
  const what = code ? 'login code' : 'token';
  const rows = code ? 2 : 6;
  const advice = code
    ? html`<p>Paste this login code where the sky CLI asks for it. It works once, within a minute, and only for the CLI that started this login.</p>`
    : html`<p>Paste the token where the CLI asks for it. It works like a password: do not share it.</p>`;
  return {
    title: 'CLI login',
    connectSrc: target,
    body: ({
      nonce,
    }) => html`<div class="heading"><span id="done-icon" hidden>${ICON.done}</span><h1 id="status">Sending your login to the CLI…</h1></div>
<p id="detail" class="lead" role="status">The CLI is waiting on port ${input.flyPort} of this computer.</p>
<div id="manual" hidden>${advice}
<label for="handover">The ${what} for the CLI</label>
<textarea id="handover" rows="${rows}" readonly spellcheck="false" autocomplete="off" data-kind="${code ? 'code' : 'token'}">${handover}</textarea>
<div class="actions"><button type="button" class="button" id="copy">Copy the ${what}</button><span id="copied" class="status ok" role="status"></span></div></div>
<noscript><p>This page needs JavaScript to hand your login to the CLI. Copy the ${what} from here instead:</p>
<label for="handover-noscript">The ${what} for the CLI</label>
<textarea id="handover-noscript" rows="${rows}" readonly spellcheck="false">${handover}</textarea></noscript>
<script nonce="${nonce}" data-target="${target}/?${query}" data-mode="${code ? 'cors' : 'no-cors'}" data-port="${input.flyPort}" data-timeout="${FLY_HANDOVER_TIMEOUT_MS}">${FLY_SCRIPT}</script>`,
  };
}

export interface LogoutPageInput {
  name: string;
  /** POST /sky/logout, absolute on the external origin. */
  actionUrl: string;
  csrf: string;
}

/** A cookie-only GET /sky/logout revokes nothing (a link on any site could send it): it asks. */
export function logoutPage(input: LogoutPageInput): Page {
  return {
    title: 'Log out',
    body: () => html`${heading('Log out?')}
<p class="lead">You are logged in as <strong>${input.name}</strong>. Logging out ends this login on every node of this CI server.</p>
<form method="post" action="${input.actionUrl}" class="actions">${hidden('csrf_token', input.csrf)}<button type="submit" class="button">Log out</button></form>`,
  };
}
