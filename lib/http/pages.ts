import { randomBytes } from 'node:crypto';
import type { Response } from 'express';
import { skyContextOf } from './context';

/**
 * Server-rendered pages (SPEC §4.6): plain HTML, one look, no framework. Styles and scripts carry a
 * per-response nonce, so the CSP needs neither 'unsafe-inline' nor any external source.
 */

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Text colours are chosen for WCAG AA contrast on their backgrounds (checked by the browser test). */
const STYLE = `
:root { color-scheme: light; --ink: #1b1f24; --muted: #4a5563; --accent: #0b4fa8; --accent-dark: #083b7d;
  --line: #d0d7de; --bg: #f3f5f8; --band: #0d2847; --bad: #a4161a; --ok: #1a6b34; --ok-bg: #e8f5ec; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; min-height: 100vh; display: flex; flex-direction: column; color: var(--ink); background: var(--bg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
.skip { position: absolute; left: -100vw; top: 0.5rem; padding: 0.5rem 0.75rem; background: #fff; color: var(--accent); z-index: 1; }
.skip:focus { left: 0.5rem; }
.band { background: var(--band); color: #fff; }
.band .bar { max-width: 46rem; margin: 0 auto; padding: 0.75rem 1.25rem; display: flex; align-items: center; gap: 0.75rem; }
.brand { display: inline-flex; align-items: center; gap: 0.5rem; color: #fff; font-weight: 700; font-size: 1.15rem; text-decoration: none; }
.brand:hover { color: #fff; text-decoration: underline; }
.tagline { color: #c9d6e8; font-size: 0.9rem; }
main { flex: 1; width: 100%; max-width: 46rem; margin: 2.5rem auto; padding: 0 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 2rem; box-shadow: 0 1px 3px rgb(27 31 36 / 8%); }
.card.error { border-top: 6px solid var(--bad); }
.card.done { border-top: 6px solid var(--ok); }
.heading { display: flex; align-items: center; gap: 0.75rem; margin: 0 0 0.75rem; }
.heading svg, .heading span { flex: none; display: flex; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0; }
h2 { font-size: 1.1rem; margin: 1.75rem 0 0.5rem; }
p { margin: 0.5rem 0; }
.lead { font-size: 1.05rem; }
.muted, .reference, caption { color: var(--muted); }
.reference { font-size: 0.9rem; margin-top: 1.5rem; }
a { color: var(--accent); }
a:hover { color: var(--accent-dark); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.band :focus-visible { outline-color: #fff; }
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: 0.75rem; margin-top: 1.5rem; }
.actions form { margin: 0; }
.button { display: inline-flex; align-items: center; gap: 0.5rem; padding: 0.6rem 1.15rem; border: 1px solid var(--accent);
  border-radius: 6px; background: var(--accent); color: #fff; font: inherit; font-weight: 600; text-decoration: none; cursor: pointer; }
.button:hover { background: var(--accent-dark); border-color: var(--accent-dark); color: #fff; }
.button.secondary { background: #fff; color: var(--accent); }
.button.secondary:hover { background: #eef4fc; color: var(--accent-dark); }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-size: 0.9rem; padding-bottom: 0.35rem; }
th, td { text-align: left; padding: 0.5rem 0.6rem; border-bottom: 1px solid var(--line); }
th { font-size: 0.85rem; font-weight: 600; color: var(--muted); }
tbody th { font-size: 1rem; color: var(--ink); }
.signoff { margin-top: 2rem; padding-top: 1.25rem; border-top: 1px solid var(--line); }
.role { display: inline-block; margin: 0 0.25rem 0.1rem 0; padding: 0 0.55rem; border-radius: 999px; font-size: 0.85rem;
  font-weight: 600; background: #e3ecf8; color: #0a3d80; }
.role.owner { background: var(--ok-bg); color: #17592b; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.35rem 1.25rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
code, textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: #eef1f4; padding: 0.1rem 0.3rem; border-radius: 4px; font-size: 0.9em; overflow-wrap: anywhere; }
label { display: block; font-weight: 600; margin: 1.25rem 0 0.35rem; }
textarea { width: 100%; font-size: 0.85rem; line-height: 1.4; padding: 0.6rem; color: var(--ink); background: #fff;
  border: 1px solid #6e7781; border-radius: 6px; resize: vertical; }
.status { min-height: 1.5rem; }
.status.ok { color: var(--ok); font-weight: 600; }
.status.bad { color: var(--bad); font-weight: 600; }
footer.band { margin-top: auto; }
footer .bar { font-size: 0.85rem; color: #c9d6e8; justify-content: center; }
@media (max-width: 34rem) { .card { padding: 1.25rem; } dl { grid-template-columns: 1fr; } dd { margin-bottom: 0.5rem; } }
`;

