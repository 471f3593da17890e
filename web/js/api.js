// The portal's HTTP API. Same origin only; the session (or guest) cookie is set by the
// server and never touched here.

import { navigate } from './nav.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export async function api(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', String(e));
  }
  const text = await res.text();
  const data = text ? safeJson(text) : null;
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    // The server refuses everything but the password change while the password is one
    // somebody handed over: the page goes there.
    if (err.code === 'password_change_required' && location.pathname !== '/password') navigate('/password', true);
    throw new ApiError(res.status, err.code || 'http_' + res.status, err.message, res.headers.get('retry-after'));
  }
  return data;
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b === undefined ? {} : b);
export const patch = (p, b) => api('PATCH', p, b);
export const del = (p, b) => api('DELETE', p, b);

/** A random key for idempotent chat posts (a retry sends the same key). */
export function idempotencyKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
