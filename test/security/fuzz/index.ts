/**
 * The HTTP fuzzing of test/security/fuzz.test.ts, one file per part: the arena (a node and the people
 * logged in to it), the request plans fast-check generates for every route (plans), how a plan becomes
 * bytes on a socket (materialise), the oracle that judges each answer, and running a plan (run). The
 * oracle's rules:
 * never a 5xx (but a 503 of the fly click), never a grant to someone whose valid token was not in the
 * request (no fly code or token without a credential and, for a cookie, its CSRF value; no token
 * from /sky/token but for a live refresh token, or a live code with its own verifier), the documented
 * error shapes, nothing from the request echoed unescaped in HTML, and the pending login's sealed
 * cookie refused whenever it is tampered with, expired, replayed, swapped or another key's.
 */

export { Arena } from './arena';
export { cleanPlans, families, roleName, safeEntry, teamConfig, teamParam, YAMLISH } from './plans';
export { isApiError, isOAuthError, jsonOf } from './oracle';
export { outcomes, send } from './run';
