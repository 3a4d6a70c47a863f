import type { FakeUser } from './fixtures';

/** The fake's HTML: the consent page and its error pages. Plain HTML, no script, everything escaped. */

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE =
  'body{font:16px system-ui,sans-serif;color:#172b4d;background:#f4f5f7}' +
  'main{max-width:30rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px}' +
  'button{padding:.6rem 1rem;margin-right:.5rem;border:0;border-radius:4px;font:inherit;cursor:pointer}' +
  '.grant{background:#0052cc;color:#fff}.deny{background:#dfe1e6;color:#172b4d}' +
  'label{display:block;margin:1rem 0 .25rem;font-weight:600}select{font:inherit;padding:.4rem}';

/** A whole page; `body` must already be escaped HTML. */
export function htmlPage(title: string, body: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    `<style>${STYLE}</style></head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`
  );
}

/** Inline style only; form-action must allow the redirect back to any client's callback. */
export const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action *";

export function errorPage(title: string, message: string): string {
  return htmlPage(title, `<p>${escapeHtml(message)}</p>`);
}

function userOption(user: FakeUser): string {
  const login = user.username ?? `nickname ${user.nickname}`;
  return `<option value="${escapeHtml(user.key)}">${escapeHtml(user.display_name)} (${escapeHtml(login)})</option>`;
}

/** The authorize page: pick a fixture user, then grant or deny; the query travels in hidden fields. */
export function consentPage(query: URLSearchParams, users: FakeUser[]): string {
  const hidden = [...query]
    .filter(([name]) => name !== 'user' && name !== 'decision')
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('');
  return htmlPage(
    'Fake Bitbucket Cloud: grant access',
    '<p>An application wants to read your account and email addresses. ' +
      'This is the bundled fake Bitbucket Cloud: choose who you are.</p>' +
      `<form method="post" action="/site/oauth2/authorize">${hidden}` +
      `<label for="user">Log in as</label><select id="user" name="user">${users.map(userOption).join('')}</select>` +
      '<p><button class="grant" type="submit" name="decision" value="grant">Grant access</button>' +
      '<button class="deny" type="submit" name="decision" value="deny">Deny</button></p></form>',
  );
}
