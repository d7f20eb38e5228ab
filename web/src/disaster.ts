// Disaster mode (災害モード): read on sign-in, kept current by the live
// feed's `change` events for resource "disaster" (and re-read whenever the
// feed reconnects, since events may have been missed meanwhile).
import { get, put } from './api';
import { onConnState, onEvent } from './events';
import { canView } from './session';

type Listener = (on: boolean) => void;

let on = false;
const listeners = new Set<Listener>();
let offEvent: (() => void) | null = null;
let offConn: (() => void) | null = null;

function set(v: boolean) {
  if (v === on) return;
  on = v;
  for (const l of listeners) l(on);
}

export function disasterOn(): boolean {
  return on;
}

/** Subscribe; returns the unsubscribe function. */
export function onDisaster(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export async function refreshDisaster(): Promise<void> {
  if (!canView('schedules')) return;
  try {
    set(!!(await get<{ on: boolean }>('/api/v1/disaster')).on);
  } catch {
    /* keep the last known state */
  }
}

/** Turn disaster mode on or off (system and org admins); answers the new state. */
export async function setDisaster(v: boolean): Promise<boolean> {
  const ans = await put<{ on: boolean }>('/api/v1/disaster', { on: v });
  set(!!ans.on);
  return on;
}

/** After sign-in: read the state and follow it. */
export function startDisaster(): void {
  stopDisaster();
  if (!canView('schedules')) return;
  offEvent = onEvent((e) => {
    if (e.type === 'change' && e.resource === 'disaster') {
      if (e.key === 'on' || e.key === 'off') set(e.key === 'on');
      else void refreshDisaster();
    }
  });
  offConn = onConnState((s) => {
    if (s === 'open') void refreshDisaster();
  });
  void refreshDisaster();
}

export function stopDisaster(): void {
  offEvent?.();
  offConn?.();
  offEvent = offConn = null;
  on = false;
}
