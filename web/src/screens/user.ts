// One user: edit, forwarding, SIP password / provisioning QR, registered devices, delete.
import { del, enc, get, post, put } from '../api';
import { h, navigate, replace } from '../dom';
import { fmtTime, t } from '../i18n';
import { canWrite, hasRight } from '../session';
import type { Department, Device, Forwarding, UserDetail } from '../types';
import { assignable, deptOptions, deptSelectValue, deptValue, loadDepartments, mayLeaveUnassigned } from '../data';
import {
  actions,
  alertBox,
  busy,
  button,
  card,
  clearBox,
  confirmDialog,
  destField,
  field,
  input,
  qrCode,
  secretBox,
  select,
  showError,
  showStatus,
  statusBox,
  table,
} from '../ui';
import { regBadge } from './users';

export function renderUser(main: HTMLElement, ext: string): void {
  const err = alertBox();
  replace(main, h('h1', { id: 'page-title' }, t('user.title', { ext })), err, h('p', null, t('common.loading')));
  void (async () => {
    let u: UserDetail;
    let depts: Department[];
    try {
      [u, depts] = await Promise.all([get<UserDetail>(`/api/v1/users/${enc(ext)}`), loadDepartments()]);
    } catch (e) {
      replace(main, h('h1', null, t('user.title', { ext })), err, h('p', null, h('a', { href: '#/users' }, t('user.back'))));
      showError(err, e);
      return;
    }
    draw(main, u, depts);
  })();
}