/** A small cloud: sky's mark in the page band. Decorative, so hidden from assistive technology. */
const MARK =
  '<svg width="28" height="28" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
  '<path fill="#8cc8ff" d="M6.5 19a4.5 4.5 0 0 1-.9-8.91A6.5 6.5 0 0 1 18.2 8.6 5.2 5.2 0 0 1 17.5 19z"/></svg>';

const ICON = {
  error:
    '<svg width="32" height="32" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
    '<circle cx="12" cy="12" r="11" fill="#a4161a"/><path fill="#fff" d="M11 6h2v8h-2zm0 10h2v2h-2z"/></svg>',
  done:
    '<svg width="32" height="32" viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
    '<circle cx="12" cy="12" r="11" fill="#1a6b34"/><path fill="#fff" d="m10 15.6-3.6-3.6L5 13.4l5 5 9-9L17.6 8z"/></svg>',
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
  /** HTML, already escaped where it carries data. */
  body: (ctx: PageContext) => string;
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
function heading(html: string, tone?: Page['tone']): string {
  return `<div class="heading">${tone ? ICON[tone] : ''}<h1>${html}</h1></div>`;
}

/** Every page goes out through here: one set of safe headers, never cached (pages may show a token). */
export function sendPage(res: Response, status: number, page: Page): void {
  const nonce = randomBytes(16).toString('base64');
  const base = skyContextOf(res.req)?.config.externalUrl.replace(/\/+$/, '') ?? '';
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
      `<meta name="referrer" content="no-referrer">` +
      `<title>${escapeHtml(page.title)} · sky</title><style nonce="${nonce}">${STYLE}</style></head>` +
      `<body><a class="skip" href="#content">Skip to content</a>` +
      `<header class="band"><div class="bar"><a class="brand" href="${escapeHtml(base)}/">${MARK}sky</a>` +
      `<span class="tagline">CI login</span></div></header>` +
      `<main id="content"><div id="card" class="card${page.tone ? ` ${page.tone}` : ''}">` +
      page.body({ nonce, base }) +
      `</div></main><footer class="band"><div class="bar">Logins through Bitbucket Cloud · teams and roles by sky</div></footer>` +
      `</body></html>`,
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
}

export function errorPage(input: ErrorPageInput): Page {
  return {
    title: input.title,
    tone: 'error',
    body: ({ base }) =>
      heading(escapeHtml(input.title), 'error') +
      `<p class="lead">${escapeHtml(input.message)}</p>` +
      `<h2>What to do next</h2><p>${escapeHtml(input.hint)}</p>` +
      `<div class="actions"><a class="button" href="${escapeHtml(input.retryUrl ?? `${base}/sky/login`)}">Log in again</a>` +
      `<a href="${escapeHtml(base)}/">Go to the start page</a></div>` +
      (input.requestId
        ? `<p class="reference">Reference for your administrator: <code>${escapeHtml(input.requestId)}</code> (HTTP ${input.status})</p>`
        : `<p class="reference">HTTP ${input.status}</p>`),
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
}

function passwordForm(choice: LoginChoice, carry: Record<string, string>, id: string): string {
  const hidden = Object.entries(carry)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('');
  return (
    `<form class="password" method="post" action="${escapeHtml(choice.url)}">` +
    hidden +
    `<p><label for="${id}-username">Username</label><br>` +
    `<input id="${id}-username" name="username" autocomplete="username" required maxlength="256"></p>` +
    `<p><label for="${id}-password">Password</label><br>` +
    `<input id="${id}-password" name="password" type="password" autocomplete="current-password" required maxlength="1024"></p>` +
    `<div class="actions"><button type="submit" class="button">Log in with ${escapeHtml(choice.name)}</button></div></form>`
  );
}

/** The login page: every configured connector (SPEC §4.6), a button or a username/password form each. */
export function loginPage(input: LoginPageInput): Page {
  const carry = input.carry ?? {};
  const names = input.choices.map((c) => escapeHtml(c.name));
  const accounts = names.length === 1 ? `your ${names[0]} account` : `${names.join(' or ')}`;
  return {
    title: 'Log in',
    ...(input.problem ? { tone: 'error' as const } : {}),
    body: ({ base }) =>
      heading('Log in') +
      (input.problem ? `<p class="lead" role="alert">${escapeHtml(input.problem)}</p>` : '') +
      `<p class="lead">This CI server signs you in with ${accounts}. ` +
      `Your teams and roles come from the team configurations its owners set.</p>` +
      input.choices
        .map((choice, i) =>
          choice.login === 'password'
            ? passwordForm(choice, carry, `login-${i}`)
            : `<div class="actions"><a class="button" href="${escapeHtml(choice.url)}">Log in with ${escapeHtml(choice.name)}</a></div>`,
        )
        .join('') +
      `<h2>From a terminal</h2>` +
      `<p>Run <code>sky login -c ${escapeHtml(base || 'URL')} -t TARGET</code>: it opens this login in your browser ` +
      `and receives its token when you are done.</p>`,
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

function roleBadges(roles: string[]): string {
  return roles.map((role) => `<span class="role ${escapeHtml(role)}">${escapeHtml(role)}</span>`).join('');
}

/** The path part of the external URL: scripts call the API on the page's own origin, whatever host it was opened by. */
function mountPath(base: string): string {
  return base ? new URL(base).pathname.replace(/\/+$/, '') : '';
}

/**
 * The landing page keeps the CSRF token for guarded unsafe API calls in sessionStorage (the csrf
 * cookie is HttpOnly) and drops `csrf_token` from the address bar, so it is never bookmarked.
 */
function landingScript(apiPath: string): string {
  return (
    `(function(){` +
    `var form=document.getElementById('logout');` +
    `try{sessionStorage.setItem('sky.csrf_token',form.elements.namedItem('csrf_token').value);}catch(e){}` +
    `var url=new URL(location.href);` +
    `if(url.searchParams.has('csrf_token')){url.searchParams.delete('csrf_token');` +
    `history.replaceState(history.state,'',url.pathname+url.search+url.hash);}` +
    `var out=document.getElementById('api-result');` +
    `function say(text,tone){out.textContent=text;out.className='status '+tone;}` +
    `document.getElementById('check-api').addEventListener('click',function(){` +
    `say('Asking the API…','');` +
    `fetch(${JSON.stringify(apiPath)},{credentials:'same-origin',headers:{accept:'application/json'}})` +
    `.then(function(r){if(!r.ok)throw new Error(r.status===401?'You are not logged in any more: log in again.':'The API answered '+r.status+'.');return r.json();})` +
    `.then(function(u){var teams=Object.keys(u.teams).sort().map(function(t){return t+' ('+u.teams[t].join(', ')+')';});` +
    `say('The API knows you as '+(u.display_user_id||u.user_id)+(teams.length?': '+teams.join(', ')+'.':', with no team.'),'ok');})` +
    `.catch(function(e){say('The API refused: '+e.message,'bad');});});` +
    `})();`
  );
}

export function landingPage(input: LandingInput): Page {
  const teams = Object.entries(input.teams).sort(([a], [b]) => a.localeCompare(b));
  const rows = teams
    .map(([team, roles]) => `<tr><th scope="row">${escapeHtml(team)}</th><td>${roleBadges(roles)}</td></tr>`)
    .join('');
  const until = new Date(input.expiresAt * 1000).toISOString();
  return {
    title: 'Your teams',
    body: ({ nonce, base }) =>
      heading(`Hello, ${escapeHtml(input.name || input.userName || input.userId)}`) +
      `<p class="lead">You are logged in until <time datetime="${until}">${until.slice(0, 16).replace('T', ' ')} UTC</time>.</p>` +
      `<h2>Your account</h2>` +
      `<dl><dt>User</dt><dd>${escapeHtml(input.userName || '—')}</dd><dt>User id</dt><dd>${escapeHtml(input.userId)}</dd>` +
      `<dt>Email</dt><dd>${escapeHtml(input.email || 'none confirmed')}</dd>` +
      `<dt>Admin</dt><dd>${input.isAdmin ? 'yes (owner of main)' : 'no'}</dd></dl>` +
      `<h2>Your teams</h2>` +
      (rows
        ? `<table><caption>Your role on each team, from its current configuration</caption>` +
          `<thead><tr><th scope="col">Team</th><th scope="col">Role</th></tr></thead><tbody>${rows}</tbody></table>`
        : '<p>You are not a member of any team.</p>') +
      `<h2>API</h2>` +
      `<p>Scripts on this page call the guarded API with your login cookie; changes also send its CSRF token.</p>` +
      `<p><button type="button" class="button secondary" id="check-api">Check my access with the API</button></p>` +
      `<p id="api-result" class="status" role="status"></p>` +
      `<form id="logout" class="signoff" method="post" action="${escapeHtml(input.logoutUrl)}">` +
      `<input type="hidden" name="csrf_token" value="${escapeHtml(input.csrf)}">` +
      `<p class="muted">Logging out ends this login on every node of this CI server.</p>` +
      `<p><button type="submit" class="button">Log out</button></p></form>` +
      `<script nonce="${nonce}">${landingScript(`${mountPath(base)}/api/v1/user`)}</script>`,
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
  const who = `${escapeHtml(input.name || input.account)}${input.name && input.account ? ` (${escapeHtml(input.account)})` : ''}`;
  const hidden = (name: string, value: string): string =>
    `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`;
  return {
    title: 'Log in the CLI',
    body: () =>
      heading('Log in the sky CLI?') +
      `<p class="lead">A command-line client on this computer, waiting on port ${input.flyPort}, asks to log in to this CI server as <strong>${who}</strong>.</p>` +
      (input.cli
        ? `<p>Confirmation code: <code id="confirmation">${escapeHtml(input.cli.confirmation)}</code></p>` +
          `<p>Continue only if your terminal shows the same code and you just ran <code>sky login</code>.</p>`
        : `<p>Continue only if you just ran <code>fly login</code> or <code>sky login</code> in a terminal on this computer.</p>`) +
      `<form method="post" action="${escapeHtml(input.actionUrl)}" class="actions">` +
      hidden('csrf_token', input.csrf) +
      hidden('fly_port', String(input.flyPort)) +
      (input.cli ? hidden('code_challenge', input.cli.challenge) + hidden('nonce', input.cli.nonce) : '') +
      `<button type="submit" class="button" id="approve">Log in the sky CLI</button></form>` +
      `<p class="muted">If you did not start a login in a terminal, close this page: nothing has been sent.</p>`,
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
 * The sky CLI's listener answers with CORS headers, so its refusal (a 400) is seen and the code is shown
 * to paste; Concourse's fly may not, so its token goes in a no-cors request whose answer is opaque.
 */
function flyScript(target: string, query: string, cors: boolean): string {
  const port = JSON.stringify(new URL(target).port);
  return (
    `(function(){` +
    `var done=false;function $(id){return document.getElementById(id);}` +
    `function finish(title,detail){if(done)return;done=true;$('status').textContent=title;$('detail').textContent=detail;}` +
    `function manual(){if(done)return;finish('Paste this into your terminal','Your browser did not let this page reach the CLI on port '+${port}+'.');` +
    `$('manual').hidden=false;$('handover').focus();$('handover').select();}` +
    `$('copy').addEventListener('click',function(){var text=$('handover').value;` +
    `function fallback(){$('handover').select();var ok=false;try{ok=document.execCommand('copy');}catch(e){}` +
    `$('copied').textContent=ok?'Copied.':'Select the text and copy it (Ctrl+C or ⌘C).';}` +
    `if(navigator.clipboard){navigator.clipboard.writeText(text).then(function(){$('copied').textContent='Copied.';},fallback);}else{fallback();}});` +
    `var abort=new AbortController();var timer=setTimeout(function(){abort.abort();},${FLY_HANDOVER_TIMEOUT_MS});` +
    `fetch(${JSON.stringify(`${target}/?${query}`)},{mode:${JSON.stringify(cors ? 'cors' : 'no-cors')},signal:abort.signal,referrerPolicy:'no-referrer'})` +
    `.then(function(r){clearTimeout(timer);if(r.type!=='opaque'&&!r.ok){manual();return;}if(done)return;finish('You are logged in','The CLI has your login. Return to your terminal; you may close this window.');` +
    `$('card').className='card done';$('done-icon').hidden=false;})` +
    `.catch(function(){clearTimeout(timer);manual();});` +
    `})();`
  );
}

/**
 * After the click: hands the CLI its login on its local port (a code with the CLI's nonce, or fly's
 * `?token=`). When the browser blocks that, shows what to paste (Concourse #8529, #9447).
 */
export function flyDeliveryPage(input: FlyDeliveryInput): Page {
  const target = `http://127.0.0.1:${input.flyPort}`;
  const code = input.code !== undefined;
  const handover = code ? (input.code ?? '') : `bearer ${input.token ?? ''}`;
  const query = code
    ? new URLSearchParams({ code: input.code ?? '', nonce: input.nonce ?? '' }).toString()
    : `token=${encodeURIComponent(handover)}`;
  const what = code ? 'login code' : 'token';
  return {
    title: 'CLI login',
    connectSrc: target,
    body: ({ nonce }) =>
      `<div class="heading"><span id="done-icon" hidden>${ICON.done}</span><h1 id="status">Sending your login to the CLI…</h1></div>` +
      `<p id="detail" class="lead" role="status">The CLI is waiting on port ${input.flyPort} of this computer.</p>` +
      `<div id="manual" hidden>` +
      (code
        ? `<p>Paste this login code where the sky CLI asks for it. It works once, within a minute, and only for the CLI that started this login.</p>`
        : `<p>Paste the token where the CLI asks for it. It works like a password: do not share it.</p>`) +
      `<label for="handover">The ${what} for the CLI</label>` +
      `<textarea id="handover" rows="${code ? 2 : 6}" readonly spellcheck="false" autocomplete="off" data-kind="${code ? 'code' : 'token'}">${escapeHtml(handover)}</textarea>` +
      `<div class="actions"><button type="button" class="button" id="copy">Copy the ${what}</button>` +
      `<span id="copied" class="status ok" role="status"></span></div></div>` +
      `<noscript><p>This page needs JavaScript to hand your login to the CLI. Copy the ${what} from here instead:</p>` +
      `<label for="handover-noscript">The ${what} for the CLI</label>` +
      `<textarea id="handover-noscript" rows="${code ? 2 : 6}" readonly spellcheck="false">${escapeHtml(handover)}</textarea></noscript>` +
      `<script nonce="${nonce}">${flyScript(target, query, code)}</script>`,
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
    body: () =>
      heading('Log out?') +
      `<p class="lead">You are logged in as <strong>${escapeHtml(input.name)}</strong>. Logging out ends this login on every node of this CI server.</p>` +
      `<form method="post" action="${escapeHtml(input.actionUrl)}" class="actions">` +
      `<input type="hidden" name="csrf_token" value="${escapeHtml(input.csrf)}">` +
      `<button type="submit" class="button">Log out</button></form>`,
  };
}
