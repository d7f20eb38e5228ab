// Same-origin JSON client for /api/v1 (docs/api.md).

export interface RowError {
  row: number;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly rows: RowError[] = [],
    readonly retryAfterSecs?: number,
  ) {
    super(message);
  }
}

let csrf = '';
let acceptLanguage = 'ja';
let onUnauthenticated: (() => void) | null = null;

export function setCsrf(token: string): void {
  csrf = token;
}
export function setApiLanguage(lang: string): void {
  acceptLanguage = lang;
}
/** Called when a request answers 401 (the session expired). */
export function onSessionLost(fn: () => void): void {
  onUnauthenticated = fn;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RequestOptions {
  /** A raw body (CSV file) instead of JSON. */
  raw?: Blob | string;
  contentType?: string;
  /** Do not treat a 401 as "session lost" (sign-in itself). */
  quiet401?: boolean;
}

export async function api<T = unknown>(method: Method, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', 'Accept-Language': acceptLanguage };
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let payload: BodyInit | undefined;
  if (opts.raw !== undefined) {
    payload = opts.raw;
    headers['Content-Type'] = opts.contentType ?? 'text/csv';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path.startsWith('/') ? path : `/api/v1/${path}`, {
      method,
      headers,
      body: payload,
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'network', '');
  }
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const o = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
    const err = new ApiError(
      res.status,
      typeof o.code === 'string' ? o.code : String(res.status),
      typeof o.error === 'string' ? o.error : typeof data === 'string' ? data : res.statusText,
      Array.isArray(o.rows) ? (o.rows as RowError[]) : [],
      typeof o.retry_after_secs === 'number' ? o.retry_after_secs : undefined,
    );
    if (res.status === 401 && !opts.quiet401 && onUnauthenticated) onUnauthenticated();
    throw err;
  }
  return data as T;
}

export const get = <T>(p: string) => api<T>('GET', p);
export const post = <T>(p: string, b?: unknown) => api<T>('POST', p, b ?? {});
export const put = <T>(p: string, b?: unknown) => api<T>('PUT', p, b ?? {});
export const del = <T>(p: string) => api<T>('DELETE', p);

/** Build a query string from the set (non-empty) values. */
export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