function draw(main: HTMLElement, u: UserDetail, depts: Department[]) {
  const writable = canWrite('users');
  const devicesRight = hasRight('devices');
  const ext = u.extension;
  const base = `/api/v1/users/${enc(ext)}`;

  // ---- edit
  const editErr = alertBox('user-edit-error');
  const editOk = statusBox('user-edit-result');
  const name = input('user-name', { value: u.name, required: true, disabled: !writable });
  const choices = assignable(depts);
  const deptVal = deptSelectValue(u.department, depts);
  const deptOpts = deptOptions(choices, mayLeaveUnassigned() || !deptVal);
  if (deptVal && !deptOpts.some(([v]) => v === deptVal)) deptOpts.push([deptVal, deptOptions(depts, false).find(([v]) => v === deptVal)?.[1] ?? deptVal]);
  const dept = select('user-department', deptOpts, deptVal, { disabled: !writable });
  const cidMain = h('input', { type: 'radio', name: 'user-caller-id', id: 'user-caller-id-main', value: 'main', checked: u.caller_id !== 'own', disabled: !writable });
  const cidOwn = h('input', { type: 'radio', name: 'user-caller-id', id: 'user-caller-id-own', value: 'own', checked: u.caller_id === 'own', disabled: !writable });
  const ownDid = input('user-own-did', { value: u.own_did ?? '', inputmode: 'tel', pattern: '[0-9+]*', disabled: !writable });
  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'user-save', 'data-testid': 'user-save' }, t('common.save'));
  const editForm = h(
    'form',
    { class: 'form-grid', 'data-testid': 'user-edit-form' },
    field('user-name', t('users.name'), name),
    field('user-department', t('users.department'), dept, t('user.moveHint')),
    h(
      'fieldset',
      { class: 'field radios' },
      h('legend', null, t('users.callerId')),
      h('div', null, cidMain, h('label', { for: 'user-caller-id-main' }, t('users.cidMain'))),
      h('div', null, cidOwn, h('label', { for: 'user-caller-id-own' }, t('users.cidOwn'))),
    ),
    field('user-own-did', t('user.ownDid'), ownDid, t('user.ownDidHint')),
    writable ? h('div', { class: 'buttons span-all' }, saveBtn) : null,
    h('div', { class: 'span-all' }, editErr, editOk),
  );
  editForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(editOk);
    void busy(saveBtn, editErr, async () => {
      await put(base, {
        name: name.value.trim(),
        department: deptValue(dept.value),
        caller_id: cidOwn.checked ? 'own' : 'main',
        own_did: ownDid.value.trim() || null,
      });
      showStatus(editOk, t('common.saved'));
    });
  });

  // ---- forwarding
  const f: Forwarding = u.forwarding ?? { always: null, busy: null, no_answer: null, no_answer_secs: 20, unregistered: null };
  const fAlways = destField('fwd-always', t('fwd.always'), f.always);
  const fBusy = destField('fwd-busy', t('fwd.busy'), f.busy);
  const fNoAns = destField('fwd-no-answer', t('fwd.noAnswer'), f.no_answer);
  const fSecs = input('fwd-no-answer-secs', { type: 'number', min: 5, max: 120, step: 1, value: String(f.no_answer_secs ?? 20) });
  const fUnreg = destField('fwd-unregistered', t('fwd.unregistered'), f.unregistered);
  const fErr = alertBox('fwd-error');
  const fOk = statusBox('fwd-result');
  const fBtn = h('button', { type: 'submit', class: 'primary', id: 'fwd-save', 'data-testid': 'fwd-save' }, t('common.save'));
  const fwdForm = h(
    'form',
    { class: 'form-grid', 'data-testid': 'fwd-form' },
    h('p', { class: 'hint span-all' }, t('fwd.help')),
    fAlways.el,
    fBusy.el,
    fNoAns.el,
    field('fwd-no-answer-secs', t('fwd.noAnswerSecs'), fSecs),
    fUnreg.el,
    writable ? h('div', { class: 'buttons span-all' }, fBtn) : null,
    h('div', { class: 'span-all' }, fErr, fOk),
  );
  if (!writable) for (const c of fwdForm.querySelectorAll<HTMLInputElement | HTMLSelectElement>('input,select')) c.disabled = true;
  fwdForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearBox(fOk);
    void busy(fBtn, fErr, async () => {
      await put(`${base}/forwarding`, {
        always: fAlways.value(),
        busy: fBusy.value(),
        no_answer: fNoAns.value(),
        no_answer_secs: Number(fSecs.value) || 20,
        unregistered: fUnreg.value(),
      });
      showStatus(fOk, t('common.saved'));
    });
  });

  // ---- devices (right `devices`)
  let devicesCard: HTMLElement | null = null;
  if (devicesRight) {
    const dErr = alertBox('devices-error');
    const dOut = h('div', { 'data-testid': 'devices-output' });
    const devList = h('div');
    const showDevices = (devs: Device[]) =>
      replace(
        devList,
        table(
          [t('dev.key'), t('dev.userAgent'), t('dev.source'), t('dev.transport'), t('dev.expires'), ''],
          devs.map((d) => [
            h('code', null, d.device_key),
            d.user_agent ?? '',
            d.source ?? d.contact ?? '',
            (d.transport ?? '').toUpperCase(),
            d.expires_at ? fmtTime(d.expires_at < 1e12 ? d.expires_at * 1000 : d.expires_at) : '',
            button(t('dev.remove'), (ev) => {
              void (async () => {
                if (!(await confirmDialog(t('dev.removeConfirm', { key: d.device_key, ext }), t('dev.remove')))) return;
                await busy(ev.target as HTMLButtonElement, dErr, async () => {
                  await del(`${base}/devices/${enc(d.device_key)}`);
                  const fresh = await get<UserDetail>(base);
                  showDevices(fresh.devices ?? []);
                });
              })();
            }, { class: 'danger small', 'data-testid': `device-remove-${d.device_key}` }),
          ]),
          { testid: 'devices-table', label: t('dev.title'), empty: t('dev.none') },
        ),
      );
    showDevices(u.devices ?? []);
    const resetBtn = button(t('dev.resetPassword'), () => {
      void (async () => {
        if (!(await confirmDialog(t('dev.resetConfirm', { ext }), t('dev.resetPassword')))) return;
        await busy(resetBtn, dErr, async () => {
          const r = await post<{ sip_password: string }>(`${base}/sip-password`);
          replace(dOut, secretBox(t('users.newSipPassword'), r.sip_password, 'sip-password'));
        });
      })();
    }, { id: 'user-reset-sip-password', 'data-testid': 'reset-sip-password' });
    type Provisioning = { uri: string; server: string; domain?: string; extension: string; includes_password?: boolean };
    const showQr = async (p: Provisioning) => {
      const qr = await qrCode(p.uri, t('dev.qrLabel', { ext }), 'provisioning-qr');
      replace(
        dOut,
        h(
          'div',
          { class: 'secret', 'data-testid': 'provisioning-box' },
          h('p', null, h('strong', null, t('dev.qrIntro'))),
          qr,
          h('dl', { class: 'kv' }, h('dt', null, t('dev.server')), h('dd', null, p.server), h('dt', null, t('users.extension')), h('dd', null, p.extension)),
          h('p', { class: 'hint' }, p.includes_password ? t('dev.qrWarning') : t('dev.qrNoPassword')),
        ),
      );
    };
    // POST sets a fresh SIP password and answers a link that carries it
    // (the stored password is only a digest, so it cannot be read back).
    const qrBtn = button(t('dev.provisioning'), () => {
      void (async () => {
        if (!(await confirmDialog(t('dev.provisioningConfirm', { ext }), t('dev.provisioningOk')))) return;
        await busy(qrBtn, dErr, async () => {
          await showQr(await post<Provisioning>(`${base}/provisioning`));
        });
      })();
    }, { id: 'user-provisioning', 'data-testid': 'provisioning-qr-button' });
    // GET: the same link without a password (the person types it).
    const linkBtn = button(t('dev.provisioningLink'), () => {
      void busy(linkBtn, dErr, async () => {
        await showQr(await get<Provisioning>(`${base}/provisioning`));
      });
    }, { id: 'user-provisioning-link', 'data-testid': 'provisioning-link-button' });
    devicesCard = card(
      t('dev.title'),
      writable ? actions(resetBtn, qrBtn, linkBtn) : actions(linkBtn),
      writable ? h('p', { class: 'hint' }, t('dev.provisioningHint')) : null,
      dErr,
      dOut,
      h('h3', null, t('dev.registered')),
      devList,
    );
  }

  // ---- delete
  const delErr = alertBox('user-delete-error');
  const delBtn = button(t('user.delete'), () => {
    void (async () => {
      if (!(await confirmDialog(t('user.deleteConfirm', { ext, name: u.name })))) return;
      await busy(delBtn, delErr, async () => {
        await del(base);
        navigate('users');
      });
    })();
  }, { class: 'danger', id: 'user-delete', 'data-testid': 'user-delete' });

  replace(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/users' }, t('user.back'))),
    h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t('user.title', { ext }), ' ', h('span', { class: 'subtle' }, u.name)), regBadge(u.registered)),
    card(t('user.basics'), editForm),
    card(t('fwd.title'), fwdForm),
    devicesCard,
    writable ? card(t('user.dangerZone'), h('p', { class: 'hint' }, t('user.deleteHint')), delBtn, delErr) : null,
  );
}
