// The live event feed (WebSocket /api/v1/events), reconnecting with back-off.
import type { LiveEvent } from './types';

export type ConnState = 'connecting' | 'open' | 'closed';
type Listener = (e: LiveEvent) => void;
type StateListener = (s: ConnState) => void;

const listeners = new Set<Listener>();
const stateListeners = new Set<StateListener>();
let ws: WebSocket | null = null;
let wanted = false;
let delay = 1000;
let timer: ReturnType<typeof setTimeout> | undefined;
let state: ConnState = 'closed';

/** The latest events, newest first (kept across screens). */
export const recent: { at: number; event: LiveEvent }[] = [];
const RECENT_MAX = 50;

function setState(s: ConnState) {
  state = s;
  for (const l of stateListeners) l(s);
}

export function connState(): ConnState {
  return state;
}

function connect() {
  if (!wanted) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  setState('connecting');
  let sock: WebSocket;
  try {
    sock = new WebSocket(`${proto}//${location.host}/api/v1/events`);
  } catch {
    retry();
    return;
  }
  ws = sock;
  sock.onopen = () => {
    delay = 1000;
    setState('open');
  };
  sock.onmessage = (m) => {
    let e: LiveEvent;
    try {
      e = JSON.parse(String(m.data)) as LiveEvent;
    } catch {
      return;
    }
    if (!e || typeof e !== 'object' || !('type' in e)) return;
    recent.unshift({ at: Date.now(), event: e });
    if (recent.length > RECENT_MAX) recent.length = RECENT_MAX;
    for (const l of listeners) l(e);
  };
  sock.onclose = () => {
    if (ws === sock) ws = null;
    retry();
  };
  sock.onerror = () => sock.close();
}

function retry() {
  setState('closed');
  if (!wanted) return;
  clearTimeout(timer);
  // Back-off: 1 s, 2 s, 4 s ... up to 30 s, with a little jitter.
  timer = setTimeout(connect, delay + Math.random() * 300);
  delay = Math.min(delay * 2, 30000);
}

export function startEvents(): void {
  if (wanted) return;
  wanted = true;
  delay = 1000;
  connect();
}

export function stopEvents(): void {
  wanted = false;
  clearTimeout(timer);
  recent.length = 0;
  const s = ws;
  ws = null;
  s?.close();
  setState('closed');
}

/** Subscribe; returns the unsubscribe function. */
export function onEvent(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function onConnState(l: StateListener): () => void {
  stateListeners.add(l);
  return () => stateListeners.delete(l);
}
